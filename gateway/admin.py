"""Admin HTTP API: `/health`, `/metrics` (Prometheus text), `/status` (JSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.config import parse_address
from gateway.errors import ListenError

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


class AdminServer:
    """Serves the node's health, metrics and status on the admin address."""

    def __init__(
        self,
        address: str,
        metrics: Callable[[], bytes],
        status: Callable[[], dict[str, Any]],
        healthy: Callable[[], bool],
    ) -> None:
        self.address = address
        self._metrics = metrics
        self._status = status
        self._healthy = healthy
        self._runner: web.AppRunner | None = None

    async def _health(self, request: web.Request) -> web.Response:
        ok = self._healthy()
        return web.json_response({"status": "ok" if ok else "failing"}, status=200 if ok else 503)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics(), headers={"Content-Type": CONTENT_TYPE_PROMETHEUS})

    async def _status_page(self, request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def start(self) -> str:
        """Bind and serve; return where it listens."""
        host, port = parse_address("admin.address", self.address)
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/status", self._status_page)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            raise ListenError("admin.address", self.address, (exc.strerror or str(exc)).lower()) from None
        self._runner = runner
        return f"admin http://{self.address} (/health /metrics /status)"

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
