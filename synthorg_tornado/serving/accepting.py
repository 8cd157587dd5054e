"""Accepting connections without spinning when file descriptors run out.

Tornado's `netutil.add_accept_handler` re-raises EMFILE from `accept()`. The pending connection
keeps the listening socket readable, so the event loop calls the handler again at once: the
process spins at 100% CPU and logs a traceback per attempt. `Acceptor` pauses instead.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from typing import TYPE_CHECKING, Any

from tornado.ioloop import IOLoop

if TYPE_CHECKING:
    from synthorg_tornado.serving.connections import LabHTTPServer

ACCEPT_BATCH = 128  # accepts per wake-up, as Tornado's: other work is not starved
ACCEPT_PAUSE_SECONDS = 0.1
EXHAUSTION_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
LOG_INTERVAL_SECONDS = 60.0


class RateLimitedLog:
    """A message that may repeat many times a second, logged at most once per interval with the
    count of what was held back."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.logger = logger
        self.interval = interval
        self.last = -interval
        self.held_back = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.held_back += 1
            return
        suffix = f" ({self.held_back} more in the last {self.interval:.0f} s)" if self.held_back else ""
        self.logger.warning(message + suffix, *args)
        self.last, self.held_back = now, 0


class Acceptor:
    """Accepts on one listening socket. When descriptors run out, accepting pauses briefly (the
    pending connection keeps the socket readable, so retrying at once would spin) and the oldest
    waiting connection is shed to make room."""

    def __init__(self, server: LabHTTPServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.io_loop = IOLoop.current()
        self.removed = False
        self.paused: object | None = None
        self.io_loop.add_handler(sock, self.on_readable, IOLoop.READ)

    def on_readable(self, fd: Any, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.removed:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                self.on_error(error)
                return
            self.server.admit(connection, address)

    def on_error(self, error: OSError) -> None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.server.accept_failures.warning(
            "cannot accept connections: %s; pausing accepts for %.1f s (open files limit %d, "
            "server.max_connections %d, %d connections open)",
            error.strerror or error,
            ACCEPT_PAUSE_SECONDS,
            limit,
            self.server.max_connections,
            len(self.server.streams),
        )
        if error.errno in EXHAUSTION_ERRNOS:
            self.server.shed_oldest_waiting()
        self.io_loop.remove_handler(self.sock)
        self.paused = self.io_loop.call_later(ACCEPT_PAUSE_SECONDS, self.resume)

    def resume(self) -> None:
        self.paused = None
        if not self.removed:
            self.io_loop.add_handler(self.sock, self.on_readable, IOLoop.READ)

    def remove(self) -> None:
        """What `TCPServer.stop()` calls to stop accepting on this socket."""
        if self.paused is not None:
            self.io_loop.remove_timeout(self.paused)
        else:
            self.io_loop.remove_handler(self.sock)
        self.removed = True
