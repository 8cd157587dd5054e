"""Who is online in the whole lab, however many processes serve it.

Each process (a `node`) owns the counts of its own sockets and announces them on the bus:
- a change message whenever counts change, carrying the node's new count for each user whose
  count changed (absolute, not +1/-1, so applying one twice or late can never drift);
- a heartbeat with its full table every `HEARTBEAT_SECONDS`;
- a hello when it starts, which every other node answers with a heartbeat at once, so a new
  process knows the lab within milliseconds;
- a goodbye (an empty table) when it stops.

Every node applies those messages in log order to the same lab-wide table. `presence.online` and
`presence.offline` are derived there, when a user's total crosses zero, so every node decides the
same at the same point of the log and tells its own sockets: each subscriber sees one online for
the first tab anywhere and one offline for the last tab everywhere, and `presence.updated` with
the new number of tabs when it changes in between. A node whose heartbeat is
older than `DEAD_AFTER_SECONDS` (killed, host lost) is dropped by each node on its own clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from synthorg_tornado.accounts.records import UserRecord
from synthorg_tornado.clock import isoformat, parse_isoformat, utcnow
from synthorg_tornado.realtime.bus import PRESENCE, Bus, Message

log = logging.getLogger("synthorg.presence")

HEARTBEAT_SECONDS = 10.0
DEAD_AFTER_SECONDS = 30.0
ONLINE, OFFLINE, UPDATED = "presence.online", "presence.offline", "presence.updated"

# (event type, user payload, the message it was derived from)
Emit = Callable[[str, dict[str, Any], Message], None]


@dataclass
class Tabs:
    username: str
    display_name: str
    connections: int
    since: datetime

    def wire(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "connections": self.connections,
            "since": isoformat(self.since),
        }


class LabPresence:
    def __init__(self, bus: Bus, node: str) -> None:
        self.bus = bus
        self.node = node
        self.emit: Emit = lambda _type, _user, _message: None
        self.local: dict[int, Tabs] = {}
        # node -> user id -> tabs, as the ordered log says.
        self.lab: dict[str, dict[int, Tabs]] = {}
        self._heard: dict[str, float] = {}
        self._dirty: set[int] = set()
        self._changed = asyncio.Event()
        self._hello_wanted = False
        self._tasks: list[asyncio.Task[None]] = []
        bus.subscribe(PRESENCE, self._on_message)

    # -- this node's sockets -------------------------------------------------------------

    def count(self, user_id: int) -> int:
        """The user's sockets in the whole lab: this node's as they are now, the others' as the
        log says (so two processes opening a socket at the same instant may both allow it)."""
        entry = self.local.get(user_id)
        here = entry.connections if entry else 0
        return here + sum(
            t[user_id].connections for n, t in self.lab.items() if n != self.node and user_id in t
        )

    def opened(self, user: UserRecord) -> None:
        entry = self.local.get(user.id)
        if entry is None:
            self.local[user.id] = Tabs(user.username, user.display_name, 1, utcnow())
        else:
            entry.connections += 1
        self._mark(user.id)

    def closed(self, user_id: int) -> None:
        entry = self.local.get(user_id)
        if entry is None:
            return
        entry.connections -= 1
        if entry.connections <= 0:
            del self.local[user_id]
        self._mark(user_id)

    def forget(self, user_id: int, message: Message) -> None:
        """A deleted user, dropped from every node's table at one point of the log (each node
        applies the same message), with `presence.offline` if it was online."""
        before = {user_id: self._total(user_id)}
        users = {user_id: next((t[user_id] for t in self.lab.values() if user_id in t), None)}
        self.local.pop(user_id, None)
        self._dirty.discard(user_id)
        for node, table in list(self.lab.items()):
            if table.pop(user_id, None) is not None and not table:
                del self.lab[node]
        self._emit_crossings(before, users, message)

    def _mark(self, user_id: int) -> None:
        self._dirty.add(user_id)
        self._changed.set()

    # -- the lab's view --------------------------------------------------------------------

    def online(self) -> list[dict[str, Any]]:
        """`GET /api/v1/presence`: this node's own sockets as they are now, the others' as the
        log says (so a socket opened a moment ago is listed here at once)."""
        merged: dict[int, Tabs] = {}
        views = [self.local, *(t for node, t in self.lab.items() if node != self.node)]
        for table in views:
            for user_id, tabs in table.items():
                entry = merged.get(user_id)
                if entry is None:
                    merged[user_id] = Tabs(tabs.username, tabs.display_name, tabs.connections, tabs.since)
                else:
                    entry.connections += tabs.connections
                    entry.since = min(entry.since, tabs.since)
        return [
            {
                "user_id": str(user_id),
                "username": tabs.username,
                "display_name": tabs.display_name,
                "connections": tabs.connections,
                "since": isoformat(tabs.since),
            }
            for user_id, tabs in sorted(merged.items(), key=lambda item: item[1].username.lower())
        ]

    def _total(self, user_id: int) -> int:
        return sum(table[user_id].connections for table in self.lab.values() if user_id in table)

    def _on_message(self, message: Message) -> None:
        body = message.payload
        node = body["node"]
        if node != self.node:
            self._heard[node] = time.monotonic()
            if body.get("hello"):
                self._hello_wanted = True
                self._changed.set()
        counts = {int(uid): _tabs(wire) for uid, wire in body.get("users", {}).items()}
        table = self.lab.setdefault(node, {})
        affected = set(counts) | (set(table) if body.get("full") else set())
        before = {user_id: self._total(user_id) for user_id in affected}
        users = {user_id: (table.get(user_id) or counts.get(user_id)) for user_id in affected}
        if body.get("full"):
            table.clear()
        for user_id, tabs in counts.items():
            if tabs.connections > 0:
                table[user_id] = tabs
            else:
                table.pop(user_id, None)
        if not table:
            self.lab.pop(node, None)
        self._emit_crossings(before, users, message)

    def _emit_crossings(
        self, before: dict[int, int], users: dict[int, Tabs | None], message: Message
    ) -> None:
        """online on a user's first tab anywhere, offline on the last everywhere, and updated
        (with the new total) when the count changes in between."""
        for user_id, was in before.items():
            now = self._total(user_id)
            tabs = users.get(user_id)
            if tabs is None or was == now:
                continue
            payload = {
                "user_id": str(user_id),
                "username": tabs.username,
                "display_name": tabs.display_name,
                "connections": now,
            }
            if was == 0:
                self.emit(ONLINE, payload, message)
            elif now == 0:
                self.emit(OFFLINE, payload, message)
            else:
                self.emit(UPDATED, payload, message)

    def drop_silent_nodes(self) -> None:
        """Forget nodes not heard from for `DEAD_AFTER_SECONDS`, with `presence.offline` where
        that was a user's last tab. A node is heard from by every message it logs."""
        cutoff = time.monotonic() - DEAD_AFTER_SECONDS
        for node in [n for n, heard in self._heard.items() if heard < cutoff]:
            del self._heard[node]
            table = self.lab.get(node)
            if not table:
                continue
            log.warning(
                "process %s sent no presence heartbeat for %.0f s; its sockets count as closed",
                node,
                DEAD_AFTER_SECONDS,
            )
            before = {user_id: self._total(user_id) for user_id in table}
            users: dict[int, Tabs | None] = dict(table)
            del self.lab[node]
            self._emit_crossings(before, users, Message(PRESENCE, {}, id=self.bus.last_applied))

    # -- announcing ------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._announce()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._sweep()),
        ]
        await self._send({"hello": True, "full": True, "users": self._snapshot(self.local)})

    async def stop(self) -> None:
        if not self._tasks:
            return  # never started (the command line): nothing to say goodbye to
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self._send({"full": True, "users": {}})
        except Exception:
            log.warning(
                "could not announce that this process's sockets closed; others drop them in %.0f s",
                DEAD_AFTER_SECONDS,
            )

    async def _announce(self) -> None:
        """One writer, so this node's messages enter the log in the order of its snapshots."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._hello_wanted:
                self._hello_wanted = False
                self._dirty.clear()
                message: dict[str, Any] = {"full": True, "users": self._snapshot(self.local)}
            else:
                dirty, self._dirty = self._dirty, set()
                message = {"users": self._snapshot({u: self.local.get(u) for u in dirty})}
            try:
                await self._send(message)
            except Exception:
                log.warning("could not announce presence; the next heartbeat carries it")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._send({"full": True, "users": self._snapshot(self.local)})
            except Exception:
                log.warning("could not send the presence heartbeat")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.drop_silent_nodes()

    async def _send(self, body: dict[str, Any]) -> None:
        await self.bus.publish(PRESENCE, {"node": self.node, **body})

    @staticmethod
    def _snapshot(table: dict[int, Tabs | None]) -> dict[str, Any]:
        return {
            str(user_id): (tabs.wire() if tabs else {"connections": 0}) for user_id, tabs in table.items()
        }


def _tabs(wire: dict[str, Any]) -> Tabs:
    since = wire.get("since")
    return Tabs(
        wire.get("username", ""),
        wire.get("display_name", ""),
        int(wire.get("connections", 0)),
        parse_isoformat(since) if since else utcnow(),
    )
