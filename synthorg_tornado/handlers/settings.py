"""`/api/v1/settings`: read everything, write with If-Match, reset with DELETE."""

from __future__ import annotations

from synthorg_tornado.auth import roles
from synthorg_tornado.errors import InvalidValue
from synthorg_tornado.handlers.decorators import authenticated, require_role
from synthorg_tornado.handlers.versioned import VersionedResourceHandler


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
        settings = self.services.settings
        precondition = self.precondition()
        current = await settings.check_write(
            namespace,
            key,
            self.identity.user.role,
            precondition,
            self.config.settings.require_if_match,
            self.actor,
        )
        body = self.json_object()
        if "value" not in body:
            raise InvalidValue('The body must be {"value": ...}.')
        value = await settings.validate(current.definition, body["value"], self.actor)
        entry = await settings.compare_and_set(
            current, value, self.actor, unconditional=precondition.any or not precondition.present
        )
        self.write_versioned(entry.public(), entry.etag)

    @require_role(roles.ADMIN, roles.MANAGER)
    async def delete(self, namespace: str, key: str) -> None:
        settings = self.services.settings
        precondition = self.precondition()
        current = await settings.check_write(
            namespace,
            key,
            self.identity.user.role,
            precondition,
            self.config.settings.require_if_match,
            self.actor,
        )
        entry = await settings.compare_and_set(
            current, None, self.actor, reset=True, unconditional=precondition.any or not precondition.present
        )
        self.write_versioned(entry.public(), entry.etag)


default_handlers = [
    (r"api/v1/settings", SettingsListHandler),
    (r"api/v1/settings/([^/]+)/([^/]+)", SettingHandler),
]
