"""Real processes for the tests: a throwaway PostgreSQL cluster, the server itself, TLS files.

Nothing here is mocked: the cluster is Debian's PostgreSQL started from `initdb`, and the server
is `python -m synthorg_tornado serve` with a temporary config.yaml.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import yaml

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
LISTENING = re.compile(r"listening on (https?://[^\s\"]+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB: what a test of memory bounds reads."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll a condition with a deadline: for processes we do not control, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class PostgresCluster:
    """One cluster per test run; each test module gets its own fresh database."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._databases = 0

    @staticmethod
    def bin_dir() -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL server binaries not found; install the postgresql package")
        return Path(found[-1]).parent

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:1])} failed: {result.stderr.strip()}")
        return result

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        bin_dir = self.bin_dir()
        self._run(
            str(bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        self.start_server()

    def start_server(self) -> None:
        """Start (again) on the existing data directory and the same port."""
        bin_dir = self.bin_dir()
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            # Statement counts, for the tests that count what a request costs in round trips.
            "-c shared_preload_libraries=pg_stat_statements"
        )
        self._run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "postgres.log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` for teardown; `fast` when the data must survive (this cluster runs without
        fsync, so an immediate stop may drop the last commits)."""
        with contextlib.suppress(RuntimeError):
            self._run(str(self.bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop")

    def create_database(self, prefix: str) -> str:
        self._databases += 1
        name = re.sub(r"[^a-z0-9_]", "_", f"{prefix}_{self._databases}".lower())[:60]
        self.psql(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def psql(self, sql: str, database: str = "postgres") -> list[tuple]:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        ) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def throwaway_cluster(prefix: str = "synthorg-pg-") -> Iterator[PostgresCluster]:
    """A started cluster in a folder the postgres user can reach (not pytest's private tree)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = PostgresCluster(root)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def write_config(directory: Path, database_url: str, **sections: dict[str, Any]) -> Path:
    """A test config.yaml: fast bcrypt, a free choice of port, everything else overridable."""
    directory.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "database": {"url": database_url},
        "auth": {"bcrypt_rounds": 4, "password_min_length": 8},
        "logging": {"level": "INFO", "format": "text"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class ServerProcess:
    """`synthorg-tornado serve` in a subprocess; its log is a file the tests can read."""

    def __init__(
        self,
        config_path: Path,
        env: dict[str, str] | None = None,
        program: list[str] | None = None,
        serve_arguments: list[str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.serve_arguments = serve_arguments or []
        # How the server is started: this interpreter on the checkout, or an installed script.
        self.program = program or [sys.executable, "-m", "synthorg_tornado"]
        self.log_path = config_path.parent / f"server-{time.monotonic_ns()}.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> ServerProcess:
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*self.program, "serve", *self.serve_arguments, "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.config_path.parent,
        )
        self.url = wait_for(self._listening_url, STARTUP_TIMEOUT, "the server to listen")
        return self

    def _listening_url(self) -> str | None:
        assert self.process is not None
        match = LISTENING.search(self.log())
        if match:
            return match.group(1)
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
        return None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        regex = re.compile(pattern)
        return wait_for(lambda: regex.search(self.log()), timeout, f"log line {pattern!r}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        with contextlib.suppress(Exception):
            self._log.close()


def make_certificate(directory: Path, name: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    """A self-signed (or CA-signed) certificate for 127.0.0.1/localhost, via the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subject = f"/CN={name}"
    extensions = directory / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    if ca is None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                subject,
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    request = directory / f"{name}.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(request),
            "-subj",
            subject,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(request),
            "-CA",
            str(ca[0]),
            "-CAkey",
            str(ca[1]),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            "2",
            "-extfile",
            str(extensions),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Response:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def http_request(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    context: Any = None,
    timeout: float = 10.0,
) -> Response:
    """A plain HTTP request that returns error statuses instead of raising them."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
            return Response(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


def cli(lab: Lab, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The command line, as a sysadmin runs it, against a running lab's config.yaml."""
    return subprocess.run(
        [sys.executable, "-m", "synthorg_tornado", *args, "--config", str(lab.server.config_path)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


SETUP_LINE = re.compile(r"Open (\S+)/setup\?token=([A-Za-z0-9_-]+)")


def setup_token(server: ServerProcess) -> str:
    match = server.wait_for_log(SETUP_LINE.pattern)
    return match.group(2)


ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"


class Lab:
    """A running server with its first admin created through the setup URL."""

    def __init__(self, server: ServerProcess) -> None:
        from tests.client import Client

        self.server = server
        self.url = server.url
        self.client_class = Client
        reply = Client(self.url).post(
            "/api/v1/auth/setup",
            {"token": setup_token(server), "username": "admin", "password": ADMIN_PASSWORD},
        )
        assert reply.status == 201, reply
        self.admin = Client(self.url, token=reply.json()["token"])
        self._users = 0

    def client(self, **kwargs: Any):  # type: ignore[no-untyped-def]
        return self.client_class(self.url, **kwargs)

    def create_user(self, role: str = "member", username: str | None = None) -> dict[str, Any]:
        self._users += 1
        name = username or f"{role}{self._users}"
        reply = self.admin.post("/api/v1/users", {"username": name, "password": USER_PASSWORD, "role": role})
        assert reply.status == 201, reply
        return reply.json()

    def login(self, username: str, password: str = USER_PASSWORD, **kwargs: Any):  # type: ignore[no-untyped-def]
        """A Bearer client for a fresh session of this user, and the login body."""
        anonymous = self.client(**kwargs)
        reply = anonymous.post("/api/v1/auth/login", {"username": username, "password": password})
        assert reply.status == 200, reply
        body = reply.json()
        return self.client(token=body["token"], **kwargs), body

    def login_cookie(self, username: str, password: str = USER_PASSWORD, **kwargs: Any):  # type: ignore[no-untyped-def]
        """A browser-like client holding the session and XSRF cookies."""
        browser = self.client(**kwargs)
        reply = browser.post("/api/v1/auth/login", {"username": username, "password": password})
        assert reply.status == 200, reply
        return browser, reply
