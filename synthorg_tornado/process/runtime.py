"""Runtime files: how the command line finds the servers running on this machine.

Every serving process writes one small JSON file at start-up, mode 0600, in the runtime folder:
`$XDG_RUNTIME_DIR/synthorg-tornado/` when that variable is set, else the folder of the signing
secret (`auth.secret_file`), the one folder the shipped systemd unit lets the service write. A
reader looks in both, so a sysadmin whose shell sets XDG_RUNTIME_DIR still finds a service that
has none. The file says where the server listens, since when, which database it serves, the
setup link while no user exists, and when it last answered a flush request (see
`request_flush`). It is removed at a clean shutdown; a reader skips, and removes when it can,
the files of processes that are gone.

With `server.processes > 1` each worker writes its own file (no two processes ever write one
file), and names the process that forked it (`main_pid`): `server list` shows one server per
main process, and a flush request signals every worker, since each holds its own activity.

What this cannot see: servers on other hosts. Their runtime files are on their own machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from synthorg_tornado.clock import utcnow
from synthorg_tornado.config import Config

FILE_PREFIX = "synthorg-server-"
XDG_SUBDIR = "synthorg-tornado"
# What a server does on this signal: write every activity it holds, then say so in its file.
FLUSH_SIGNAL = signal.SIGUSR1
FLUSH_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class RuntimeInfo:
    """The content of one runtime file."""

    pid: int
    main_pid: int
    url: str
    started: str
    version: str
    database: str
    setup_url: str | None = None
    flushed_at: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuntimeInfo:
        return cls(
            pid=int(data["pid"]),
            main_pid=int(data.get("main_pid", data["pid"])),
            url=str(data["url"]),
            started=str(data["started"]),
            version=str(data.get("version", "")),
            database=str(data.get("database", "")),
            setup_url=data.get("setup_url"),
            flushed_at=data.get("flushed_at"),
        )


def runtime_dirs(config: Config, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders to look in; a server writes in the first."""
    environ = os.environ if environ is None else environ
    folders = []
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg:
        folders.append(Path(xdg) / XDG_SUBDIR)
    folders.append(config.secret_path.parent)
    return list(dict.fromkeys(folders))


class RuntimeFile:
    """The file this process owns. Writes replace it whole (a reader never sees half a file)."""

    def __init__(self, directory: Path, info: RuntimeInfo) -> None:
        self.path = directory / f"{FILE_PREFIX}{info.pid}.json"
        self.info = info

    def write(self, **changes: Any) -> None:
        """A few hundred bytes on a local disk; callers on the IOLoop run it in an executor."""
        self.info = replace(self.info, **changes)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(asdict(self.info), handle)
        os.replace(temporary, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def is_server_process(pid: int) -> bool:
    """Alive, and (where /proc tells) still one of ours: a reused pid is not signalled."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"synthorg" in command


@dataclass(frozen=True)
class Found:
    """What a scan of the runtime folders found: live servers, and files it could not read."""

    servers: list[RuntimeInfo]
    unreadable: list[Path]


def scan(config: Config, environ: Mapping[str, str] | None = None) -> Found:
    """The live serving processes of this machine, oldest first; stale files are removed."""
    servers: dict[int, RuntimeInfo] = {}
    unreadable = []
    for folder in runtime_dirs(config, environ):
        for path in sorted(folder.glob(f"{FILE_PREFIX}*.json")):
            try:
                info = RuntimeInfo.from_json(json.loads(path.read_text()))
            except PermissionError:
                unreadable.append(path)
                continue
            except (OSError, ValueError, KeyError, TypeError):
                continue  # removed meanwhile, or not ours
            if not is_server_process(info.pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            servers[info.pid] = info
    return Found(sorted(servers.values(), key=lambda s: (s.started, s.pid)), unreadable)


def _flushed_since(info: RuntimeInfo, asked: datetime) -> bool:
    if not info.flushed_at:
        return False
    return datetime.fromisoformat(info.flushed_at.replace("Z", "+00:00")) >= asked


def request_flush(
    config: Config, timeout: float = FLUSH_WAIT_SECONDS, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Ask this machine's servers of the same database to write what they hold in memory.

    Each is signalled (`FLUSH_SIGNAL`); it writes every session's activity, debounced or not,
    and then puts the time its flush began into its file. A flush that began after we asked
    covers every request answered before. We wait at most `timeout` seconds in all; the
    problems (a server that did not answer in time, one we may not signal) come back as lines
    to show, and the caller reads the database anyway.
    """
    found = scan(config, environ)
    servers = [s for s in found.servers if s.database == config.database.masked_url]
    problems = [f"cannot read {path}; run as the server's user" for path in found.unreadable]
    if not servers:
        return problems
    asked = utcnow()
    waiting = set()
    for info in servers:
        try:
            os.kill(info.pid, FLUSH_SIGNAL)
        except ProcessLookupError:
            continue
        except PermissionError:
            problems.append(f"may not signal server pid {info.pid}; its latest activity may be missing")
            continue
        waiting.add(info.pid)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        current = {s.pid: s for s in scan(config, environ).servers}
        for pid in list(waiting):
            info = current.get(pid)
            if info is None or _flushed_since(info, asked):
                waiting.discard(pid)
        if waiting:
            time.sleep(0.02)
    for pid in sorted(waiting):
        problems.append(
            f"server pid {pid} did not confirm a flush within {timeout:g} s; "
            "its last minute of activity may be missing"
        )
    return problems


def describe(servers: list[RuntimeInfo]) -> list[dict[str, Any]]:
    """One entry per server (a main process and its workers), for `server list`."""
    grouped: dict[int, list[RuntimeInfo]] = {}
    for info in servers:
        grouped.setdefault(info.main_pid, []).append(info)
    entries = []
    for main_pid, workers in grouped.items():
        first = min(workers, key=lambda s: s.started)
        setup_urls = [w.setup_url for w in workers if w.setup_url]
        entries.append(
            {
                "pid": main_pid,
                "url": first.url,
                "started": first.started,
                "version": first.version,
                "database": first.database,
                "processes": len(workers),
                "worker_pids": sorted(w.pid for w in workers),
                # Only while every worker still offers it: once one has seen a user, setup is done.
                "setup_url": setup_urls[0] if len(setup_urls) == len(workers) else None,
            }
        )
    return sorted(entries, key=lambda e: (e["started"], e["pid"]))
