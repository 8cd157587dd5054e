"""The event bus: the low seam between services and everything that reacts to them.

Services publish domain events here (a session was revoked, a user changed, a setting was
updated) without knowing who listens. The realtime hub subscribes and fans out to sockets. This
local bus delivers within one process; a PostgreSQL LISTEN/NOTIFY bus with the same interface
carries events between processes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("synthorg.bus")

Listener = Callable[[str, dict[str, Any]], Awaitable[None] | None]

SESSION_REVOKED = "session.revoked"
USER_CHANGED = "user.changed"
API_TOKEN_REVOKED = "api_token.revoked"
SETTING_UPDATED = "setting.updated"


class LocalBus:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = defaultdict(list)

    def subscribe(self, topic: str, listener: Listener) -> None:
        self._listeners[topic].append(listener)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Deliver to every listener; one failing listener never stops the others."""
        for listener in list(self._listeners.get(topic, ())):
            try:
                result = listener(topic, payload)
                if result is not None:
                    await result
            except Exception:
                log.exception("listener for %s failed", topic)
