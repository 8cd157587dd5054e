"""`server.processes: 2` on PostgreSQL: one port, two supervised workers, one way to stop them.

Every test drives the real `serve` command. The pids come from the log lines each worker writes
once it listens, and from `/proc`, never from the server's own word about itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthorg_tornado.process.workers import MAX_BACKOFF_SECONDS, backoff_seconds
from tests.conftest import start_lab
from tests.realtime import closed_with, connect
from tests.servers import (
    Lab,
    PostgresCluster,
    ServerProcess,
    http_request,
    make_certificate,
    wait_for,
    write_config,
)
from tests.test_abuse_http import raw, read_response

WORKER_LISTENING = re.compile(r"worker (\d+) \(pid (\d+)\) listening on")
BODY = json.dumps({"username": "nobody", "password": "not-the-password"}).encode()
HEAD = (
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\nExpect: 100-continue\r\n\r\n"
)
CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"


def listening_workers(server: ServerProcess) -> dict[int, int]:
    """pid -> worker index, for every worker that ever said it listens."""
    return {int(pid): int(index) for index, pid in WORKER_LISTENING.findall(server.log())}


def parent_of(pid: int) -> int | None:
    """The PPID from /proc, or None once the process is gone (zombies count as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return None if fields[0] == "Z" else int(fields[1])


def alive(pid: int) -> bool:
    return parent_of(pid) is not None


def start_workers(directory: Path, database_url: str, **sections: dict) -> Lab:
    server_section = {"processes": 2, **sections.pop("server", {})}
    env = {"XDG_RUNTIME_DIR": str(directory / "xdg")}
    lab = start_lab(directory, database_url, env=env, server=server_section, **sections)
    wait_for(lambda: len(listening_workers(lab.server)) == 2, 20, "both workers to listen")
    return lab


@pytest.fixture(scope="module")
def lab(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_workers(tmp_path_factory.mktemp("workers"), pg_cluster.create_database("workers"))
    yield lab
    assert lab.server.terminate() == 0


def test_two_workers_listen_on_one_port_as_children_of_the_main_process(lab: Lab) -> None:
    workers = listening_workers(lab.server)
    main = lab.server.process.pid
    assert sorted(workers.values()) == [0, 1] and main not in workers
    assert all(parent_of(pid) == main for pid in workers)
    # One port, the one the log names, answered by whichever worker accepts.
    urls = set(re.findall(r"listening on (\S+)", lab.server.log()))
    assert urls == {lab.url}
    for _ in range(10):
        assert http_request(lab.url + "api/v1/health").status == 200
    assert lab.server.log().count("No user exists yet") == 1


def test_a_sigkilled_worker_is_logged_and_restarted(lab: Lab) -> None:
    main = lab.server.process.pid
    before = listening_workers(lab.server)
    victim = next(pid for pid, index in before.items() if index == 1 and alive(pid))
    os.kill(victim, signal.SIGKILL)
    lab.server.wait_for_log(rf"worker 1 \(pid {victim}\) exited with signal SIGKILL", timeout=10)
    replaced = wait_for(
        lambda: [pid for pid, index in listening_workers(lab.server).items() if index == 1 and alive(pid)],
        20,
        "worker 1 to be started again",
    )
    [fresh] = replaced
    assert fresh != victim and parent_of(fresh) == main
    assert re.search(rf"worker 1 \(pid {victim}\) exited .* restarting it in", lab.server.log())
    assert lab.admin.get("/api/v1/me").status == 200
    assert all(parent_of(pid) == main for pid, index in listening_workers(lab.server).items() if index == 0)


@pytest.mark.gen_test(timeout=90)
async def test_sigterm_to_the_main_process_drains_and_stops_every_worker_and_exits_0(  # type: ignore[no-untyped-def]
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    lab = await loop.run_in_executor(
        None,
        lambda: start_workers(
            tmp_path, pg_cluster.create_database("workers_stop"), server={"shutdown_grace_seconds": 30}
        ),
    )
    server = lab.server
    try:
        # Enough sockets that both workers almost surely hold some; every one must close with 1001.
        sockets = [await connect(lab.url, token=lab.admin.token) for _ in range(8)]
        in_flight = raw(server, HEAD)
        assert in_flight.recv(len(CONTINUE), socket.MSG_WAITALL) == CONTINUE
        workers = listening_workers(server)

        server.process.send_signal(signal.SIGTERM)
        # Refused at once although a worker still drains: the main process let go of the port too.
        await loop.run_in_executor(None, lambda: wait_for(lambda: refused(server.port), 10, "refusal"))
        assert server.process.poll() is None  # the request in flight holds its worker

        in_flight.settimeout(10)
        in_flight.sendall(BODY)
        status, headers, _ = read_response(in_flight)
        assert status == 401 and headers["connection"] == "close"
        codes = [await closed_with(ws, timeout=15) for ws in sockets]
        assert codes == [1001] * len(sockets)
        exit_code = await loop.run_in_executor(None, lambda: server.terminate(timeout=30))
    finally:
        server.kill()
    assert exit_code == 0
    assert not [pid for pid in workers if alive(pid)]
    log = server.log()
    assert "SIGTERM received; stopping 2 workers" in log and "all 2 workers stopped" in log
    assert "restarting" not in log and "killing it" not in log
    assert not list((tmp_path / "xdg" / "synthorg-tornado").glob("synthorg-server-*"))


def test_workers_of_a_main_process_killed_with_sigkill_stop_too(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    lab = start_workers(tmp_path, pg_cluster.create_database("workers_orphans"))
    try:
        workers = listening_workers(lab.server)
        lab.server.process.kill()
        lab.server.process.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in workers), 20, "the orphaned workers to stop")
    finally:
        for pid in listening_workers(lab.server):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        lab.server.kill()


def notifications(sock: socket.socket, until: str, timeout: float = 20.0) -> list[tuple[int, list[str]]]:
    """(sender pid, lines) of each datagram up to the first carrying `until`, as systemd sees them."""
    sock.settimeout(timeout)
    received = []
    while True:
        data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        [pid] = [
            struct.unpack("3i", payload)[0]
            for level, kind, payload in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        ]
        received.append((pid, data.decode().splitlines()))
        if until in received[-1][1]:
            return received


def test_under_systemd_workers_say_ready_and_ping_and_the_main_process_says_stopping(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sd-"))  # unix socket paths are short
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    systemd.bind(str(folder / "notify"))
    config = write_config(tmp_path, pg_cluster.create_database("workers_notify"), server={"processes": 2})
    env = {"NOTIFY_SOCKET": str(folder / "notify"), "WATCHDOG_USEC": "400000"}
    server = ServerProcess(config, env=env).start()
    try:
        main = server.process.pid
        ready = [pid for pid, lines in notifications(systemd, "READY=1") if "READY=1" in lines]
        assert parent_of(ready[0]) == main
        pings = {pid for pid, lines in notifications(systemd, "WATCHDOG=1") if "WATCHDOG=1" in lines}
        assert pings and all(parent_of(pid) == main for pid in pings)
        server.process.send_signal(signal.SIGTERM)
        stopping = set()
        while main not in stopping:
            stopping |= {pid for pid, lines in notifications(systemd, "STOPPING=1") if "STOPPING=1" in lines}
        assert server.terminate() == 0
    finally:
        server.kill()
        systemd.close()
        shutil.rmtree(folder, ignore_errors=True)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_worker_that_cannot_start_is_retried_with_a_doubling_delay_until_it_can(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path / "tls", "lab")
    config = write_config(
        tmp_path,
        pg_cluster.create_database("workers_crash_loop"),
        server={"processes": 2, "ssl_certfile": str(cert), "ssl_keyfile": str(key)},
    )
    server = ServerProcess(config).start()
    try:
        wait_for(lambda: len(listening_workers(server)) == 2, 20, "both workers to listen")
        # A new worker loads the certificate as it starts: without it, each attempt fails.
        hidden = cert.with_suffix(".away")
        cert.rename(hidden)
        victim = next(pid for pid, index in listening_workers(server).items() if index == 1)
        os.kill(victim, signal.SIGKILL)
        retries = re.compile(
            r"worker 1 \(pid \d+\) exited with exit code 1 after [\d.]+ s; restarting it in ([\d.]+) s"
        )
        delays = wait_for(
            lambda: (found := retries.findall(server.log())) and len(found) >= 3 and found,
            30,
            "three retries",
        )
        first, second, third = (float(delay) for delay in delays[:3])
        # 0.5 s after the first death within 10 s of a start (the SIGKILL, or this first failure).
        assert first in (0.5, 1.0) and second == 2 * first and third == 2 * second
        hidden.rename(cert)
        wait_for(
            lambda: [pid for pid, index in listening_workers(server).items() if index == 1 and alive(pid)],
            30,
            "worker 1 to start once it can",
        )
        assert server.terminate() == 0
    finally:
        server.kill()


def test_crash_loop_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n) for n in range(5)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert backoff_seconds(50) == MAX_BACKOFF_SECONDS


# The signing secret across instances


def config_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_check_warns_that_several_processes_would_generate_the_secret(tmp_path: Path) -> None:
    url = "postgresql+psycopg://lab@127.0.0.1:1/lab"
    secret = tmp_path / "shared_secret"
    path = write_config(tmp_path, url, server={"processes": 2}, auth={"secret_file": str(secret)})
    missing = config_check(path)
    assert missing.returncode == 0, missing.stderr
    [warning] = [line for line in missing.stderr.splitlines() if "auth.secret_file" in line]
    assert str(secret) in warning and "does not exist" in warning and "same secret" in warning

    secret.write_bytes(os.urandom(32).hex().encode())
    secret.chmod(0o600)
    present = config_check(path)
    assert present.returncode == 0 and "auth.secret_file" not in present.stderr

    single = write_config(tmp_path / "one", url, auth={"secret_file": str(tmp_path / "absent")})
    assert "auth.secret_file" not in config_check(single).stderr


def test_an_instance_that_generates_its_secret_for_a_database_with_users_says_so(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = pg_cluster.create_database("workers_secret")
    first = start_lab(tmp_path / "a", url)
    try:
        assert "generated a new signing secret" not in first.server.log()
        # A second host whose sysadmin did not copy the first one's secret.
        second = ServerProcess(write_config(tmp_path / "b", url)).start()
        try:
            line = second.wait_for_log(
                r"generated a new signing secret (\S+), but this database already has users"
            )
            assert line.group(1) == str(tmp_path / "b" / "synthorg_secret")
            assert "copy their auth.secret_file" in second.log()
            assert second.terminate() == 0
        finally:
            second.kill()
        # With the secret copied, nothing to say.
        (tmp_path / "c").mkdir()
        shutil.copy2(tmp_path / "a" / "synthorg_secret", tmp_path / "c" / "synthorg_secret")
        third = ServerProcess(write_config(tmp_path / "c", url)).start()
        try:
            assert "generated a new signing secret" not in third.log()
            assert third.terminate() == 0
        finally:
            third.kill()
    finally:
        assert first.server.terminate() == 0
