"""No credential reaches the log, whichever logger writes the line (issue 9, defect 13).

A real server is driven with every kind of credential, including requests that make Tornado
itself log a warning with the raw URI, and a failed insert whose SQL error would print the bound
parameters. Then the WHOLE log file is searched for every secret value used.
"""

from __future__ import annotations

import io
import logging
import re
from urllib.parse import quote

import pytest
from tornado.httpclient import HTTPClientError

from synthorg_tornado.logs import SHOW_SECRETS, SecretMaskingFilter, mask_secrets
from tests.realtime import connect, request
from tests.servers import ADMIN_PASSWORD, USER_PASSWORD, Lab, setup_token

BCRYPT = re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{20,}")
JSON = {"Content-Type": "application/json"}


def ticket_of(client) -> str:  # type: ignore[no-untyped-def]
    reply = client.post("/api/v1/auth/ws-ticket")
    assert reply.status == 201, reply
    return reply.json()["ticket"]


@pytest.mark.gen_test(timeout=60)
async def test_no_secret_of_any_kind_appears_anywhere_in_the_log(lab: Lab) -> None:
    secrets: dict[str, str] = {}
    user = lab.create_user(username="masked-user")
    secrets["admin password"], secrets["user password"] = ADMIN_PASSWORD, USER_PASSWORD

    # Password login (JSON and form), and the session JWT it returns, used as Bearer and cookie.
    bearer, body = lab.login(user["username"])
    secrets["jwt"] = body["token"]
    browser, _ = lab.login_cookie(user["username"])
    secrets["session cookie"] = browser.cookies["synthorg_session"]
    secrets["xsrf"] = browser.cookies["_xsrf"]
    assert bearer.get("/api/v1/me").status == 200 and browser.get("/api/v1/me").status == 200
    lab.client().post(
        "/api/v1/auth/login", {"username": user["username"], "password": "wrong-" + USER_PASSWORD}
    )

    # An API token in the header, in ?token= on a page and on an API path.
    token = bearer.post("/api/v1/tokens", {"name": "log-test"}).json()["token"]
    secrets["api token"] = token
    assert lab.client(token=token, scheme="token").get("/api/v1/me").status == 200
    assert lab.client().get(f"/?token={token}").status == 302
    lab.client().get(f"/api/v1/me?token={token}")

    # Requests that make Tornado log a warning carrying the raw URI: an argument that is not
    # UTF-8, and a cookie-authenticated write without the XSRF value.
    lab.admin.get(f"/api/v1/audit?token={token}&actor=%FF")
    lab.admin.get(f"/api/v1/audit?access_token={body['token']}&action=%FF")
    lab.client().get(f"/login?password={USER_PASSWORD}&next=%FF")
    xsrf = quote(secrets["xsrf"], safe="")
    browser.post(f"/api/v1/auth/ws-ticket?token={token}&_xsrf={xsrf}", headers={"X-XSRFToken": ""})

    # WebSocket tickets: one used, then reused, one invalid; and one in a warning line.
    ticket = ticket_of(bearer)
    secrets["ticket"] = ticket
    socket = await connect(lab.url, ticket=ticket)
    assert await request(socket, {"action": "ping"}) == {"action": "pong"}
    socket.close()
    for spent in (ticket, "not-a-ticket-but-secret-looking-0123456789abcdef"):
        with pytest.raises(HTTPClientError):
            await connect(lab.url, ticket=spent)
    second = ticket_of(bearer)
    secrets["second ticket"] = second
    lab.admin.get(f"/api/v1/audit?ticket={second}&since=%FF")

    # A duplicate user (an IntegrityError), and a user the database refuses outright.
    for name in (user["username"], user["username"].upper()):
        reply = lab.admin.post("/api/v1/users", {"username": name, "password": "another-password-9"})
        assert reply.status == 409, reply
    lab.admin.post(
        "/api/v1/users",
        {"username": "nul-user", "password": "another-password-9", "display_name": "a\u0000b"},
    )
    secrets["new user password"] = "another-password-9"

    log = lab.server.log()
    assert "Invalid unicode" in log or "argument missing" in log, "no Tornado warning was provoked"
    leaked = [name for name, value in secrets.items() if value in log]
    assert not leaked, f"secrets in the log: {leaked}"
    assert not BCRYPT.search(log), BCRYPT.search(log)
    # The one line that must show a secret: the first-run setup URL.
    setup_lines = [line for line in log.splitlines() if "setup?token=" in line]
    assert len(setup_lines) == 1 and setup_token(lab.server) in setup_lines[0]


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretMaskingFilter())
    logger = logging.getLogger(f"test.masking.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_filter_masks_message_arguments_and_exception_text() -> None:
    logger, stream = _capture()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    logger.warning("%s %s", "GET /x?ticket=t1cket-value&a=1", {"Authorization": f"Bearer {jwt}"})
    bcrypt_hash, api_token = "$2b$04$" + "a" * 53, "syt_" + "k" * 43
    try:
        raise RuntimeError(f"[parameters: ({bcrypt_hash!r}, {api_token!r})]")
    except RuntimeError:
        logger.exception("insert failed for Cookie: synthorg_session=%s", jwt)
    logger.info("Open http://h/setup?token=setup-secret", extra=SHOW_SECRETS)
    text = stream.getvalue()
    for secret in ("t1cket-value", jwt, "$2b$04$", "syt_kkkk", "synthorg_session="):
        assert secret not in text, (secret, text)
    assert "a=1" in text and "setup?token=setup-secret" in text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("next=%2F%3Ftoken%3Dinner-secret%26a%3D1", "inner-secret"),
        ("?%74oken=encoded-name-secret", "encoded-name-secret"),
        ('{"password": "json-secret", "user": "x"}', "json-secret"),
        ("authorization: token header-secret", "header-secret"),
        ("Set-Cookie: _xsrf=cookie-secret; Path=/", "cookie-secret"),
        ("/api?new_password=suffix-secret", "suffix-secret"),
        # Nested and repeated encodings, met in the same single pass (issue 16, defect 1).
        ("next=%252F%253Ftoken%253Ddouble-secret%2526a%253D1", "double-secret"),
        ("next=%25252F%25253Fticket%25253Dtriple-secret", "triple-secret"),
        ("/p;a=1;password=semicolon-secret", "semicolon-secret"),
        ("next=/x?token=plain-nested-secret", "plain-nested-secret"),
        ("?%2574oken=twice-encoded-name", "twice-encoded-name"),
    ],
)
def test_mask_secrets_recognises_each_form(text: str, secret: str) -> None:
    assert secret not in mask_secrets(text)
