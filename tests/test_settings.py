"""Settings over HTTP: ETags, If-Match, atomic compare-and-swap, precedence, masking."""

from __future__ import annotations

import threading

from tests.client import Client
from tests.servers import Lab

LAB_CONFIG = {
    "auth": {"session_ttl_minutes": 600},
    "settings": {"values": {"ui.lab_name": "Config Lab", "ui.banner": "from config"}},
}
LAB_ENV = {"SYNTHORG_SETTING_UI_BANNER": "from environment"}
SECRET = "hook-secret-value-123"


def setting(client: Client, name: str):  # type: ignore[no-untyped-def]
    namespace, key = name.split(".")
    return client.get(f"/api/v1/settings/{namespace}/{key}")


def put(client: Client, name: str, value, etag: str | None = None, **kwargs):  # type: ignore[no-untyped-def]
    namespace, key = name.split(".")
    headers = {"If-Match": etag} if etag is not None else {}
    return client.put(f"/api/v1/settings/{namespace}/{key}", {"value": value}, headers=headers, **kwargs)


def test_get_has_a_strong_etag_that_is_stable_until_a_write(lab: Lab) -> None:
    first = setting(lab.admin, "ui.lab_name")
    assert first.status == 200
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.json()["etag"] == etag
    assert setting(lab.admin, "ui.lab_name").headers["ETag"] == etag
    written = put(lab.admin, "ui.lab_name", "Same Lab", etag)
    assert written.status == 200
    new_etag = written.headers["ETag"]
    assert new_etag != etag and setting(lab.admin, "ui.lab_name").headers["ETag"] == new_etag
    # Writing the same value again is still a write: the ETag changes.
    again = put(lab.admin, "ui.lab_name", "Same Lab", new_etag)
    assert again.status == 200 and again.headers["ETag"] != new_etag
    assert again.json()["version"] == written.json()["version"] + 1


def test_if_match_rules(lab: Lab) -> None:
    current = setting(lab.admin, "ui.banner").headers["ETag"]
    stale_reply = put(lab.admin, "ui.banner", "one", current)
    stale, fresh = current, stale_reply.headers["ETag"]
    conflict = put(lab.admin, "ui.banner", "two", stale)
    assert conflict.status == 412 and conflict.code == 4002
    assert conflict.json()["current"]["value"] == "one" and conflict.json()["current"]["etag"] == fresh
    assert setting(lab.admin, "ui.banner").json()["value"] == "one"
    assert put(lab.admin, "ui.banner", "star", "*").status == 200
    fresh = setting(lab.admin, "ui.banner").headers["ETag"]
    listed = put(lab.admin, "ui.banner", "listed", f'"nope", {fresh}, "other"')
    assert listed.status == 200
    fresh = listed.headers["ETag"]
    weak = put(lab.admin, "ui.banner", "weak", f"W/{fresh}")
    assert weak.status == 412 and weak.code == 4002
    missing = put(lab.admin, "ui.banner", "none")
    assert missing.status == 428 and missing.code == 4003
    assert setting(lab.admin, "ui.banner").json()["value"] == "listed"


def test_lost_update_is_prevented(lab: Lab) -> None:
    manager = lab.login(lab.create_user("manager")["username"])[0]
    etag = setting(lab.admin, "budget.monthly_limit").headers["ETag"]
    assert setting(manager, "budget.monthly_limit").headers["ETag"] == etag
    assert put(lab.admin, "budget.monthly_limit", 100.5, etag).status == 200
    second = put(manager, "budget.monthly_limit", 999, etag)
    assert second.status == 412 and second.json()["current"]["value"] == 100.5


def test_roles_unknown_settings_and_invalid_values(lab: Lab) -> None:
    for role in ("observer", "member"):
        client = lab.login(lab.create_user(role)["username"])[0]
        assert setting(client, "ui.lab_name").status == 200  # everyone reads
        denied = put(client, "ui.lab_name", "Mine", "*")
        assert denied.status == 403 and denied.code == 1001
    unknown = put(lab.admin, "ui.nope", "x", "*")
    assert unknown.status == 404 and unknown.code == 3000
    assert setting(lab.admin, "nothing.here").status == 404
    read_only = put(lab.admin, "server.port", 1, "*")
    assert read_only.status == 403 and "config.yaml" in read_only.json()["detail"]
    before = setting(lab.admin, "auth.max_sessions_per_user")
    etag = before.headers["ETag"]
    for value, reason in (
        ("12", "whole number"),
        (12.5, "whole number"),
        (True, "whole number"),
        (0, "at least 1"),
    ):
        reply = put(lab.admin, "auth.max_sessions_per_user", value, etag)
        assert reply.status == 422 and reply.code == 2000 and reason in reply.json()["detail"], (value, reply)
    assert setting(lab.admin, "auth.max_sessions_per_user").headers["ETag"] == etag  # nothing written
    # A bad value with a stale ETag: the precondition is checked first.
    assert put(lab.admin, "auth.max_sessions_per_user", "bad", '"stale"').status == 412
    budget = put(lab.admin, "budget.monthly_limit", -1, "*")
    assert budget.status == 422 and "at least 0" in budget.json()["detail"]


def test_sensitive_values_never_appear(lab: Lab) -> None:
    reply = put(lab.admin, "notifications.webhook_secret", SECRET, "*")
    assert reply.status == 200 and reply.json()["value"] == "********" and reply.json()["sensitive"] is True
    assert setting(lab.admin, "notifications.webhook_secret").json()["value"] == "********"
    everything = lab.admin.get("/api/v1/settings")
    assert SECRET not in everything.body.decode()
    audit = lab.admin.get("/api/v1/audit?action=setting.update&limit=100")
    assert SECRET not in audit.body.decode()
    assert SECRET not in lab.server.log()
    # Managers may not even write it.
    manager = lab.login(lab.create_user("manager")["username"])[0]
    assert put(manager, "notifications.webhook_secret", "x", "*").status == 403


def test_precedence_database_environment_config_default(lab: Lab) -> None:
    entries = {f"{e['namespace']}.{e['key']}": e for e in lab.admin.get("/api/v1/settings").json()}
    assert entries["ui.banner"]["source"] in ("environment", "database")
    ttl = entries["auth.session_ttl_minutes"]
    assert (ttl["value"], ttl["source"]) == (600, "config")
    assert entries["auth.login_rate_limit_per_minute"]["source"] == "default"
    assert entries["server.port"]["restart_required"] is True
    # A database write beats the environment; DELETE goes back to it, keeping the version moving.
    current = setting(lab.admin, "ui.banner")
    written = put(lab.admin, "ui.banner", "from database", current.headers["ETag"])
    assert (written.json()["value"], written.json()["source"]) == ("from database", "database")
    reset = lab.admin.delete("/api/v1/settings/ui/banner", headers={"If-Match": written.headers["ETag"]})
    assert reset.status == 200
    assert (reset.json()["value"], reset.json()["source"]) == ("from environment", "environment")
    assert reset.json()["version"] == written.json()["version"] + 1
    assert reset.headers["ETag"] != written.headers["ETag"]
    # Reset of a config-sourced setting goes to the config value.
    name = setting(lab.admin, "ui.lab_name")
    changed = put(lab.admin, "ui.lab_name", "Database Lab", name.headers["ETag"])
    back = lab.admin.delete("/api/v1/settings/ui/lab_name", headers={"If-Match": changed.headers["ETag"]})
    assert (back.json()["value"], back.json()["source"]) == ("Config Lab", "config")
    stale = lab.admin.delete("/api/v1/settings/ui/lab_name", headers={"If-Match": changed.headers["ETag"]})
    assert stale.status == 412
    assert lab.admin.delete("/api/v1/settings/ui/lab_name").status == 428


def test_list_etag_and_if_none_match(lab: Lab) -> None:
    listing = lab.admin.get("/api/v1/settings")
    etag = listing.headers["ETag"]
    assert lab.admin.get("/api/v1/settings", headers={"If-None-Match": etag}).status == 304
    single = setting(lab.admin, "ui.lab_name")
    assert (
        lab.admin.get(
            "/api/v1/settings/ui/lab_name", headers={"If-None-Match": single.headers["ETag"]}
        ).status
        == 304
    )
    put(lab.admin, "ui.lab_name", "Changed Again", single.headers["ETag"])
    assert lab.admin.get("/api/v1/settings", headers={"If-None-Match": etag}).status == 200


def test_runtime_setting_takes_effect_without_restart(lab: Lab) -> None:
    current = setting(lab.admin, "auth.login_rate_limit_per_minute")
    assert put(lab.admin, "auth.login_rate_limit_per_minute", 2, current.headers["ETag"]).status == 200
    anonymous = lab.client()
    statuses = [
        anonymous.post("/api/v1/auth/login", {"username": f"ghost{n}", "password": "wrong-pass"}).status
        for n in range(3)
    ]
    assert statuses == [401, 401, 429]
    lab.admin.delete("/api/v1/settings/auth/login_rate_limit_per_minute", headers={"If-Match": "*"})


def test_sixteen_concurrent_writers_lose_no_update(lab: Lab) -> None:
    writers, rounds = 16, 100
    name = "websocket.max_subscriptions"
    start = setting(lab.admin, name).json()["value"]
    clients = [lab.client(token=lab.admin.token, keep_alive=True) for _ in range(writers)]
    failures: list[BaseException] = []

    def work(client: Client) -> None:
        try:
            entry = setting(client, name).json()
            for _ in range(rounds):
                while True:
                    reply = put(client, name, entry["value"] + 1, entry["etag"])
                    if reply.status == 200:
                        entry = reply.json()
                        break
                    assert reply.status == 412, reply
                    entry = reply.json()["current"]  # retry from what is stored now
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures[0]
    assert setting(lab.admin, name).json()["value"] == start + writers * rounds


def test_successful_and_rejected_writes_are_audited(lab: Lab) -> None:
    current = setting(lab.admin, "ui.lab_name").headers["ETag"]
    assert put(lab.admin, "ui.lab_name", "Audited Lab", current).status == 200
    assert put(lab.admin, "ui.lab_name", "stale", current).status == 412
    assert put(lab.admin, "ui.lab_name", "missing").status == 428
    assert put(lab.admin, "ui.lab_name", 42, "*").status == 422
    entries = lab.admin.get("/api/v1/audit?action=setting.update&limit=500").json()["items"]
    outcomes = {e["outcome"] for e in entries if e["target"] == "ui.lab_name"}
    assert {"success", "conflict", "precondition_required", "invalid"} <= outcomes


def test_entries_say_their_bounds_and_who_may_write_them(lab: Lab) -> None:
    listed = {f"{e['namespace']}.{e['key']}": e for e in lab.admin.get("/api/v1/settings").json()}
    ttl = listed["auth.session_ttl_minutes"]
    assert (
        ttl["constraints"]["minimum"] >= 1 and ttl["constraints"]["maximum"] > ttl["constraints"]["minimum"]
    )
    assert "admin" in ttl["write_roles"]
    banner = listed["ui.banner"]
    assert set(banner["constraints"]) <= {"max_length"}
    assert listed["server.port"]["write_roles"] == []
    choice = [e for e in listed.values() if e["constraints"].get("choices")]
    for entry in choice:
        assert entry["value"] in entry["constraints"]["choices"] or entry["sensitive"]
