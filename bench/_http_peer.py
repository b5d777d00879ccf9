"""A minimal HTTP destination for `python -m bench sinks`, run as its own process.

`python -m bench._http_peer PORT` serves 127.0.0.1:PORT: every POST is
answered 200 once its body is read, and the events in it are counted under
the request's path: the items of a JSON array (the `http` sink's default
body), the DATA entries of a Hinemos custom-trap body (one JSON object a
line), or one per line of NDJSON. ``GET /count/PATH`` answers that count as
JSON. Counting parses every body, a cost that stays in this process.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

_counts: Counter[str] = Counter()


def events_in(body: bytes) -> int:
    """How many events a POSTed body holds (see the module docstring)."""
    total = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        doc: Any = orjson.loads(line)
        if isinstance(doc, list):
            total += len(doc)
        elif isinstance(doc, dict) and isinstance(doc.get("DATA"), list):
            total += len(doc["DATA"])
        else:
            total += 1
    return total


async def _post(request: web.Request) -> web.Response:
    _counts[request.path] += events_in(await request.read())
    return web.Response()


async def _count(request: web.Request) -> web.Response:
    return web.json_response({"events": _counts["/" + request.match_info["tail"]]})


def main(port: int) -> None:
    """Serve until terminated."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/count/{tail:.*}", _count)
    app.router.add_post("/{tail:.*}", _post)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
