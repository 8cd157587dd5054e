"""Alembic environment, async-aware.

Inside the application a live connection arrives in `config.attributes["connection"]` and is used
as is. Run by hand, the URL comes from config.yaml and an async engine is made here.
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from synthorg_tornado.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from synthorg_tornado.config import load_config, resolve_config_path

    return load_config(resolve_config_path(None)).database.url


async def _run_async() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _configure(config.attributes["connection"])
else:
    if config.config_file_name:
        # Never silence loggers that already exist.
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_async())
