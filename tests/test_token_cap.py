"""API tokens per user are capped (409/4000 at the cap, even under a burst) and listed in pages."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from tests.servers import Lab

CAP = 5
LAB_CONFIG = {"auth": {"max_api_tokens_per_user": CAP}}


def test_creating_past_the_cap_is_409_until_a_token_is_revoked(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    created = [client.post("/api/v1/tokens", {"name": f"t{n}"}) for n in range(CAP)]
    assert [reply.status for reply in created] == [201] * CAP
    refused = client.post("/api/v1/tokens", {"name": "one too many"})
    assert refused.status == 409 and refused.code == 4000
    assert f"{CAP} API tokens" in refused.json()["detail"] and "revoke" in refused.json()["detail"]
    assert len(client.get("/api/v1/tokens").json()["items"]) == CAP
    # The cap is per user: someone else is not affected.
    other, _ = lab.login(lab.create_user()["username"])
    assert other.post("/api/v1/tokens", {"name": "mine"}).status == 201
    assert client.delete(f"/api/v1/tokens/{created[0].json()['id']}").status == 204
    assert client.post("/api/v1/tokens", {"name": "replacement"}).status == 201


def test_parallel_creates_at_cap_minus_one_let_exactly_one_through(lab: Lab) -> None:
    user = lab.create_user()
    client, body = lab.login(user["username"])
    for n in range(CAP - 1):
        assert client.post("/api/v1/tokens", {"name": f"t{n}"}).status == 201
    barrier = threading.Barrier(16)

    def create(index: int):  # type: ignore[no-untyped-def]
        mine = lab.client(token=body["token"])
        barrier.wait()
        return mine.post("/api/v1/tokens", {"name": f"burst{index}"})

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(create, range(16)))
    assert sorted(reply.status for reply in replies) == [201] + [409] * 15
    assert {reply.code for reply in replies if reply.status == 409} == {4000}
    assert len(client.get("/api/v1/tokens").json()["items"]) == CAP


def test_token_list_is_cursor_paged_newest_first(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    ids = [client.post("/api/v1/tokens", {"name": f"t{n}"}).json()["id"] for n in range(CAP)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = client.get(f"/api/v1/tokens{query}")
        assert page.status == 200
        pages += 1
        items = page.json()["items"]
        assert len(items) <= 2 and all("token" not in item for item in items)
        seen += [item["id"] for item in items]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))
    assert client.get("/api/v1/tokens").json() == {
        "items": client.get("/api/v1/tokens?limit=50").json()["items"],
        "next_cursor": None,
    }


def test_bad_paging_arguments_are_422(lab: Lab) -> None:
    user = lab.create_user()
    client, _ = lab.login(user["username"])
    for limit in ("0", "501", "x", "-1", "%C2%B2", "9" * 40):
        reply = client.get(f"/api/v1/tokens?limit={limit}")
        assert reply.status == 422 and reply.code == 2000, (limit, reply)
    for cursor in ("nope", "eDE", "=" * 8, "A" * 100, "dDk5OTk5OTk5OTk5OTk5OTk5OTk", "dC0x"):
        reply = client.get(f"/api/v1/tokens?cursor={cursor}")
        assert reply.status == 422 and reply.code == 2000, (cursor, reply)
    assert lab.client().get("/api/v1/health").status == 200
