"""The three servers under test, each a subprocess on a free loopback port in a temporary folder.

- synthorg-tornado: `python -m synthorg_tornado serve` with its own config.yaml and SQLite file;
  the first admin is created through the one-time setup URL it prints, exactly as a person would.
- raw Tornado (`bench/raw_tornado.py`): the ceiling.
- jupyter_server: with a token and, for B2, a real argon2 password hash, and with every Jupyter
  directory pointed into the temporary folder so nothing is read from or left in the home folder.

For the scale-out benchmarks it also starts, on demand, a throwaway PostgreSQL cluster
(`tests/servers.py`'s, one per run, one database per lab), more processes of an existing lab
(`join=`: same database, same signing secret, no setup of their own), and a real nginx from the
shipped `deploy/nginx/synthorg.conf` (`tests/nginx.py`'s) in front of one or more of them.

`Servers` owns every process it starts and stops them all, by their own handles, on exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.wire import fetch, wait_until_answering

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
ADMIN_USERNAME = "benchadmin"
ADMIN_PASSWORD = "bench-admin-password-1"
BENCH_PUBLISH_RATE = 1_000_000  # the most realtime.publish_rate_per_minute allows
# synthorg prints the listening line at INFO; at WARNING only the setup line names the URL.
SETUP_LINE = re.compile(r"Open (https?://\S+/)setup\?token=([A-Za-z0-9_-]+)")
LISTENING_LINE = re.compile(r"listening on (https?://[^\s\"]+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_split() -> tuple[set[int] | None, set[int] | None]:
    """Servers on the first CPU, load generators on the second, so they never share a core.

    None (no pinning) on a machine with a single CPU or without affinity support.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def raise_open_files(needed: int) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to at least `needed` (the hard one too, as
    root, when it is lower). Only the benchmark's own processes: product defaults never change.

    Returns the (soft, hard) limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed, needed
        except (ValueError, OSError):
            needed = hard  # anyone else gets as far as the hard limit allows
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed, hard


def _before_exec(cpus: set[int] | None, open_files: int | None) -> Any:
    """What a child does between fork and exec: its CPU set and its open-files limit."""
    if not cpus and not open_files:
        return None

    def prepare() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if open_files:
            raise_open_files(open_files)

    return prepare


@dataclass
class Target:
    """A running server and the authenticated GET that B1 and B2 send to it."""

    name: str
    base_url: str
    get_url: str
    get_headers: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.base_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        return host, int(port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Servers:
    """Starts servers on demand; `with Servers(...) as servers:` stops them all at the end."""

    def __init__(self, pin: bool = True, open_files: int | None = None) -> None:
        self.pin_cpus = cpu_split()[0] if pin else None
        self.open_files = open_files
        self._tmp = tempfile.TemporaryDirectory(prefix="synthorg-bench-")
        self.root = Path(self._tmp.name)
        self._running: list[tuple[subprocess.Popen, Any]] = []
        # Stopped after the servers: nginx, the PostgreSQL cluster.
        self._helpers = contextlib.ExitStack()
        self._cluster: Any = None
        self._certificate: tuple[Path, Path] | None = None

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_all()
        finally:
            self._helpers.close()
            self._tmp.cleanup()

    def _spawn(
        self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen, Path]:
        log_path = cwd / f"{name}.log"
        log_file = log_path.open("w")
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Pinned before exec, so every thread the server starts later inherits the CPU set;
            # the open-files limit is raised there too when a benchmark holds thousands of sockets.
            preexec_fn=_before_exec(self.pin_cpus, self.open_files),
        )
        self._running.append((process, log_file))
        return process, log_path

    def stop(self, target: Target) -> None:
        for entry in list(self._running):
            if entry[0] is target.process:
                self._stop_one(*entry)
                self._running.remove(entry)

    def stop_all(self) -> None:
        while self._running:
            self._stop_one(*self._running.pop())

    @staticmethod
    def _stop_one(process: subprocess.Popen, log_file: Any) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        log_file.close()

    def synthorg(
        self,
        auth: dict[str, Any] | None = None,
        database_url: str | None = None,
        server: dict[str, Any] | None = None,
        join: Target | None = None,
    ) -> Target:
        """A fresh lab (SQLite unless `database_url` is given); returns the Bearer JWT of its first
        admin as the credential.

        `server` adds keys to the `server` section (`host`, `processes`, `trusted_proxies`).
        `join` starts another process of that lab instead: its database and signing secret, and
        its admin's JWT, which every process of the lab accepts. Each lab on PostgreSQL gets a
        secret file of its own that all its processes share, as several hosts must.
        """
        folder = Path(tempfile.mkdtemp(prefix="synthorg-", dir=self.root))
        if join is not None:
            database_url = join.extra["config"]["database"]["url"]
            auth = {**join.extra["config"]["auth"], **(auth or {})}
        elif database_url and not database_url.startswith("sqlite"):
            auth = {"secret_file": str(folder / "lab_secret"), **(auth or {})}
        server = {"host": "127.0.0.1", "port": free_port(), **(server or {})}
        config = {
            "server": server,
            "database": {"url": database_url or f"sqlite+aiosqlite:///{folder / 'lab.db'}"},
            "auth": {"bcrypt_rounds": 4, **(auth or {})},
            "logging": {"access_log": False, "level": "WARNING", "format": "text"},
            # The fan-out benchmarks publish thousands of events a minute as the admin: the
            # per-user publish rate is an abuse limit, not what they measure.
            "realtime": {"publish_rate_per_minute": BENCH_PUBLISH_RATE},
        }
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        process, log_path = self._spawn(
            "synthorg",
            [sys.executable, "-m", "synthorg_tornado", "serve", "--config", str(config_path)],
            folder,
        )
        if join is not None:
            # The lab has its admin already, so no setup line: the health endpoint says it is up.
            base_url = f"http://{server['host']}:{server['port']}/"
            wait_until_answering(base_url + "api/v1/health", STARTUP_TIMEOUT, process)
            return Target(
                name="synthorg-tornado",
                base_url=base_url,
                get_url=base_url + "api/v1/me",
                get_headers=join.get_headers,
                process=process,
                log_path=log_path,
                extra={**join.extra, "config": config, "config_path": config_path},
            )
        match = _wait_for_line(log_path, SETUP_LINE, process)
        base_url, setup_token = match.group(1), match.group(2)
        wait_until_answering(base_url + "api/v1/health", STARTUP_TIMEOUT, process)
        reply = fetch(
            base_url + "api/v1/auth/setup",
            "POST",
            {"Content-Type": "application/json"},
            _json({"token": setup_token, "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}),
        )
        if reply.status != 201:
            raise RuntimeError(f"synthorg setup answered {reply.status}: {reply.body[:300]!r}")
        jwt = reply.json()["token"]
        return Target(
            name="synthorg-tornado",
            base_url=base_url,
            get_url=base_url + "api/v1/me",
            get_headers={"Authorization": f"Bearer {jwt}"},
            process=process,
            log_path=log_path,
            extra={"config": config, "config_path": config_path, "admin_token": jwt},
        )

    def postgres(self, prefix: str) -> str:
        """A new database on this run's throwaway PostgreSQL cluster, started on first use.

        Raises RuntimeError when the PostgreSQL server binaries are missing."""
        if self._cluster is None:
            from tests.servers import throwaway_cluster

            # Its own folder, outside ours (0700): initdb runs as `postgres` when we are root.
            self._cluster = self._helpers.enter_context(throwaway_cluster("synthorg-bench-pg-"))
        return self._cluster.create_database(prefix)

    def postgres_pid(self) -> int | None:
        """The postmaster's pid (its backends are its children), None before `postgres()`."""
        if self._cluster is None:
            return None
        return int((self._cluster.data / "postmaster.pid").read_text().split()[0])

    def nginx(self, backends: list[Target]) -> Target:
        """A real nginx with the shipped site config (TLS, HTTP/1.1 keep-alive to the upstream),
        every backend one `server` line of its `upstream`; the Target's URLs are nginx's."""
        from tests.nginx import NGINX, NginxServer
        from tests.servers import make_certificate

        if not Path(NGINX).exists():
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light)")
        if self._certificate is None:
            self._certificate = make_certificate(self.root / "tls", "localhost")
        folder = Path(tempfile.mkdtemp(prefix="nginx-", dir=self.root))
        hosts = [":".join(map(str, backend.host_port)) for backend in backends]
        nginx = NginxServer(folder, hosts, certificate=self._certificate[0], key=self._certificate[1])
        self._helpers.callback(nginx.stop)
        nginx.start()
        assert nginx.process is not None
        return Target(
            name=f"nginx -> {', '.join(hosts)}",
            base_url=nginx.https_url,
            get_url=nginx.https_url + "api/v1/me",
            get_headers=backends[0].get_headers,
            process=nginx.process,
            log_path=nginx.error_log,
            extra={"nginx": nginx},
        )

    def raw_tornado(self) -> Target:
        folder = Path(tempfile.mkdtemp(prefix="raw-", dir=self.root))
        port = free_port()
        process, log_path = self._spawn(
            "raw-tornado",
            [sys.executable, "-m", "bench.raw_tornado", "--port", str(port)],
            folder,
            env={"PYTHONPATH": str(REPO)},
        )
        base_url = _wait_for_line(log_path, LISTENING_LINE, process).group(1)
        return Target("raw Tornado", base_url, base_url + "api/me", {}, process, log_path)

    def bare_broadcast(self) -> Target:
        """`bench/bare_broadcast.py`: the ceiling for B3 (and B6's reference)."""
        folder = Path(tempfile.mkdtemp(prefix="bare-", dir=self.root))
        port = free_port()
        process, log_path = self._spawn(
            "bare-broadcast",
            [sys.executable, "-m", "bench.bare_broadcast", "--port", str(port)],
            folder,
            env={"PYTHONPATH": str(REPO)},
        )
        base_url = _wait_for_line(log_path, LISTENING_LINE, process).group(1)
        return Target("bare Tornado", base_url, base_url + "publish", {}, process, log_path)

    def jupyter(self, password: str | None = None) -> Target:
        """jupyter_server with a token; with `password`, also its argon2 hash (jupyter's default)."""
        from jupyter_server.auth.security import passwd

        folder = Path(tempfile.mkdtemp(prefix="jupyter-", dir=self.root))
        directories = {name: folder / name for name in ("root", "config", "data", "runtime", "ipython")}
        for directory in directories.values():
            directory.mkdir()
        token = secrets.token_hex(24)
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={directories['root']}",
            f"--IdentityProvider.token={token}",
            "--ServerApp.terminals_enabled=False",
        ]
        if os.geteuid() == 0:
            argv.append("--allow-root")  # a container's root; the server refuses otherwise
        if password is not None:
            argv.append(f"--PasswordIdentityProvider.hashed_password={passwd(password)}")
        env = {
            "JUPYTER_CONFIG_DIR": str(directories["config"]),
            "JUPYTER_DATA_DIR": str(directories["data"]),
            "JUPYTER_RUNTIME_DIR": str(directories["runtime"]),
            "IPYTHONDIR": str(directories["ipython"]),
            # No config file from the environment or the user: no server extension is loaded,
            # so the comparison is with jupyter_server alone.
            "JUPYTER_NO_CONFIG": "1",
        }
        process, log_path = self._spawn("jupyter-server", argv, folder, env)
        base_url = f"http://127.0.0.1:{port}/"
        try:
            wait_until_answering(base_url + "api", STARTUP_TIMEOUT, process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}\n{log_path.read_text(errors='replace')[-2000:]}") from None
        return Target(
            name="jupyter_server",
            base_url=base_url,
            get_url=base_url + "api/me",
            get_headers={"Authorization": f"token {token}"},
            process=process,
            log_path=log_path,
        )


def _json(data: Any) -> bytes:
    import json

    return json.dumps(data).encode()


def _wait_for_line(log_path: Path, pattern: re.Pattern[str], process: subprocess.Popen) -> re.Match[str]:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            match = pattern.search(log_path.read_text(errors="replace"))
            if match:
                return match
        if process.poll() is not None:
            raise RuntimeError(
                f"{log_path.stem} exited with {process.returncode}:\n{log_path.read_text()[-2000:]}"
            )
        time.sleep(0.05)
    raise TimeoutError(f"{log_path.stem} printed no {pattern.pattern!r} within {STARTUP_TIMEOUT}s")
