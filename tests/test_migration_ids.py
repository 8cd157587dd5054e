"""Upgrading a lab to the revision that stops id reuse keeps every row, and then reuses no id,
not even one deleted before the upgrade (on SQLite the tables are rebuilt; on PostgreSQL the
revision changes nothing)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import bcrypt
from sqlalchemy import delete, func, select, text

from synthorg_tornado.auth.tokens import digest, new_api_token
from synthorg_tornado.clock import utcnow
from synthorg_tornado.config import load_config
from synthorg_tornado.db import migrate
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import (
    ApiToken,
    AuditEntry,
    Base,
    BusEvent,
    FirstAdmin,
    LoginAttempt,
    Session,
    Setting,
    User,
    WsTicket,
)
from tests.client import Client
from tests.servers import ADMIN_PASSWORD, USER_PASSWORD, ServerProcess, write_config

PREVIOUS = "0006"  # the last revision that let SQLite reuse ids


def user(name: str, role: str = "member") -> User:
    now = utcnow()
    hashed = bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    return User(
        username=name,
        username_key=name,
        display_name="",
        role=role,
        password_hash=hashed,
        disabled=False,
        created_at=now,
        updated_at=now,
    )


def token_row(owner: User, token: str) -> ApiToken:
    now = utcnow()
    return ApiToken(
        user_id=owner.id,
        name="script",
        prefix=token[:8],
        token_hash=digest(token),
        created_at=now,
        expires_at=now + timedelta(days=30),
    )


async def counts(database: Database) -> dict[str, int]:
    async with database.session() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


async def lab_at_previous_revision(database: Database, bob_token: str) -> dict[str, Any]:
    """A lab with a row in every table, whose newest user (carol) and her token were deleted."""
    await migrate.upgrade(database, PREVIOUS)
    now = utcnow()
    async with database.session() as session:
        admin, bob, carol = user("admin", "admin"), user("bob"), user("carol")
        session.add_all([admin, bob, carol])
        await session.flush()
        bobs, carols = token_row(bob, bob_token), token_row(carol, new_api_token())
        session.add_all([bobs, carols, FirstAdmin(id=1, user_id=admin.id, created_at=now)])
        await session.flush()
        later = now + timedelta(days=1)
        session.add_all(
            [
                Session(id="s-bob", user_id=bob.id, created_at=now, last_active_at=now, expires_at=later),
                WsTicket(id="t-bob", user_id=bob.id, session_id="s-bob", created_at=now, expires_at=later),
                Setting(namespace="lab", key="name", value='"Lab"', updated_at=now),
                LoginAttempt(ip="127.0.0.1", account="bob", at=now, outcome="failed"),
                BusEvent(topic="event.published", payload="{}", origin="old", created_at=now),
                AuditEntry(at=now, actor_id=carol.id, actor="carol", action="auth.login", outcome="success"),
                AuditEntry(
                    at=now,
                    actor_id=carol.id,
                    actor="carol",
                    action="token.create",
                    target=f"token:{carols.id}",
                    outcome="success",
                ),
            ]
        )
        await session.commit()
        ids = {"bob": bob.id, "carol": carol.id, "carols_token": carols.id}
    async with database.session() as session:
        await session.execute(delete(User).where(User.id == ids["carol"]))
        await session.commit()
    return ids


def test_upgrade_keeps_every_row_and_then_reuses_no_id(database_url: str, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, database_url)
    database = Database(load_config(config_path, environ={}).database)
    bob_token = new_api_token()
    ids = asyncio.run(lab_at_previous_revision(database, bob_token))
    before = asyncio.run(counts(database))
    assert before["users"] == 2 and before["api_tokens"] == 1 and before["sessions"] == 1

    server = ServerProcess(config_path).start()  # migrates to head at start-up
    try:
        after = asyncio.run(counts(database))
        # A server on PostgreSQL logs its start on the bus at once: the old row is still there.
        assert after.pop("bus_events") >= before.pop("bus_events")
        assert after == before
        if database_url.startswith("sqlite"):
            broken = asyncio.run(foreign_key_problems(database))
            assert broken == []
        by_token = Client(server.url, token=bob_token, scheme="token")
        assert by_token.get("/api/v1/me").json()["id"] == str(ids["bob"])

        admin = Client(server.url)
        logged_in = admin.post("/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
        admin.token = logged_in.json()["token"]
        dave = admin.post("/api/v1/users", {"username": "dave", "password": USER_PASSWORD})
        assert dave.status == 201 and int(dave.json()["id"]) > ids["carol"]
        assert admin.delete(f"/api/v1/users/{dave.json()['id']}").status == 204
        erin = admin.post("/api/v1/users", {"username": "erin", "password": USER_PASSWORD}).json()
        assert int(erin["id"]) > int(dave.json()["id"])

        erins = Client(server.url)
        erins.token = erins.post(
            "/api/v1/auth/login", {"username": "erin", "password": USER_PASSWORD}
        ).json()["token"]
        created = erins.post("/api/v1/tokens", {"name": "new"}).json()
        assert int(created["id"]) > ids["carols_token"]

        # The foreign keys still hold after the rebuild: deleting bob takes his token with it.
        assert admin.delete(f"/api/v1/users/{ids['bob']}").status == 204
        assert by_token.get("/api/v1/me").status == 401
        assert asyncio.run(rows_of(database, ids["bob"])) == (0, 0, 0)
    finally:
        assert server.terminate() == 0
        asyncio.run(database.dispose())


async def rows_of(database: Database, user_id: int) -> tuple[int, int, int]:
    """The user's sessions, tokens and tickets."""
    found = []
    async with database.session() as session:
        for model in (Session, ApiToken, WsTicket):
            found.append(int(await session.scalar(select(func.count()).where(model.user_id == user_id)) or 0))
    return found[0], found[1], found[2]


async def foreign_key_problems(database: Database) -> list[Any]:
    async with database.session() as session:
        return list((await session.execute(text("PRAGMA foreign_key_check"))).all())
