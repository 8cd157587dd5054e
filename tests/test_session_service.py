"""The session service in-process, on a real SQLite database: the hot path, debounce, cleanup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from synthorg_tornado.auth.audit import SYSTEM
from synthorg_tornado.clock import utcnow
from synthorg_tornado.db.models import Session as SessionRow
from synthorg_tornado.db.models import WsTicket


@pytest.fixture
def services(app):  # type: ignore[no-untyped-def]
    return app.settings["services"]


async def new_session(services):  # type: ignore[no-untyped-def]
    user = await services.users.create("ada", "a-long-password", "member", actor=SYSTEM)
    return await services.sessions.create(user, "127.0.0.1", "pytest")


def count_statements(services) -> list[str]:  # type: ignore[no-untyped-def]
    statements: list[str] = []
    event.listen(
        services.database.engine.sync_engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: statements.append(statement),
    )
    return statements


@pytest.mark.gen_test
async def test_authenticating_a_cached_session_runs_no_sql(services) -> None:
    token, _ = await new_session(services)
    statements = count_statements(services)
    for _ in range(200):
        user, _session = await services.sessions.authenticate(token)
    assert user.username == "ada"
    assert statements == []


@pytest.mark.gen_test
async def test_a_session_unknown_to_this_process_is_loaded_once(services) -> None:
    token, _cached = await new_session(services)
    services.sessions.cache.sessions.clear()  # as if another process had created it
    services.users._directory.clear()
    statements = count_statements(services)
    for _ in range(20):
        await services.sessions.authenticate(token)
    assert len(statements) == 2  # the session row, then the user row; never again


@pytest.mark.gen_test
async def test_last_active_is_debounced_to_one_write_a_minute(services) -> None:
    _token, cached = await new_session(services)
    cache = services.sessions.cache
    start = cached.last_written_at
    cache.touch(cached, start + timedelta(seconds=30))
    assert cache.pending_activity == {}
    later = start + timedelta(seconds=61)
    cache.touch(cached, later)
    assert cache.pending_activity == {cached.session_id: later}
    statements = count_statements(services)
    await services.sessions.flush_activity()
    assert sum(s.lstrip().upper().startswith("UPDATE") for s in statements) == 1
    assert cache.pending_activity == {}
    async with services.database.session() as db:
        stored = await db.scalar(select(SessionRow.last_active_at).where(SessionRow.id == cached.session_id))
    assert stored == later


@pytest.mark.gen_test
async def test_cleanup_prunes_expired_sessions_and_spent_tickets_but_keeps_revoked_ones(services) -> None:
    _, expired = await new_session(services)
    user = await services.users.find_by_username("ada")
    _, revoked = await services.sessions.create(user, "", "")
    await services.sessions.revoke(revoked.session_id, "logout", SYSTEM)
    _, alive = await services.sessions.create(user, "", "")
    now = utcnow()
    async with services.database.session() as db:
        await db.execute(
            update(SessionRow)
            .where(SessionRow.id == expired.session_id)
            .values(expires_at=now - timedelta(seconds=1))
        )
        db.add_all(
            [
                WsTicket(
                    id="spent",
                    user_id=user.id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=30),
                    used_at=now,
                ),
                WsTicket(id="old", user_id=user.id, created_at=now, expires_at=now - timedelta(seconds=1)),
                WsTicket(id="fresh", user_id=user.id, created_at=now, expires_at=now + timedelta(seconds=30)),
            ]
        )
        await db.commit()
    expired.expires_at = now - timedelta(seconds=1)
    await services.sessions.cleanup()
    async with services.database.session() as db:
        sessions = set((await db.scalars(select(SessionRow.id))).all())
        tickets = set((await db.scalars(select(WsTicket.id))).all())
    assert sessions == {revoked.session_id, alive.session_id}
    assert tickets == {"fresh"}
    assert services.sessions.cache.get(expired.session_id) is None
    assert revoked.session_id in services.sessions.cache.revoked


@pytest.mark.gen_test
async def test_api_token_use_is_recorded_in_one_batched_write(services) -> None:
    user = await services.users.create("bea", "a-long-password", "member", actor=SYSTEM)
    created = await services.api_tokens.create(user, "script", 5, SYSTEM)
    for _ in range(5):
        await services.api_tokens.authenticate(created["token"])
    statements = count_statements(services)
    await services.api_tokens.flush_usage()
    assert sum(s.lstrip().upper().startswith("UPDATE") for s in statements) == 1
    listed, _cursor = await services.api_tokens.list(user.id)
    assert listed[0]["last_used_at"] is not None


def test_session_ids_carry_256_bits_and_never_look_like_an_option() -> None:
    from synthorg_tornado.auth.tokens import new_session_id

    ids = {new_session_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 64 and set(i) <= set("0123456789abcdef") for i in ids)
