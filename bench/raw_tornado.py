"""The ceiling for B1: bare Tornado answering one small JSON body, with nothing else on the path.

The body has the same shape and size as `GET /api/v1/me`, so the difference between the two is
what our authentication, headers and bookkeeping cost, not bytes on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from tornado import web

BODY = json.dumps(
    {
        "id": "1",
        "username": "admin",
        "display_name": "admin",
        "role": "admin",
        "session_id": "x" * 43,
        "auth": "session",
    },
    separators=(",", ":"),
)
PATH = "/api/me"


class MeHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(BODY)


async def serve(port: int) -> None:
    app = web.Application([(PATH, MeHandler)], log_function=lambda handler: None)
    app.listen(port, address="127.0.0.1")
    print(f"listening on http://127.0.0.1:{port}/", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
