"""Logging costs little and never fails, whatever a client sends (issue 16, defect 1).

The masking filter once re-scanned each parameter's value by recursion: one unauthenticated GET
with 50 KB of repeated `name%3D` held the IOLoop for seconds, and its RecursionError escaped from
the logging call. Now every field is capped before any pattern runs, masking is one linear pass,
and the filter and formatters turn any failure into a fixed line. Logging does not touch the
database, so the server here runs on SQLite only.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthorg_tornado.log_masking import MAX_FIELD_CHARS, TRUNCATED, cap, mask_field, mask_secrets
from synthorg_tornado.logs import UNSAFE_RECORD, JsonFormatter, SecretMaskingFilter, TextFormatter
from tests.conftest import start_lab
from tests.servers import Lab, http_request

HOSTILE_QUERY = "name%3D" * (50_000 // len("name%3D"))  # about 50 KB, under Tornado's 64 KiB head
# Where the reported requests went: an unknown API path, the login page's `next`, a page path.
HOSTILE_TARGETS = (
    f"/api/v1/no-such-route?{HOSTILE_QUERY}",
    f"/login?next={HOSTILE_QUERY}",
    f"/sessions;a={HOSTILE_QUERY}",
    f"/api/v1/health?password={HOSTILE_QUERY}",
)
MARKER = TRUNCATED.split("{", 1)[0]
# A log line: timestamp, level, logger name, then one capped message.
LONGEST_LINE = MAX_FIELD_CHARS + 200


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory: Path = tmp_path_factory.mktemp("log-bounds")
    lab = start_lab(directory, f"sqlite+aiosqlite:///{directory / 'synthorg.db'}")
    yield lab
    assert lab.server.terminate() == 0


def health(lab: Lab) -> int:
    return http_request(f"{lab.url}api/v1/health", timeout=60).status


def test_hostile_query_strings_neither_stop_nor_kill_the_server(lab: Lab) -> None:
    answers: list[int] = []
    done = threading.Event()

    def attack() -> None:
        try:
            for _ in range(2):
                for target in HOSTILE_TARGETS:
                    answers.append(http_request(f"{lab.url}{target.lstrip('/')}", timeout=60).status)
        finally:
            done.set()

    attacker = threading.Thread(target=attack)
    attacker.start()
    probes = []
    while not done.is_set():
        probes.append(health(lab))
    attacker.join()
    probes.append(health(lab))

    assert len(answers) == 2 * len(HOSTILE_TARGETS) and all(status < 500 for status in answers), answers
    assert set(probes) == {200}, probes
    assert lab.server.process is not None and lab.server.process.poll() is None
    log = lab.server.log()
    assert "RecursionError" not in log and "Traceback" not in log, log[-3000:]
    for target in HOSTILE_TARGETS:
        start = target[: target.index("name%3D")]
        lines = [line for line in log.splitlines() if f"synthorg.access: GET {start}" in line]
        assert len(lines) == 2, (start, lines)
        for line in lines:
            assert MARKER in line and len(line) < LONGEST_LINE, line[:300]
            assert "request_id=" in line, "the cap must not cut off the end of the access line"
    assert "password=name" not in log, "a secret was logged"


def test_an_invented_method_of_60_kb_is_logged_in_a_capped_line(lab: Lab) -> None:
    method = "X" * 60_000
    with socket.create_connection(("127.0.0.1", lab.server.port), timeout=30) as sock:
        sock.sendall(f"{method} /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 405"), "the request reached the application"
    assert health(lab) == 200
    line = lab.server.wait_for_log(r".*XXXXXXXX.*").group(0)
    assert MARKER in line and len(line) < LONGEST_LINE, line[:300]


def test_a_refused_upload_with_a_hostile_query_is_logged_in_a_capped_line(lab: Lab) -> None:
    """A refusal is logged by the HTTP layer, before any handler: another path to the filter."""
    head = f"POST /api/v1/no-such-upload?{HOSTILE_QUERY} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", lab.server.port), timeout=60) as sock:
            sock.sendall(f"{head}Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode())
            assert sock.recv(64).startswith(b"HTTP/1.1 413"), "the refusal was not answered"
        assert health(lab) == 200
    lines = [line for line in lab.server.log().splitlines() if "POST /api/v1/no-such-upload?" in line]
    assert len(lines) == 3 and all(MARKER in line and len(line) < LONGEST_LINE for line in lines), lines
    assert "RecursionError" not in lab.server.log()


def _capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    """A logger with the server's filter and the given formatter, writing to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretMaskingFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.bounds.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, stream


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("str() of this value fails")


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_a_record_that_cannot_be_masked_or_formatted_becomes_the_fixed_line(
    formatter: logging.Formatter,
) -> None:
    logger, stream = _capture(formatter)
    logger.warning("%d requests", "not a number")  # the arguments do not fit the format
    logger.warning("value: %s", Unprintable())  # an argument that cannot be printed
    logger.warning("access", extra={"fields": {"value": Unprintable()}})
    logger.warning("GET /x?%s", "name%3D" * 10_000)  # recursed once per `name%3D`, before
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert all(UNSAFE_RECORD in line for line in lines[:3]), lines
    assert MARKER in lines[3] and len(lines[3]) < LONGEST_LINE
    if isinstance(formatter, JsonFormatter):
        assert all(json.loads(line)["message"] for line in lines)


@pytest.mark.parametrize(
    "credential",
    ["syt_" + "k" * 43, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"],
    ids=["token", "jwt"],
)
@pytest.mark.parametrize("kept", [7, 30])
def test_a_cap_that_cuts_through_a_credential_drops_the_part_before_the_cut(
    credential: str, kept: int
) -> None:
    capped = mask_field(" " * (MAX_FIELD_CHARS - kept) + credential)
    assert credential[:5] not in capped and MARKER in capped, capped[-80:]
    assert cap("a" * 10, 100) == "a" * 10


PIECES = (
    "name",
    "%3D",
    "%3d",
    "%25",
    "%26",
    "%3F",
    "=",
    "&",
    "?",
    ";",
    " ",
    "token",
    "password",
    "eyJ",
    ".",
    "bearer ",
    '"',
    "'",
    ":",
    "syt_",
    "cookie",
    "authorization",
    "$2b$",
    "x",
    "é",
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=2000),
    st.lists(st.sampled_from(PIECES), max_size=400).map("".join),
    st.tuples(
        st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join), st.integers(1, 8000)
    ).map(lambda pair: (pair[0] * pair[1])[: 64 * 1024]),
)


@settings(max_examples=60, deadline=None)
@given(HOSTILE_TEXT)
def test_masking_any_text_up_to_64_kib_never_raises_and_stays_bounded(text: str) -> None:
    masked = mask_secrets(text)
    assert isinstance(masked, str)
    field = mask_field(text)
    # `***` may stand for a shorter value, but every one needs a name and `=` before it.
    assert len(field) <= 2 * (MAX_FIELD_CHARS + len(TRUNCATED) + 16)
