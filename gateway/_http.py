"""Serving an aiohttp application on a configured address, with clear bind errors."""

from __future__ import annotations

from aiohttp import web

from gateway.config import parse_address
from gateway.errors import ListenError


async def serve_app(app: web.Application, key: str, address: str) -> web.AppRunner:
    """Serve `app` on `address` (config key `key`); a bind failure is a `ListenError`."""
    host, port = parse_address(key, address)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as exc:
        await runner.cleanup()
        what = key.removesuffix(".address")
        raise ListenError(what, address, (exc.strerror or str(exc)).lower()) from None
    return runner
