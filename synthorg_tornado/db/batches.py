"""Writes that are batched because losing them costs nothing a user relies on (activity times)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, bindparam, update

from synthorg_tornado.db.engine import Database


async def update_each(database: Database, column: Column[Any], values: Mapping[Any, Any]) -> None:
    """Set `column` of each row (by id) to its value in `values`: one executemany statement and one
    commit for the whole batch, however many rows it holds."""
    if not values:
        return
    table = column.table
    async with database.session() as session:
        await (await session.connection()).execute(
            update(table).where(table.c.id == bindparam("row_id")).values({column.name: bindparam("value")}),
            [{"row_id": row_id, "value": value} for row_id, value in values.items()],
        )
        await session.commit()
