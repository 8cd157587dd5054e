"""The last-admin invariant across two server processes on one PostgreSQL database: each admin
talks to a different process, so nothing either process holds in memory can order the two
changes; only the database can (issue 16, defect 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scale_out import TwoProcesses, two_processes
from tests.servers import PostgresCluster
from tests.test_last_admin import PAIRS, ROUNDS, Admin, enabled_admins, race


@pytest.fixture(scope="module")
def two(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoProcesses]:
    with two_processes(pg_cluster, tmp_path_factory.mktemp("two"), "last_admin") as lab2:
        yield lab2


@pytest.fixture(scope="module")
def admins(two: TwoProcesses) -> Iterator[list[Admin]]:
    """The lab's one enabled admin, replaced by the survivor of each round."""
    yield [Admin(two.a.admin, two.a.admin.get("/api/v1/me").json())]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_two_admins_on_two_processes_removing_each_other_leave_exactly_one(
    two: TwoProcesses, admins: list[Admin], first: str, second: str
) -> None:
    for round_number in range(ROUNDS):
        survivor = admins[0]
        # The new admin talks to whichever process the survivor does not.
        elsewhere = two.a.url if survivor.client.port == two.b.port else two.b.url
        label = f"{first[:3]}-{second[:3]}-{round_number}"
        admins[0] = race(two.a.url, survivor, first, second, label, on=elsewhere)
        assert enabled_admins(two.on_b(token=admins[0].client.token)) == [admins[0].user["username"]]
