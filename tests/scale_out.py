"""Two server processes, A and B, on one PostgreSQL database, as two workers or two hosts run.

A listens on 127.0.0.1 and B on 127.0.0.2, so each is a separate host as far as addresses go.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.client import Client
from tests.conftest import start_lab
from tests.servers import Lab, PostgresCluster, ServerProcess, write_config


class TwoProcesses:
    def __init__(self, cluster: PostgresCluster, url: str, a: Lab, b: ServerProcess) -> None:
        self.cluster = cluster
        self.url = url
        self.database = url.rsplit("/", 1)[1]
        self.a = a
        self.b = b

    def on_b(self, **kwargs: Any) -> Client:
        return Client(self.b.url, **kwargs)

    def sql(self, statement: str) -> list[tuple]:
        return self.cluster.psql(statement, database=self.database)

    def listener_backend(self, server: ServerProcess) -> int:
        """The PostgreSQL pid of `server`'s LISTEN connection, found by its client port."""
        assert server.process is not None
        ports = local_ports(server.process.pid)
        rows = self.sql(
            "SELECT pid, client_port FROM pg_stat_activity WHERE application_name = 'synthorg-listener'"  # noqa: S608
            f" AND datname = '{self.database}'"
        )
        mine = [pid for pid, port in rows if port in ports]
        assert len(mine) == 1, (rows, ports)
        return mine[0]


@contextlib.contextmanager
def two_processes(
    cluster: PostgresCluster, directory: Path, prefix: str, **sections: dict[str, Any]
) -> Iterator[TwoProcesses]:
    url = cluster.create_database(prefix)
    # One signing secret for both, as several hosts must share (A generates it).
    auth = {**sections.get("auth", {}), "secret_file": str(directory / "shared_secret")}
    sections = {**sections, "auth": auth}
    a = start_lab(directory / "a", url, **sections)
    b_sections = {**sections, "server": {**sections.get("server", {}), "host": "127.0.0.2"}}
    b = ServerProcess(write_config(directory / "b", url, **b_sections))
    try:
        b.start()
        yield TwoProcesses(cluster, url, a, b)
    finally:
        assert a.server.terminate() == 0
        if b.process is not None and b.process.poll() is None:
            assert b.terminate() == 0


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of the sockets process `pid` holds open (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
