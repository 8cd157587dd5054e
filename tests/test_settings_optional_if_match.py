"""With `settings.require_if_match: false`, a write without If-Match is accepted."""

from __future__ import annotations

from tests.servers import Lab

LAB_CONFIG = {"settings": {"require_if_match": False}}


def test_put_without_if_match_is_accepted_when_not_required(lab: Lab) -> None:
    reply = lab.admin.put("/api/v1/settings/ui/lab_name", {"value": "No Precondition Lab"})
    assert reply.status == 200 and reply.json()["value"] == "No Precondition Lab"
    # A stale If-Match is still refused: optional does not mean ignored.
    stale = lab.admin.put("/api/v1/settings/ui/lab_name", {"value": "x"}, headers={"If-Match": '"old"'})
    assert stale.status == 412
    reset = lab.admin.delete("/api/v1/settings/ui/lab_name")
    assert reset.status == 200 and reset.json()["source"] == "default"
