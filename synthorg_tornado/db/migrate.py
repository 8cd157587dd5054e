"""Alembic, driven from the application: `db upgrade`, `db current` and `database.auto_upgrade`.

The Alembic config is built in code, never from alembic.ini, so running migrations inside the
server does not reconfigure (and silence) the application's loggers.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from synthorg_tornado.db.engine import Database
from synthorg_tornado.resources import resource_dir

ALEMBIC_DIR = resource_dir("alembic")
# Any constant will do: it only has to be the same in every process that migrates.
MIGRATION_LOCK_ID = 724_311_905


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def upgrade(database: Database, revision: str = "head") -> None:
    """Apply migrations; on PostgreSQL an advisory lock keeps concurrent starters in line."""
    async with database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
        await connection.run_sync(_upgrade, database.config.url, revision)


async def current_revision(database: Database) -> str | None:
    async with database.engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
