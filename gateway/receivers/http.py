"""HTTP receiver: JSON bodies POSTed on any path (Hinemos custom traps).

The request is answered once its valid entries are forwarded (or found to be
duplicates): 200 when every entry was valid, 400 naming each bad entry and
why when some were not (the valid ones are kept all the same), 413 past the
body limit, 503 when the node sheds the request under overload.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from formats import Event, FormatError, Peer
from gateway._http import serve_app
from gateway.config import ReceiverConfig
from gateway.pipeline import Batch, Intake

log = logging.getLogger(__name__)


class HttpReceiver:
    """POSTed bodies parsed with the receiver's format into an intake."""

    def __init__(self, config: ReceiverConfig, intake: Intake) -> None:
        self.config = config
        self.intake = intake
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        intake = self.intake
        length = request.content_length
        if length is not None and length > self.config.max_body:
            intake.counters.dropped["too_large"] += 1
            return _too_large(self.config.max_body)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            intake.counters.dropped["too_large"] += 1
            return _too_large(self.config.max_body)
        transport = request.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        host, port = (peername or ("", 0))[:2]
        peer: Peer = (host, port)
        results = _parse(intake, body, peer)
        events = [r for r in results if isinstance(r, Event)]
        bad = [r for r in results if isinstance(r, FormatError)]
        for error in bad:
            intake.reject(peer, error, body)
        accepted = 0
        if events:
            intake.counters.received += len(events)
            done = asyncio.get_running_loop().create_future()
            if not intake.pipeline.submit(Batch(intake, events=events, done=done)):
                return web.json_response({"error": "overloaded, try again"}, status=503)
            await done
            accepted = len(events)
        rejected = [
            {"entry": getattr(e, "entry", "body"), "reason": e.reason, "error": str(e)} for e in bad
        ]
        status = 400 if bad else 200
        return web.json_response({"accepted": accepted, "rejected": rejected}, status=status)

    async def start(self) -> str:
        """Bind and serve; return where it listens."""
        app = web.Application(client_max_size=self.config.max_body)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = await serve_app(app, f"receivers.{self.intake.name}.address", self.config.address)
        return f"{self.intake.parser.name} http://{self.config.address} (receiver {self.intake.name})"

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()


def _parse(intake: Intake, body: bytes, peer: Peer) -> list[Event | FormatError]:
    parser = intake.parser
    received_at = time.time()
    try:
        parse_many = getattr(parser, "parse_many", None)
        if parse_many is not None:
            results: list[Event | FormatError] = parse_many(body, peer, received_at)
            return results
        return [parser.parse(body, peer, received_at)]
    except FormatError as exc:
        return [exc]
    except Exception as exc:  # a parser bug must not fail the request
        log.exception("parser %s failed on a body from %s", parser.name, peer)
        return [FormatError(repr(exc), "parser_bug")]


def _too_large(limit: int) -> web.Response:
    return web.json_response({"error": f"body larger than {limit} bytes"}, status=413)
