"""`Type=notify`: the server tells systemd when it is ready, when it stops, and that its loop runs.

systemd itself is not running here, so a test socket stands in for it: a datagram socket at
`NOTIFY_SOCKET`, exactly what systemd hands a `Type=notify` service.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO, ServerProcess, http_request, write_config

UNIT = REPO / "deploy" / "systemd" / "synthorg-tornado.service"


class FakeSystemd:
    def __init__(self, address: str) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.socket.settimeout(15)
        self.address = address
        self.received: list[str] = []

    def wait_for(self, state: str) -> list[str]:
        """Messages up to and including the first that carries `state`."""
        while True:
            message = self.socket.recv(4096).decode()
            self.received.append(message)
            if state in message.splitlines():
                return self.received


@pytest.fixture
def notify_folder() -> Iterator[Path]:
    # A short path: unix socket addresses are limited to 107 bytes, pytest's folders are long.
    folder = Path(tempfile.mkdtemp(prefix="sd-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_watchdog_and_stopping_reach_the_notify_socket(
    tmp_path: Path, notify_folder: Path, abstract: bool
) -> None:
    address = f"@synthorg-test-{os.getpid()}-{abstract}" if abstract else str(notify_folder / "notify")
    systemd = FakeSystemd(address)
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}")
    server = ServerProcess(config, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}).start()
    try:
        ready = systemd.wait_for("READY=1")[-1].splitlines()
        assert any(line.startswith("STATUS=listening on http://127.0.0.1:") for line in ready)
        # READY is sent only once the server answers.
        assert http_request(server.url + "api/v1/health").status == 200
        # Every half WatchdogSec (0.1 s here) the loop pings.
        for _ in range(3):
            systemd.wait_for("WATCHDOG=1")
        server.process.send_signal(15)
        assert "STOPPING=1" in systemd.wait_for("STOPPING=1")[-1].splitlines()
        assert server.terminate() == 0
    finally:
        server.kill()
        systemd.socket.close()


def test_the_shipped_unit_uses_notify_and_keeps_the_database_url_out_of_config_yaml() -> None:
    unit = UNIT.read_text()
    assert "\nType=notify\n" in unit
    assert "\nNotifyAccess=all\n" in unit
    assert "\nWatchdogSec=" in unit
    assert "\nEnvironmentFile=-/etc/synthorg/environment\n" in unit
