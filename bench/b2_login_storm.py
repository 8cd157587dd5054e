"""B2: latency of an authenticated GET while clients keep posting wrong passwords.

One probing client sends sequential authenticated GETs (synthorg `GET /api/v1/me`, jupyter_server
`GET /api/me`) and records each latency: first on an idle server, then while `--storm-clients`
keep-alive clients each post a wrong password as soon as their previous attempt is answered.

Both servers do real password hashing on every attempt:
- synthorg-tornado runs with bcrypt cost 12 and its per-IP rate limit and lockout raised out of
  reach (all clients are 127.0.0.1, so with the defaults it would answer 429 after ten failures
  and hash nothing); bcrypt runs in its thread pool, off the IOLoop.
- jupyter_server gets a real password through `PasswordIdentityProvider.hashed_password` (its own
  `passwd()`, argon2 by default), and the storm posts its login form with a valid `_xsrf` token, so
  each attempt reaches the argon2 check, which runs on its IOLoop.

Server and clients are not pinned to CPUs here: a deployment lets the hashing threads use every
core, and pinning them onto the IOLoop's core would measure the scheduler rather than the design.
"""

from __future__ import annotations

import json
import os
import time
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from bench.clients import LoadProcess, cpu_seconds, cpus_busy_seconds
from bench.report import table, verdict
from bench.servers import ADMIN_PASSWORD, ADMIN_USERNAME, Servers, Target
from bench.wire import fetch

GOAL_STORM_OVER_IDLE = 3.0
WRONG_PASSWORD = "wrong-password-for-bench"
JUPYTER_PASSWORD = "bench-jupyter-password-1"
SYNTHORG_STORM_AUTH = {
    "bcrypt_rounds": 12,
    "login_rate_limit_per_minute": 1_000_000,
    "lockout_threshold": 1_000_000,
}
PROBE_WARMUP = 0.5
STORM_MARGIN = 2.0  # the storm outlasts the probe by this much


def synthorg_login(target: Target, password: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": target.base_url + "api/v1/auth/login",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"username": ADMIN_USERNAME, "password": password}),
    }


def jupyter_login(target: Target, password: str) -> dict[str, Any]:
    """The login form as a browser posts it: `_xsrf` cookie from GET /login, echoed in the form."""
    page = fetch(target.base_url + "login")
    cookies = SimpleCookie()
    for header in page.headers.get_all("Set-Cookie") or []:
        cookies.load(header)
    if "_xsrf" not in cookies:
        raise RuntimeError(f"jupyter_server GET /login set no _xsrf cookie (status {page.status})")
    xsrf = cookies["_xsrf"].value
    return {
        "method": "POST",
        "url": target.base_url + "login",
        "headers": {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"_xsrf={xsrf}"},
        "body": urlencode({"_xsrf": xsrf, "password": password}),
    }


def timed_attempt(request: dict[str, Any]) -> tuple[int, float]:
    started = time.perf_counter()
    reply = fetch(request["url"], request["method"], request["headers"], request["body"].encode())
    return reply.status, 1000 * (time.perf_counter() - started)


def check_hashing(name: str, good: dict[str, Any], bad: dict[str, Any], accepted: int) -> float:
    """One right and one wrong password through the real endpoint: the storm must cost a hash."""
    good_status, _ = timed_attempt(good)
    bad_status, bad_ms = timed_attempt(bad)
    if good_status != accepted or bad_status != 401:
        raise RuntimeError(f"{name}: right password gave {good_status}, wrong gave {bad_status}")
    return bad_ms


def probe(target: Target, duration: float) -> dict[str, Any]:
    """The probe's latencies, and how busy the server and the whole machine were meanwhile."""
    everything = set(range(os.cpu_count() or 1))
    started, server_before = time.monotonic(), cpu_seconds(target.process.pid)
    machine_before = cpus_busy_seconds(everything)
    result = LoadProcess(
        {
            "mode": "probe",
            "url": target.get_url,
            "headers": target.get_headers,
            "warmup": PROBE_WARMUP,
            "duration": duration,
        },
        None,
    ).result()
    elapsed = time.monotonic() - started
    result["server_cpu_percent"] = 100 * (cpu_seconds(target.process.pid) - server_before) / elapsed
    result["machine_busy_percent"] = 100 * (cpus_busy_seconds(everything) - machine_before) / elapsed
    return result


def under_storm(target: Target, storm_request: dict[str, Any], options: Any) -> tuple[dict, dict, dict]:
    idle = probe(target, options.storm_duration)
    host, port = target.host_port
    storm = LoadProcess(
        {
            "mode": "load",
            "host": host,
            "port": port,
            "connections": options.storm_clients,
            "warmup": options.warmup,
            "duration": PROBE_WARMUP + options.storm_duration + STORM_MARGIN,
            **storm_request,
        },
        None,
    )
    storm.wait_ready()
    stormy = probe(target, options.storm_duration)
    return idle, stormy, storm.result()


def run(options: Any) -> dict[str, Any]:
    print(
        f"\nB2 login storm: one sequential probe, {options.storm_duration:g} s idle, then "
        f"{options.storm_duration:g} s while {options.storm_clients} clients post wrong passwords "
        f"(after {options.warmup:g} s of storm warm-up);"
        f"\n   synthorg-tornado with auth {SYNTHORG_STORM_AUTH} so every attempt runs bcrypt;"
        f" jupyter_server with an argon2 hashed_password; nothing pinned to CPUs",
        flush=True,
    )
    results: dict[str, Any] = {"synthorg_auth": SYNTHORG_STORM_AUTH, "storm_clients": options.storm_clients}
    with Servers(pin=False) as servers:
        for start, login, accepted in (
            (lambda: servers.synthorg(SYNTHORG_STORM_AUTH), synthorg_login, 200),
            (lambda: servers.jupyter(JUPYTER_PASSWORD), jupyter_login, 302),
        ):
            target = start()
            right = ADMIN_PASSWORD if accepted == 200 else JUPYTER_PASSWORD
            hash_ms = check_hashing(
                target.name, login(target, right), login(target, WRONG_PASSWORD), accepted
            )
            idle, stormy, storm = under_storm(target, login(target, WRONG_PASSWORD), options)
            servers.stop(target)
            results[target.name] = {
                "one_wrong_login_ms": hash_ms,
                "idle": idle,
                "storm": stormy,
                "storm_load": storm,
                "p99_ratio": stormy["p99_ms"] / idle["p99_ms"],
            }
            print(
                f"  {target.name:<17} one wrong login {hash_ms:6.1f} ms; "
                f"storm: {storm['rps']:.1f} attempts/s, "
                f"statuses {storm['statuses']}" + (f", errors {storm['errors']}" if storm["errors"] else ""),
                flush=True,
            )
            print(
                f"  {'':<17} CPU in use (100% = one core): idle phase server "
                f"{idle['server_cpu_percent']:.0f}%, machine {idle['machine_busy_percent']:.0f}%; "
                f"storm phase server {stormy['server_cpu_percent']:.0f}%, "
                f"machine {stormy['machine_busy_percent']:.0f}%"
            )
            if set(storm["statuses"]) != {"401"}:
                print(f"  WARNING: not every storm attempt was a hashed 401: {storm['statuses']}")
    rows = []
    for name in ("synthorg-tornado", "jupyter_server"):
        entry = results[name]
        rows.append(
            [
                name,
                entry["idle"]["p50_ms"],
                entry["idle"]["p99_ms"],
                entry["storm"]["p50_ms"],
                entry["storm"]["p99_ms"],
                entry["storm"]["max_ms"],
                entry["storm"]["requests"],
                f"{entry['p99_ratio']:.1f}x",
            ]
        )
    print()
    print(
        table(
            [
                "target",
                "idle p50 ms",
                "idle p99 ms",
                "storm p50 ms",
                "storm p99 ms",
                "storm max ms",
                "storm probes",
                "storm/idle p99",
            ],
            rows,
        )
    )
    ours = results["synthorg-tornado"]["p99_ratio"]
    print(f"\nsynthorg storm p99 / idle p99 = {ours:.1f}  {verdict(ours, GOAL_STORM_OVER_IDLE, False)}")
    theirs = results["jupyter_server"]["p99_ratio"]
    print(f"jupyter_server storm p99 / idle p99 = {theirs:.1f}  (for comparison)")
    return results
