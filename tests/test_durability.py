"""What survives a crash: every acknowledged action has its audit row; old audit rows are pruned.

Each test runs its own server on a fresh database (SQLite and PostgreSQL), kills or polls it,
and reads the database directly, never through the server it is checking.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from synthorg_tornado.auth.audit import SYSTEM
from synthorg_tornado.clock import utcnow
from synthorg_tornado.config import ConfigError, load_config
from synthorg_tornado.errors import Unavailable
from tests.servers import Lab, ServerProcess, wait_for, write_config

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of this test's own, so that the server under test is its only writer."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'synthorg.db'}"
    return request.getfixturevalue("pg_cluster").create_database("durability")


def start_lab(directory: Path, database_url: str, **sections: dict) -> Lab:
    server = ServerProcess(write_config(directory, database_url, **sections)).start()
    try:
        return Lab(server)
    except BaseException:
        server.kill()
        raise


def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Straight to the database file or server, as an auditor would look."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with contextlib.closing(sqlite3.connect(url.database)) as connection, connection:
            return connection.execute(sql.replace("%s", "?"), params).fetchall()
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def test_every_acknowledged_action_has_its_audit_row_after_sigkill(fresh_url: str, tmp_path: Path) -> None:
    lab = start_lab(tmp_path, fresh_url)
    try:
        admin = lab.admin
        member = lab.create_user(username="crash-member")
        name = member["username"]
        assert admin.patch(f"/api/v1/users/{member['id']}", {"display_name": "Crash"}).status == 200
        first, first_body = lab.login(name)
        _second, second_body = lab.login(name)
        second_id = second_body["session"]["session_id"]
        assert first.delete(f"/api/v1/auth/sessions/{second_id}").status == 204
        token = first.post("/api/v1/tokens", {"name": "crash"}).json()
        assert first.delete(f"/api/v1/tokens/{token['id']}").status == 204
        setting = "/api/v1/settings/ui/lab_name"
        assert admin.put(setting, {"value": "Crash lab"}, headers={"If-Match": "*"}).status == 200
        assert admin.delete(setting, headers={"If-Match": "*"}).status == 200
        assert first.post("/api/v1/auth/logout").status == 204
        _third, third_body = lab.login(name)
        assert admin.patch(f"/api/v1/users/{member['id']}", {"disabled": True}).status == 200
        doomed = lab.create_user(username="crash-doomed")
        assert admin.delete(f"/api/v1/users/{doomed['id']}").status == 204
    finally:
        lab.server.process.send_signal(signal.SIGKILL)  # the moment the last answer arrived
        lab.server.kill()
    assert lab.server.process.returncode == -signal.SIGKILL

    def session(body: dict) -> str:
        return f"session:{body['session']['session_id'][:8]}"

    expected = Counter(
        {
            ("auth.setup", "admin"): 1,
            ("user.create", "admin"): 1,
            ("user.create", name): 1,
            ("user.update", name): 2,  # the display name, then the disable
            ("auth.login", name): 3,
            ("session.revoke", session(second_body)): 1,
            ("token.create", f"token:{token['id']}"): 1,
            ("token.revoke", f"token:{token['id']}"): 1,
            ("setting.update", "ui.lab_name"): 1,
            ("setting.reset", "ui.lab_name"): 1,
            ("auth.logout", name): 1,
            ("session.revoke", session(first_body)): 1,
            ("session.revoke", session(third_body)): 1,
            ("user.create", "crash-doomed"): 1,
            ("user.delete", "crash-doomed"): 1,
        }
    )
    rows = query(fresh_url, "SELECT action, target FROM audit_log WHERE outcome = 'success'")
    found = Counter((action, target) for action, target in rows)
    missing = expected - found
    assert not missing, f"acknowledged actions without their audit row: {dict(missing)}"
    # ...and the state those rows describe is there too.
    disabled = query(fresh_url, "SELECT disabled FROM users WHERE username = %s", (name,))
    assert [bool(value) for (value,) in disabled] == [True]
    assert query(fresh_url, "SELECT count(*) FROM users WHERE username = 'crash-doomed'") == [(0,)]


def test_cleanup_prunes_audit_rows_past_retention_and_keeps_recent_ones(
    fresh_url: str, tmp_path: Path
) -> None:
    lab = start_lab(
        tmp_path,
        fresh_url,
        auth={"cleanup_interval_seconds": 1},
        audit={"retention_days": 30},
    )
    try:
        now = utcnow()
        insert = (
            "INSERT INTO audit_log (at, actor, action, target, ip_address, outcome) "
            "VALUES (%s, 'pytest', %s, '', '', 'success')"
        )
        sqlite = make_url(fresh_url).get_backend_name() == "sqlite"

        def stamp(value):  # type: ignore[no-untyped-def]
            # SQLite keeps the text SQLAlchemy writes for a UTC datetime; PostgreSQL a timestamptz.
            return value.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else value

        query(fresh_url, insert, (stamp(now - timedelta(days=31)), "test.too_old"))
        query(fresh_url, insert, (stamp(now - timedelta(days=29)), "test.recent"))

        def actions() -> set[str]:
            return {row[0] for row in query(fresh_url, "SELECT action FROM audit_log WHERE actor = 'pytest'")}

        assert actions() == {"test.too_old", "test.recent"}
        wait_for(lambda: actions() == {"test.recent"}, 20.0, "the cleanup job to prune the old row")
        assert lab.client().get("/api/v1/health").status == 200
        audit = lab.admin.get("/api/v1/audit?action=test.recent").json()["items"]
        assert [entry["action"] for entry in audit] == ["test.recent"]
    finally:
        assert lab.server.terminate() == 0


@pytest.mark.gen_test
async def test_a_failed_usage_flush_keeps_its_batch_for_the_next_try(app) -> None:  # type: ignore[no-untyped-def]
    services = app.settings["services"]
    user = await services.users.create("flusher", "a-long-password", "member", actor=SYSTEM)
    created = await services.api_tokens.create(user, "script", 5, SYSTEM)
    await services.api_tokens.authenticate(created["token"])  # last_used_at is now pending

    async def rename(old: str, new: str) -> None:
        async with services.database.connection() as connection:
            await connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
            await connection.commit()

    await rename("api_tokens", "api_tokens_away")  # a real failure of the real statement
    with pytest.raises(Unavailable):
        await services.api_tokens.flush_usage()
    await rename("api_tokens_away", "api_tokens")
    await services.api_tokens.flush_usage()
    listed, _cursor = await services.api_tokens.list(user.id)
    assert listed[0]["last_used_at"] is not None


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("audit", "retention_days", -1),
        ("audit", "retention_days", 10**9),
        ("auth", "max_api_tokens_per_user", 0),
    ],
)
def test_retention_and_token_cap_are_validated(tmp_path: Path, section: str, key: str, value: int) -> None:
    path = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **{section: {key: value}})
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert any(problem.startswith(f"{section}.{key}:") for problem in raised.value.problems)
