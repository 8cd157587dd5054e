"""Password checks after a cost change: the answers stay right, and a stale hash is re-hashed.

Timing itself is measured by `bench/login_timing.py`, never asserted here.
"""

from __future__ import annotations

import asyncio

import bcrypt

from synthorg_tornado.auth.passwords import PasswordHasher, cost_of


def test_a_stale_hash_still_verifies_and_is_flagged_for_a_rehash_at_the_configured_cost() -> None:
    async def scenario() -> None:
        hasher = PasswordHasher(rounds=6, min_length=8)
        try:
            await hasher.prepare()
            assert sorted(hasher._dummies) == [4, 5, 6]  # built before any request
            stale = bcrypt.hashpw(b"old-password", bcrypt.gensalt(4)).decode()
            assert await hasher.verify("old-password", stale) is True
            assert await hasher.verify("wrong-password", stale) is False  # padded, still False
            assert await hasher.verify("old-password", None) is False
            assert hasher.needs_rehash(stale) and not hasher.needs_rehash(await hasher.hash("new-password"))
            fresh = await hasher.rehash("short")  # a rule tightened since must not lock anyone out
            assert cost_of(fresh) == 6 and await hasher.verify("short", fresh) is True
        finally:
            hasher.close()

    asyncio.run(scenario())


def test_cost_of_reads_the_bcrypt_cost_factor() -> None:
    assert cost_of("$2b$12$" + "x" * 53) == 12
    assert cost_of("not a bcrypt hash") is None
