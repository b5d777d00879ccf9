"""Admin HTTP API: `/health`, `/metrics` (Prometheus text), `/status` (JSON),
and, on a node of an HA pair, `POST /role` (bearer token) to set its role.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway._http import serve_app
from gateway.errors import GatewayError

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


class AdminServer:
    """Serves the node's health, metrics and status on the admin address."""

    def __init__(
        self,
        address: str,
        metrics: Callable[[], bytes],
        status: Callable[[], dict[str, Any]],
        healthy: Callable[[], bool],
        set_role: Callable[[str, float | None], Awaitable[dict[str, Any]]] | None = None,
        token: str = "",
    ) -> None:
        self.address = address
        self._metrics = metrics
        self._status = status
        self._healthy = healthy
        self._set_role = set_role
        self._token = token
        self._runner: web.AppRunner | None = None

    async def _role(self, request: web.Request) -> web.Response:
        if self._set_role is None:
            return web.json_response({"error": "this node is not part of an HA pair"}, status=404)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not self._token or not hmac.compare_digest(given.encode(), self._token.encode()):
            return web.json_response({"error": "missing or wrong token"}, status=401)
        try:
            body = await request.json()
            role = body["role"]
            lease = body.get("lease")
            if role not in ("master", "standby") or not (lease is None or isinstance(lease, int | float)):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"error": 'body must be {"role": "master"|"standby", "lease": seconds or null}'}, status=400
            )
        try:
            return web.json_response(await self._set_role(role, lease))
        except GatewayError as exc:  # a switch that cannot be made now: one line, no traceback
            return web.json_response({"error": str(exc)}, status=409)

    async def _health(self, request: web.Request) -> web.Response:
        ok = self._healthy()
        return web.json_response({"status": "ok" if ok else "failing"}, status=200 if ok else 503)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics(), headers={"Content-Type": CONTENT_TYPE_PROMETHEUS})

    async def _status_page(self, request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def start(self) -> str:
        """Bind and serve; return where it listens."""
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/status", self._status_page)
        app.router.add_post("/role", self._role)
        self._runner = await serve_app(app, "admin.address", self.address)
        return f"admin http://{self.address} (/health /metrics /status)"

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
