"""The engine and the one way to open a database session: `async with database.session()`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy import event, func, select, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from synthorg_tornado.config import DatabaseConfig
from synthorg_tornado.errors import Unavailable

HEALTH_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5


class Database:
    """Owns the async engine. SQLite gets WAL and a busy timeout so readers never block the writer."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        create_private_sqlite_file(config)
        self.engine: AsyncEngine = _make_engine(config)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        with unavailable_on_outage():
            async with self._sessions() as session:
                yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection, for Core statements on hot-ish paths."""
        with unavailable_on_outage():
            async with self.engine.connect() as connection:
                yield connection

    async def serialise(self, session: AsyncSession, lock: int) -> None:
        """Make the transaction `session` begins now wait for, then shut out until it ends,
        every other transaction that takes the same `lock`: what it reads cannot change before
        it writes. It must be the session's first statement.

        PostgreSQL: a transaction-scoped advisory lock, so writers that do not take it go on.
        SQLite: the database's one write lock, taken at BEGIN IMMEDIATE rather than at the first
        write (a deferred transaction that read first could not then write what it decided).
        """
        if self.config.is_sqlite:
            await session.execute(text("BEGIN IMMEDIATE"))
        else:
            await session.execute(select(func.pg_advisory_xact_lock(lock)))

    async def ping(self) -> bool:
        """True when the database answers within a short timeout."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_private_sqlite_file(config: DatabaseConfig) -> None:
    """Create a new SQLite database file 0600 before SQLite does (it would use the umask, often
    0644). It holds password and token hashes; SQLite gives its `-wal` and `-shm` files the mode
    of the database file, so they are private too. An existing file is left as it is (`config
    check` warns when others can read it)."""
    path = config.sqlite_path
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@contextmanager
def unavailable_on_outage() -> Iterator[None]:
    """A database that cannot be reached is a 503 the client may retry, not an internal error.

    Constraint violations and other statement errors pass through untouched: only failures of
    the connection itself (refused, dropped, timed out, locked) mean "try again shortly".
    """
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeout, ConnectionError, TimeoutError) as exc:
        raise Unavailable(
            "The database is unavailable; try again shortly.", retry_after=RETRY_AFTER_SECONDS
        ) from exc


def _make_engine(config: DatabaseConfig) -> AsyncEngine:
    """`hide_parameters`: a statement error's text (logged, or shown by the command line) would
    otherwise carry the bound values, a new user's bcrypt hash or a token digest among them."""
    if config.is_sqlite:
        engine = create_async_engine(
            config.url, echo=config.echo, hide_parameters=True, connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        config.url,
        echo=config.echo,
        hide_parameters=True,
        pool_size=config.pool_size,
        max_overflow=config.pool_size,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
