"""The baseline for edge figures: a bare aiohttp app answering a fixed response.

``python -m loadtests.baseline_server PORT BODY_BYTES``: a JSON body of that size on GET and POST, any path.

``python -m loadtests.baseline_server PORT --replay FILE``: FILE (JSON) holds ``{"GET": answer, "POST":
answer}``, each ``{"status": int, "headers": [[name, value], ...], "body": str}`` — a response the edge
gave, replayed byte for byte on that method and any path (aiohttp adds ``Date``, ``Server`` and
``Content-Length`` itself, as for the edge). The edge figures use it, so the bare handler sends the same
JSON with the same headers (``Cache-Control: no-store``, the Content-Security-Policy, a join's
``Set-Cookie``) and none of the work of making them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

# What aiohttp writes for every response itself: a replayed answer leaves them out.
SERVER_MADE = frozenset({"date", "server", "content-length"})


def make_app(size: int) -> web.Application:
    filler = max(0, size - len(json.dumps({"pad": ""})))
    body = json.dumps({"pad": "x" * filler}).encode()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def replay_app(answers: dict[str, dict[str, Any]]) -> web.Application:
    made = {
        method: (
            int(a["status"]),
            [(k, v) for k, v in a["headers"] if k.lower() not in SERVER_MADE],
            a["body"].encode(),
        )
        for method, a in answers.items()
    }

    async def handle(request: web.Request) -> web.Response:
        status, headers, body = made.get(request.method, made["GET"])
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


if __name__ == "__main__":
    port = int(sys.argv[1])
    if sys.argv[2] == "--replay":
        app = replay_app(json.loads(Path(sys.argv[3]).read_text()))
    else:
        app = make_app(int(sys.argv[2]))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
