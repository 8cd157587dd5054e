"""`/metrics` with `server.processes: 2`: one lab-wide view, whichever worker answers a scrape.

Each scrape and each request is its own connection, so the kernel hands them to either worker;
before multiprocess mode a counter read `6, absent, 1, 7, 2...` across such scrapes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Lab, PostgresCluster, http_request, throwaway_cluster, wait_for
from tests.test_workers import listening_workers, start_workers

SCRAPES = 20
REQUESTS_BETWEEN = 3


@pytest.fixture(scope="module")
def lab(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_workers(
        tmp_path_factory.mktemp("metrics-workers"),
        pg_cluster.create_database("metrics"),
        # Many failed logins from loopback: no per-IP limit; each uses its own name (no lockout).
        auth={"rate_limit_allowlist": ["127.0.0.0/8"]},
    )
    yield lab
    assert lab.server.terminate() == 0


def scrape(lab: Lab) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, keyed by name and labels."""
    reply = http_request(lab.url + "metrics")
    assert reply.status == 200
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def is_counter_sample(name: str) -> bool:
    return name.endswith(("_total", "_bucket", "_count", "_sum")) and not name.endswith("_created")


def test_counters_are_monotonic_and_count_what_both_workers_served(lab: Lab) -> None:
    scrapes = [scrape(lab)]
    # Everything finished before the first scrape, then each request and scrape the test makes.
    expected = total(scrapes[0], "synthorg_http_requests_total") + 1
    failures = total(scrapes[0], "synthorg_failed_logins_total")
    for attempt in range(SCRAPES - 1):
        for _ in range(REQUESTS_BETWEEN):
            assert http_request(lab.url + "api/v1/health").status == 200
        reply = http_request(
            lab.url + "api/v1/auth/login",
            method="POST",
            headers={"Content-Type": "application/json"},
            body=json.dumps({"username": f"nobody-{attempt}", "password": "wrong-password"}).encode(),
        )
        assert reply.status == 401
        expected += REQUESTS_BETWEEN + 1
        failures += 1
        scrapes.append(scrape(lab))
        # The last request may still be logging on the other worker as this scrape is answered.
        assert expected - 1 <= total(scrapes[-1], "synthorg_http_requests_total") <= expected
        expected += 1

    for before, after in itertools.pairwise(scrapes):
        for key, value in before.items():
            if is_counter_sample(key[0]):
                assert key in after, f"{key} vanished between scrapes"
                assert after[key] >= value, f"{key} went from {value} to {after[key]}"

    def counted_all() -> dict | None:
        samples = scrape(lab)
        return samples if total(samples, "synthorg_http_requests_total") >= expected else None

    final = wait_for(
        counted_all,
        5,
        "the request counter to count every request",
    )
    assert total(final, "synthorg_http_requests_total") == expected
    assert total(final, "synthorg_failed_logins_total") == failures
    health = [
        value
        for (name, labels), value in final.items()
        if name == "synthorg_http_request_duration_seconds_count" and ("route", "HealthHandler") in labels
    ]
    assert sum(health) >= (SCRAPES - 1) * REQUESTS_BETWEEN


def test_gauges_say_whether_they_are_per_process_or_lab_wide(lab: Lab) -> None:
    samples = scrape(lab)
    websockets = [labels for name, labels in samples if name == "synthorg_open_websockets"]
    live = {pid for pid, _ in listening_workers(lab.server).items()}
    pids = {int(dict(labels)["pid"]) for labels in websockets}
    assert pids and pids <= live
    # Lab-wide and from the database: the admin's session counts on whichever worker answers.
    sessions = [
        (labels, value) for (name, labels), value in samples.items() if name == "synthorg_active_sessions"
    ]
    assert len(sessions) == 1 and sessions[0][0] == ()
    before = sessions[0][1]
    assert before >= 1
    user = lab.create_user()
    lab.login(user["username"])
    for _ in range(6):
        assert scrape(lab)[("synthorg_active_sessions", ())] == before + 1


def test_the_metrics_directory_is_private_and_removed_with_the_main_process(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    lab = start_workers(tmp_path, pg_cluster.create_database("metrics_dir"))
    assert http_request(lab.url + "api/v1/health").status == 200
    # Each worker maps its own files of the shared directory into memory.
    mapped = {
        Path(line.split()[-1])
        for pid in listening_workers(lab.server)
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if "synthorg-metrics-" in line
    }
    assert mapped
    [directory] = {path.parent for path in mapped}
    assert directory.stat().st_mode & 0o777 == 0o700
    assert lab.server.terminate() == 0
    assert not directory.exists()


def test_a_scrape_during_a_database_outage_still_serves_the_counters(tmp_path: Path) -> None:
    with throwaway_cluster("synthorg-pg-metrics-") as cluster:
        lab = start_workers(tmp_path, cluster.create_database("metrics_outage"))
        try:
            assert ("synthorg_active_sessions", ()) in scrape(lab)
            cluster.stop(mode="fast")
            for _ in range(4):
                samples = scrape(lab)
                assert total(samples, "synthorg_http_requests_total") > 0
                assert ("synthorg_active_sessions", ()) not in samples
        finally:
            cluster.start_server()
            assert lab.server.terminate() == 0
