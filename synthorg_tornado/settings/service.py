"""Settings with optimistic concurrency: every write is a compare-and-swap on a version number.

The version check and the write are one statement (`UPDATE ... WHERE version = :expected`, or an
INSERT that loses on the primary key for the first write), so two people editing at once can
never overwrite each other unknowingly: the second gets a conflict with the value now stored.
A write that names no version (`If-Match: *`) is one upsert that bumps whatever version is
stored, so it never conflicts. Each write commits with its audit entry.
Effective values are served from memory, so runtime consumers (the login limiter, the session
policy) read them on every use without touching the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from synthorg_tornado.auth.audit import Actor, AuditLog
from synthorg_tornado.clock import isoformat, parse_isoformat, utcnow
from synthorg_tornado.config import Config, ConfigError
from synthorg_tornado.db.engine import Database
from synthorg_tornado.db.models import Setting
from synthorg_tornado.errors import (
    InvalidValue,
    NotFound,
    PermissionDenied,
    PreconditionRequired,
    VersionConflict,
)
from synthorg_tornado.preconditions import Precondition
from synthorg_tornado.realtime.bus import SETTING_UPDATED, Bus, Message
from synthorg_tornado.settings.registry import SettingDefinition, SettingsRegistry

log = logging.getLogger("synthorg.settings")

DATABASE = "database"


@dataclass(frozen=True)
class StoredRow:
    value: Any  # None after a reset
    is_set: bool
    version: int
    updated_at: datetime | None
    updated_by: str | None


NEVER_WRITTEN = StoredRow(None, False, 0, None, None)


@dataclass(frozen=True)
class SettingEntry:
    definition: SettingDefinition
    value: Any
    source: str
    row: StoredRow
    etag: str

    @property
    def version(self) -> int:
        return self.row.version

    def public(self) -> dict[str, Any]:
        definition = self.definition
        return {
            "namespace": definition.namespace,
            "key": definition.key,
            "value": definition.shown(self.value),
            "type": definition.type,
            "source": self.source,
            "updated_at": isoformat(self.row.updated_at),
            "updated_by": self.row.updated_by,
            "version": self.row.version,
            "etag": self.etag,
            "restart_required": definition.restart_required,
            "sensitive": definition.sensitive,
            "description": definition.description,
            "constraints": definition.constraints(),
            "write_roles": sorted(definition.write_roles),
        }


def _row(setting: Any) -> StoredRow:
    """From an ORM object or a Core row: both carry the same attribute names."""
    if setting is None:
        return NEVER_WRITTEN
    is_set = setting.value is not None
    value = json.loads(setting.value) if is_set else None
    return StoredRow(value, is_set, setting.version, setting.updated_at, setting.updated_by)


class SettingsService:
    def __init__(
        self,
        database: Database,
        registry: SettingsRegistry,
        config: Config,
        environ: Mapping[str, str],
        audit: AuditLog,
        bus: Bus,
        etag_key: bytes,
    ) -> None:
        self.database = database
        self.registry = registry
        self.audit = audit
        self.bus = bus
        self._etag_key = etag_key
        self._lower, problems = registry.lower_sources(config, environ)
        if problems:
            raise ConfigError(problems)
        self._rows: dict[str, StoredRow] = {}
        bus.subscribe(SETTING_UPDATED, self._on_updated)

    # -- reading -------------------------------------------------------------------------

    def value(self, namespace: str, key: str) -> Any:
        """The effective value, from memory: for code that reads a setting on every use."""
        name = f"{namespace}.{key}"
        row = self._rows.get(name, NEVER_WRITTEN)
        return row.value if row.is_set else self._lower[name][0]

    def definition(self, namespace: str, key: str) -> SettingDefinition:
        definition = self.registry.get(namespace, key)
        if definition is None:
            raise NotFound(f"No setting {namespace}.{key}{self.registry.suggest(f'{namespace}.{key}')}")
        return definition

    async def load(self) -> None:
        async with self.database.session() as session:
            for setting in (await session.scalars(select(Setting))).all():
                self._rows[f"{setting.namespace}.{setting.key}"] = _row(setting)

    async def get(self, namespace: str, key: str) -> SettingEntry:
        definition = self.definition(namespace, key)
        table = Setting.__table__
        # A plain Core read: this runs on every conditional write, including the refused ones.
        async with self.database.connection() as connection:
            stored = (
                await connection.execute(
                    select(table).where(table.c.namespace == namespace, table.c.key == key)
                )
            ).first()
        return self._remember(definition, _row(stored))

    async def list(self) -> list[SettingEntry]:
        async with self.database.session() as session:
            stored = {f"{s.namespace}.{s.key}": s for s in (await session.scalars(select(Setting))).all()}
        return [self._remember(d, _row(stored.get(d.name))) for d in self.registry]

    def list_etag(self, entries: list[SettingEntry]) -> str:
        return self._sign("|".join(entry.etag for entry in entries))

    def _remember(self, definition: SettingDefinition, row: StoredRow) -> SettingEntry:
        self._rows[definition.name] = row
        return self._entry(definition, row)

    def _entry(self, definition: SettingDefinition, row: StoredRow) -> SettingEntry:
        if row.is_set:
            value, source = row.value, DATABASE
        else:
            value, source = self._lower[definition.name]
        material = f"{definition.name}|{row.version}|{source}|{json.dumps(value, sort_keys=True)}"
        return SettingEntry(definition, value, source, row, self._sign(material))

    def _sign(self, material: str) -> str:
        # Keyed, so an ETag reveals nothing about a sensitive value, even to offline guessing.
        digest = hmac.new(self._etag_key, material.encode(), hashlib.sha256).hexdigest()
        return f'"{digest[:32]}"'

    # -- writing -------------------------------------------------------------------------

    async def check_write(
        self,
        namespace: str,
        key: str,
        role: str,
        precondition: Precondition,
        require_if_match: bool,
        actor: Actor,
    ) -> SettingEntry:
        """Role, existence and precondition, in that order. Returns the entry the write replaces."""
        definition = self.definition(namespace, key)
        if role not in definition.write_roles:
            detail = (
                f"{definition.name} is read-only here; change it in config.yaml and restart."
                if definition.read_only
                else f"Your role cannot change {definition.name}."
            )
            raise PermissionDenied(detail)
        current = await self.get(namespace, key)
        if not precondition.present:
            if require_if_match:
                await self._audit_rejection(definition, actor, "precondition_required")
                raise PreconditionRequired(
                    f"Send If-Match with the ETag of {definition.name} you read (or *) to change it."
                )
        elif not precondition.matches(current.etag):
            await self._audit_rejection(definition, actor, "conflict")
            raise VersionConflict(
                f"{definition.name} changed since you read it.", extra={"current": current.public()}
            )
        return current

    async def validate(self, definition: SettingDefinition, value: Any, actor: Actor) -> Any:
        """The checked value; a refused one is audited too, and nothing is written."""
        try:
            return definition.validate(value)
        except InvalidValue:
            await self._audit_rejection(definition, actor, "invalid")
            raise

    async def compare_and_set(
        self,
        current: SettingEntry,
        value: Any,
        actor: Actor,
        *,
        reset: bool = False,
        unconditional: bool = False,
    ) -> SettingEntry:
        """Write `value` (or reset to the next source down) if the version is still `current`'s;
        with `unconditional` (If-Match: *, or no If-Match where allowed), whatever it is now.

        Either way one statement decides, and the audit entry commits in its transaction. An
        unconditional write is an upsert that bumps whatever version is stored, so `*` never
        fails for a defined setting however many writers race (RFC 9110 section 13.1.1).
        """
        definition = current.definition
        text = None if reset else json.dumps(value)
        now = utcnow()
        expected = None if unconditional else current.version
        async with self.database.session() as session:
            version = await session.scalar(self._swap(definition, expected, text, now, actor.name))
            if version is not None:
                entry = self._entry(
                    definition, StoredRow(None if reset else value, not reset, version, now, actor.name)
                )
                self.audit.add(
                    session,
                    "setting.reset" if reset else "setting.update",
                    actor,
                    target=definition.name,
                    detail={"version": version, "value": definition.shown(entry.value)},
                )
                announced = await self.bus.stage(session, SETTING_UPDATED, self._announcement(entry))
                await session.commit()
        if version is None:
            current = await self.get(definition.namespace, definition.key)
            await self._audit_rejection(definition, actor, "conflict")
            raise VersionConflict(
                f"{definition.name} changed since you read it.", extra={"current": current.public()}
            )
        self._rows[definition.name] = entry.row
        await self.bus.deliver([announced])
        return entry

    def _swap(
        self, definition: SettingDefinition, expected: int | None, text: str | None, now: datetime, who: str
    ) -> Any:
        """The one statement of a write, returning the new version, or no row if it lost.

        `expected` None: an upsert. 0 (never written): an INSERT that does nothing when another
        first write got there before. Otherwise `UPDATE ... WHERE version = :expected`.
        """
        table = Setting.__table__
        written = {"value": text, "updated_at": now, "updated_by": who}
        if expected is not None and expected > 0:
            statement = (
                update(table)
                .where(table.c.namespace == definition.namespace, table.c.key == definition.key)
                .where(table.c.version == expected)
                .values(version=table.c.version + 1, **written)
            )
            return statement.returning(table.c.version)
        insert = pg_insert if self.database.config.is_postgresql else sqlite_insert
        first = insert(table).values(namespace=definition.namespace, key=definition.key, version=1, **written)
        primary_key = [table.c.namespace, table.c.key]
        if expected == 0:
            return first.on_conflict_do_nothing(index_elements=primary_key).returning(table.c.version)
        excluded = first.excluded
        return first.on_conflict_do_update(
            index_elements=primary_key,
            set_={
                "value": excluded.value,
                "updated_at": excluded.updated_at,
                "updated_by": excluded.updated_by,
                "version": table.c.version + 1,
            },
        ).returning(table.c.version)

    async def publish(self, entry: SettingEntry) -> None:
        """A change this process noticed in the database (the command line's, on SQLite)."""
        await self.bus.publish(SETTING_UPDATED, self._announcement(entry))

    def _announcement(self, entry: SettingEntry) -> dict[str, Any]:
        """`event` is what subscribers see (sensitive values masked); `row` is what other
        processes store, so they serve the new value without reading it back."""
        public = entry.public()
        row = entry.row
        return {
            "event": {
                key: public[key]
                for key in ("namespace", "key", "value", "source", "version", "etag", "updated_by")
            },
            "row": {
                "value": row.value,
                "is_set": row.is_set,
                "version": row.version,
                "updated_at": isoformat(row.updated_at),
                "updated_by": row.updated_by,
            },
        }

    def _on_updated(self, message: Message) -> None:
        """Any process's write (this one's too). A newer version read meanwhile is kept."""
        event, wire = message.payload["event"], message.payload["row"]
        definition = self.registry.get(event["namespace"], event["key"])
        if definition is None:
            return
        known = self._rows.get(definition.name, NEVER_WRITTEN)
        if wire["version"] < known.version:
            return
        updated_at = wire["updated_at"]
        self._rows[definition.name] = StoredRow(
            wire["value"],
            wire["is_set"],
            wire["version"],
            parse_isoformat(updated_at) if updated_at else None,
            wire["updated_by"],
        )

    async def _audit_rejection(self, definition: SettingDefinition, actor: Actor, outcome: str) -> None:
        await self.audit.record("setting.update", actor, target=definition.name, outcome=outcome)

    async def refresh_changed(self, since: datetime) -> list[SettingEntry]:
        """Rows written elsewhere since `since`: update memory, return the entries that changed."""
        async with self.database.session() as session:
            rows = (await session.scalars(select(Setting).where(Setting.updated_at >= since))).all()
        changed = []
        for setting in rows:
            definition = self.registry.get(setting.namespace, setting.key)
            if definition is None:
                continue
            row = _row(setting)
            if self._rows.get(definition.name) != row:
                changed.append(self._remember(definition, row))
        return changed
