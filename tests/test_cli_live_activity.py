"""`sessions list` on the command line shows the activity the API shows.

Activity is debounced in memory (written once a minute per session); the command asks the
servers of this machine to write it first (a signal, acknowledged in their runtime files).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.servers import Lab


def sessions_list(lab: Lab, username: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "synthorg_tornado", "sessions", "list", "--user", username, "--json"]
    return subprocess.run(
        [*command, "--config", str(lab.server.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )


def api_view(client, session_id: str) -> dict:  # type: ignore[no-untyped-def]
    reply = client.get("/api/v1/auth/sessions")
    assert reply.status == 200, reply
    return {entry["session_id"]: entry for entry in reply.json()}[session_id]


def test_sessions_list_shows_the_last_activity_the_api_shows(lab: Lab) -> None:
    user = lab.create_user()
    client, body = lab.login(user["username"])
    session = body["session"]
    assert client.get("/api/v1/me").status == 200
    seen = api_view(client, session["session_id"])
    # Within the first minute the debounce has written nothing past the creation time.
    assert seen["last_active_at"] != session["created_at"]
    result = sessions_list(lab, user["username"])
    assert result.returncode == 0, result.stderr
    assert seen["last_active_at"] in result.stdout, (seen, result.stdout)
    assert "warning" not in result.stderr


def test_a_server_that_does_not_answer_delays_the_listing_a_bounded_time(lab: Lab) -> None:
    user = lab.create_user()
    lab.login(user["username"])
    pid = lab.server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # The command's own wait is bounded; a command that waited forever would meet the
        # subprocess timeout of sessions_list() and fail here.
        result = sessions_list(lab, user["username"])
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    assert f"server pid {pid} did not confirm a flush" in result.stderr
    assert user["username"] in result.stdout
    # Once running again, the server answers the signal it got and keeps serving.
    assert lab.admin.get("/api/v1/health").status == 200
    assert json.loads(lab.admin.get("/api/v1/me").body)["username"] == "admin"
