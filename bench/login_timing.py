"""Login timing after a bcrypt cost change: does a wrong password tell known users apart?

One lab on SQLite: a user is created at `--old-rounds`, then the server restarts at
`--new-rounds`. Wrong-password logins are timed for that user and for a name that does not
exist (checked against the dummy hash), before and after the user's one successful login (which
re-hashes the password at the new cost). The very first unknown-user login is reported on its
own: the dummy hash is built at start-up, so it should cost no more than the later ones.

    python -m bench.login_timing [--old-rounds 10] [--new-rounds 12] [--samples 15]

Figures are medians in milliseconds, measured one request at a time on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.servers import ADMIN_PASSWORD, ADMIN_USERNAME, LISTENING_LINE, SETUP_LINE, free_port
from bench.wire import fetch, wait_until_answering

USER_PASSWORD = "timing-user-password-1"
JSON = {"Content-Type": "application/json"}


def start(folder: Path, database: Path, rounds: int) -> tuple[subprocess.Popen, Path, str]:
    config = {
        "server": {"host": "127.0.0.1", "port": free_port()},
        "database": {"url": f"sqlite+aiosqlite:///{database}"},
        "auth": {
            "bcrypt_rounds": rounds,
            "login_rate_limit_per_minute": 1_000_000,
            "lockout_threshold": 1_000_000,
        },
        "logging": {"access_log": False, "level": "INFO", "format": "text"},
    }
    config_path = folder / f"config-{rounds}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = folder / f"server-{rounds}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "synthorg_tornado", "serve", "--config", str(config_path)],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    deadline = time.monotonic() + 60
    while not LISTENING_LINE.search(log_path.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log_path.read_text())
        time.sleep(0.05)
    base_url = LISTENING_LINE.search(log_path.read_text()).group(1)  # type: ignore[union-attr]
    wait_until_answering(base_url + "api/v1/health", 30, process)
    return process, log_path, base_url


def login_ms(base_url: str, username: str, password: str) -> tuple[float, int]:
    body = json.dumps({"username": username, "password": password}).encode()
    began = time.perf_counter()
    reply = fetch(base_url + "api/v1/auth/login", "POST", JSON, body)
    return (time.perf_counter() - began) * 1000, reply.status


def median_ms(base_url: str, username: str, samples: int) -> float:
    return statistics.median(login_ms(base_url, username, "a-wrong-password")[0] for _ in range(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-rounds", type=int, default=10)
    parser.add_argument("--new-rounds", type=int, default=12)
    parser.add_argument("--samples", type=int, default=15)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthorg-timing-") as root:
        folder, database = Path(root), Path(root) / "lab.db"
        process, log_path, base_url = start(folder, database, options.old_rounds)
        try:
            token = SETUP_LINE.search(log_path.read_text()).group(2)  # type: ignore[union-attr]
            setup = {"token": token, "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
            admin = fetch(base_url + "api/v1/auth/setup", "POST", JSON, json.dumps(setup).encode()).json()
            headers = {**JSON, "Authorization": f"Bearer {admin['token']}"}
            user = {"username": "known", "password": USER_PASSWORD, "role": "member"}
            fetch(base_url + "api/v1/users", "POST", headers, json.dumps(user).encode())
        finally:
            process.terminate()
            process.wait(15)
        process, _, base_url = start(folder, database, options.new_rounds)
        try:
            first_unknown, _ = login_ms(base_url, "nobody-first", "a-wrong-password")
            unknown = median_ms(base_url, "nobody", options.samples)
            known_before = median_ms(base_url, "known", options.samples)
            _, status = login_ms(base_url, "known", USER_PASSWORD)
            assert status == 200, status
            known_after = median_ms(base_url, "known", options.samples)
        finally:
            process.terminate()
            process.wait(15)
    print(f"cost {options.old_rounds} -> {options.new_rounds}, {options.samples} samples, median ms")
    print(f"  first unknown-user login         {first_unknown:7.1f}")
    print(f"  unknown user                     {unknown:7.1f}")
    print(f"  known user, old hash             {known_before:7.1f}")
    ratio = known_after / unknown
    print(f"  known user, after one login      {known_after:7.1f}  (ratio to unknown {ratio:.2f})")


if __name__ == "__main__":
    main()
