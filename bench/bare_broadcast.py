"""The ceiling for B3: bare Tornado broadcasting each posted message to every open WebSocket.

- `GET /ws` upgrades with no authentication, no channels and no bookkeeping beyond one set of
  sockets. Any client message is answered with `{"action":"subscribed"}`, so the B3 client runs
  the same script against this server and against ours.
- `POST /publish` takes the same body as our `POST /api/v1/events`, wraps its payload in an event
  of the same shape as ours (`event_type`, `channel`, `timestamp`, `payload`, `id`), serialises it
  once and writes it to every socket, then answers 202 `{"delivered": n}`. Same bytes on the
  wire as ours, so the difference between the two is what our hub, auth and limits cost.

What it does not do: queue limits, filters, presence, pings. It is a loop over `write_message`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from itertools import count

from tornado import web, websocket

SUBSCRIBED = json.dumps({"action": "subscribed", "channels": ["lab"], "denied": []})


class Broadcaster:
    def __init__(self) -> None:
        self.sockets: set[BroadcastSocket] = set()
        self.ids = count(1)


class BroadcastSocket(websocket.WebSocketHandler):
    def initialize(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster

    def open(self) -> None:
        self.broadcaster.sockets.add(self)

    def on_message(self, message: str | bytes) -> None:
        self.write_message(SUBSCRIBED)

    def on_close(self) -> None:
        self.broadcaster.sockets.discard(self)


class PublishHandler(web.RequestHandler):
    def initialize(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster

    def post(self) -> None:
        body = json.loads(self.request.body)
        event = {
            "event_type": body["event_type"],
            "channel": body["channel"],
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "payload": body.get("payload", {}),
            "id": next(self.broadcaster.ids),
        }
        text = json.dumps(event, separators=(",", ":"))
        delivered = 0
        for socket in list(self.broadcaster.sockets):
            try:
                socket.write_message(text)
            except websocket.WebSocketClosedError:
                continue
            delivered += 1
        self.set_status(202)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"delivered": delivered}))


async def serve(port: int) -> None:
    broadcaster = Broadcaster()
    app = web.Application(
        [
            ("/ws", BroadcastSocket, {"broadcaster": broadcaster}),
            ("/publish", PublishHandler, {"broadcaster": broadcaster}),
        ],
        log_function=lambda handler: None,
    )
    app.listen(port, address="127.0.0.1")
    print(f"listening on http://127.0.0.1:{port}/", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
