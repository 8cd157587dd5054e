"""Every metrics label comes from a fixed set, whatever a client sends.

The `method` label was the raw request method, so each invented method (and each case variant of
a real one) added a series for the life of the process: 2,000 unauthenticated requests made a
1.2 MB scrape. Methods are now the ones the server implements plus `other`, routes are handler
classes (templates, never paths), and statuses are status codes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.client import Client
from tests.conftest import sqlite_lab
from tests.servers import Lab

INVENTED = 500
IMPLEMENTED = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Far above the handlers x methods x statuses a lab really serves, far below INVENTED.
SERIES_BUDGET = 120


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from sqlite_lab(tmp_path_factory, "labels")


def request_series(lab: Lab) -> list[dict[str, str]]:
    reply = lab.client().get("/metrics")
    assert reply.status == 200
    return [
        sample.labels
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
        if sample.name == "synthorg_http_requests_total"
    ]


def invented_method(number: int) -> str:
    # Case variants of real methods as well as made-up tokens.
    variants = ("gEt", "Post", "delete", "oPTIONS", "patch")
    return variants[number % len(variants)] if number % 3 == 0 else f"INVENTED{number}"


def test_invented_methods_and_paths_add_no_series(lab: Lab) -> None:
    before = request_series(lab)
    client = Client(lab.url)
    for number in range(INVENTED):
        paths = (f"/api/v1/invented-{number}", f"/invented/{number}/page", f"/static/missing-{number}.js")
        reply = client.request(invented_method(number), paths[number % len(paths)])
        assert reply.status in (400, 404, 405), reply
        assert client.get(paths[(number + 1) % len(paths)]).status in (302, 401, 404)
    after = request_series(lab)
    assert len(after) <= SERIES_BUDGET, f"{len(after)} series after {INVENTED} invented requests"
    assert len(after) - len(before) < 20
    methods = {labels["method"] for labels in after}
    assert methods <= IMPLEMENTED | {"other"}
    assert "other" in methods
    for labels in after:
        assert "invented" not in labels["route"].lower() and "/" not in labels["route"], labels
        assert labels["status"].isdigit() and 100 <= int(labels["status"]) <= 599, labels


def test_the_case_of_a_method_matters(lab: Lab) -> None:
    """`gEt` is not GET (method names are case-sensitive): it is counted as `other`."""
    lab.client().request("gEt", "/api/v1/health")
    methods = {labels["method"] for labels in request_series(lab)}
    assert "gEt" not in methods and "other" in methods
