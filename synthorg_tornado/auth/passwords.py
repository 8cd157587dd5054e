"""Password hashing with bcrypt, always off the IOLoop.

bcrypt is deliberately slow (tens of milliseconds at cost 12); run on the loop it would stall
every other request, which is exactly what a login storm exploits. It runs in a small thread pool
instead (bcrypt releases the GIL while hashing).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import bcrypt

from synthorg_tornado.errors import InvalidValue

MAX_PASSWORD_BYTES = 72
# bcrypt's lowest cost factor.
MIN_ROUNDS = 4


def cost_of(password_hash: str) -> int | None:
    """The cost factor of a bcrypt hash (`$2b$12$...` -> 12), None if it is not one."""
    parts = password_hash.split("$")
    if len(parts) < 4 or not parts[2].isdigit():
        return None
    return int(parts[2])


def _lowest_priority() -> None:
    """Hashing threads yield the CPU to the IOLoop thread.

    At equal priority a login storm keeps every core busy hashing, and the loop waits a
    scheduler slice for its turn: authenticated requests then see milliseconds of extra latency
    although the loop itself never blocks. Niced to 19, hashing uses only what is left over.
    (Linux applies nice per thread; elsewhere this does nothing.)
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class PasswordHasher:
    def __init__(self, rounds: int, min_length: int, workers: int = 2) -> None:
        self.rounds = rounds
        self.min_length = min_length
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="bcrypt", initializer=_lowest_priority
        )
        self._dummies: dict[int, bytes] = {}

    def validate(self, password: object) -> str:
        """A clear 422 for passwords bcrypt cannot or should not take."""
        if not isinstance(password, str):
            raise InvalidValue("The password must be a string.")
        if len(password) < self.min_length:
            raise InvalidValue(f"The password must be at least {self.min_length} characters long.")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise InvalidValue(f"The password must be at most {MAX_PASSWORD_BYTES} bytes (UTF-8).")
        return password

    async def hash(self, password: str) -> str:
        self.validate(password)
        salt = bcrypt.gensalt(self.rounds)
        digest = await self._run(bcrypt.hashpw, password.encode(), salt)
        return digest.decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Constant work whether or not the account exists: unknown users check a dummy hash,
        and a wrong password against a hash older and cheaper than `rounds` is padded up to
        the cost of one check at `rounds`."""
        candidate = password.encode() if isinstance(password, str) else b""
        if len(candidate) > MAX_PASSWORD_BYTES:
            candidate = candidate[:MAX_PASSWORD_BYTES]
            password_hash = None
        target = password_hash.encode() if password_hash else await self._dummy(self.rounds)
        matches = await self._run(bcrypt.checkpw, candidate, target)
        if not matches and password_hash:
            await self._pad(cost_of(password_hash))
        return bool(matches) and password_hash is not None

    async def prepare(self) -> None:
        """Build the dummy hashes at start-up, before the first request.

        Built lazily, the first unknown-user login paid a hash on top of the check (twice as
        slow), which told that user apart. The dummy's cost is the configured `rounds`, not that
        of the hashes already stored: every hash written from now on (new users, password
        changes, the re-hash at each successful login) has that cost, so it is the cost every
        account converges to. Until an account's next login its hash may be older and cheaper,
        so a wrong password there is padded with checks at each cost from the old one up to
        `rounds` - 1: 2**c + (2**c + ... + 2**(rounds-1)) = 2**rounds, the cost of one check at
        `rounds`. Those padding hashes together cost less than one hash at `rounds`.
        """
        for cost in range(MIN_ROUNDS, self.rounds + 1):
            await self._dummy(cost)

    async def _dummy(self, cost: int) -> bytes:
        if cost not in self._dummies:
            random_password = secrets.token_bytes(16)
            self._dummies[cost] = await self._run(bcrypt.hashpw, random_password, bcrypt.gensalt(cost))
        return self._dummies[cost]

    async def _pad(self, cost: int | None) -> None:
        if cost is None:
            return
        for step in range(max(cost, MIN_ROUNDS), self.rounds):
            await self._run(bcrypt.checkpw, b"", await self._dummy(step))

    def needs_rehash(self, password_hash: str | None) -> bool:
        """True when a stored hash has another cost than the configured one."""
        return password_hash is not None and cost_of(password_hash) not in (None, self.rounds)

    async def rehash(self, password: str) -> str:
        """A hash of a password just verified, at the configured cost.

        Not `hash()`: the password was accepted when it was set, and a rule tightened since
        (`password_min_length`) must not stop its owner from logging in.
        """
        digest = await self._run(bcrypt.hashpw, password.encode(), bcrypt.gensalt(self.rounds))
        return digest.decode()

    async def _run(self, function, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
