"""`/api/v1/settings`: read everything, write with If-Match, reset with DELETE."""

from __future__ import annotations

from synthorg_tornado.accounts import roles
from synthorg_tornado.errors import InvalidValue
from synthorg_tornado.handlers.decorators import authenticated, require_role
from synthorg_tornado.handlers.versioned import VersionedResourceHandler
from synthorg_tornado.settings.service import SettingEntry


class SettingsListHandler(VersionedResourceHandler):
    @authenticated
    async def get(self) -> None:
        entries = await self.services.settings.list()
        etag = self.services.settings.list_etag(entries)
        if not self.not_modified(etag):
            self.write_versioned([entry.public() for entry in entries], etag)


class SettingHandler(VersionedResourceHandler):
    @authenticated
    async def get(self, namespace: str, key: str) -> None:
        entry = await self.services.settings.get(namespace, key)
        if not self.not_modified(entry.etag):
            self.write_versioned(entry.public(), entry.etag)

    @require_role(roles.ADMIN, roles.MANAGER)
    async def put(self, namespace: str, key: str) -> None:
        current, unconditional = await self._writable(namespace, key)
        body = self.json_object()
        if "value" not in body:
            raise InvalidValue('The body must be {"value": ...}.')
        value = await self.services.settings.validate(current.definition, body["value"], self.actor)
        entry = await self.services.settings.compare_and_set(
            current, value, self.actor, unconditional=unconditional
        )
        self.write_versioned(entry.public(), entry.etag)

    @require_role(roles.ADMIN, roles.MANAGER)
    async def delete(self, namespace: str, key: str) -> None:
        current, unconditional = await self._writable(namespace, key)
        entry = await self.services.settings.compare_and_set(
            current, None, self.actor, reset=True, unconditional=unconditional
        )
        self.write_versioned(entry.public(), entry.etag)

    async def _writable(self, namespace: str, key: str) -> tuple[SettingEntry, bool]:
        """Role, existence and If-Match checked (in that order); the entry being replaced, and
        whether the client asked for no particular version (`*`, or no If-Match where allowed)."""
        precondition = self.precondition()
        current = await self.services.settings.check_write(
            namespace,
            key,
            self.identity.user.role,
            precondition,
            self.config.settings.require_if_match,
            self.actor,
        )
        return current, precondition.any or not precondition.present


default_handlers = [
    (r"api/v1/settings", SettingsListHandler),
    (r"api/v1/settings/([^/]+)/([^/]+)", SettingHandler),
]
