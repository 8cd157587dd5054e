"""After `auth.bcrypt_rounds` changes, a successful login re-hashes the password at the new cost.

Otherwise the old, cheaper hashes answer faster than the dummy hash unknown users are checked
against, and an attacker tells existing accounts apart by timing. The stored hash is read from
the database itself.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from tests.client import Client
from tests.servers import USER_PASSWORD, Lab, ServerProcess, write_config


def stored_hash(database_url: str, username: str) -> str:
    query = "SELECT password_hash FROM users WHERE username_key = "
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split("///", 1)[1]) as db:
            return db.execute(query + "?", (username,)).fetchone()[0]
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as db:
        return db.execute(query + "%s", (username,)).fetchone()[0]


def test_login_after_a_cost_change_stores_the_hash_at_the_new_cost(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(write_config(tmp_path / "cost4", database_url, auth={"bcrypt_rounds": 4})).start()
    try:
        lab = Lab(server)
        lab.create_user(username="rehashed")
        lab.create_user(username="dormant")
    finally:
        assert server.terminate() == 0
    assert stored_hash(database_url, "rehashed").startswith("$2b$04$")

    server = ServerProcess(write_config(tmp_path / "cost5", database_url, auth={"bcrypt_rounds": 5})).start()

    def login(password: str) -> int:
        body = {"username": "rehashed", "password": password}
        return Client(server.url).post("/api/v1/auth/login", body).status

    try:
        assert login("not-the-password") == 401
        assert stored_hash(database_url, "rehashed").startswith("$2b$04$")  # only a proven password
        assert login(USER_PASSWORD) == 200
        assert stored_hash(database_url, "rehashed").startswith("$2b$05$")
        # The new hash is of the same password: it logs in again, and nobody else was touched.
        assert login(USER_PASSWORD) == 200
        assert stored_hash(database_url, "dormant").startswith("$2b$04$")
    finally:
        assert server.terminate() == 0
