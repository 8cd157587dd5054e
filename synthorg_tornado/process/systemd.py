"""systemd's notify protocol (`Type=notify`), without a dependency: a datagram per state change.

- `READY=1` once the sockets listen, so `systemctl start` returns when the lab answers and units
  ordered after it start only then;
- `STOPPING=1` when a graceful stop begins;
- `WATCHDOG=1` every half `WatchdogSec`, from the IOLoop itself: a loop that stalls stops
  pinging, and systemd restarts the process.

Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("synthorg.systemd")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@' and addressed with a NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_seconds = _watchdog_seconds(environ)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *states: str) -> None:
        if not self.address:
            return
        message = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.sendto(message, self.address)
        except OSError as exc:
            # systemd gone or the socket unreachable: the server runs on, and says so once.
            log.warning("could not notify systemd at %s: %s", self.address.lstrip("\0"), exc.strerror)
            self.address = ""

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=shutting down")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")


def _watchdog_seconds(environ: Mapping[str, str]) -> float | None:
    """Half of WatchdogSec, when the watchdog is meant for this process: the main process, or a
    worker it forked (`server.processes > 1`, which needs `NotifyAccess=all`)."""
    with contextlib.suppress(ValueError):
        usec = int(environ.get("WATCHDOG_USEC", ""))
        pid = environ.get("WATCHDOG_PID")
        if usec > 0 and (pid is None or int(pid) in (os.getpid(), os.getppid())):
            return usec / 2_000_000
    return None
