"""The baseline for edge figures: a bare aiohttp app answering a fixed JSON body of a given size.

Run as ``python -m loadtests.baseline_server PORT BODY_BYTES``; GET and POST on any path.
"""

from __future__ import annotations

import json
import sys

from aiohttp import web


def make_app(size: int) -> web.Application:
    filler = max(0, size - len(json.dumps({"pad": ""})))
    body = json.dumps({"pad": "x" * filler}).encode()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


if __name__ == "__main__":
    web.run_app(make_app(int(sys.argv[2])), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
