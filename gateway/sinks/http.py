"""The `http` sink: JSON batches POSTed to a URL.

Strategy: a batch becomes one or more requests, built before the first is
sent and sent one after the other, so the destination sees the events in
order. `body` says how the events are put in a body: `array` (one JSON array
of the event objects) or `ndjson` (their JSON lines). `idempotency` says what
the `Idempotency-Key` header carries: `batch` (one request per batch, the key a
hash of its event ids, so a retried batch has the same key), `event` (one
request per event, the key its id) or `none` (one request per batch, no key).

A 2xx status acknowledges a request. A connection error, a close without a
response, a timeout, a 5xx or 408, 425, 429 fails the send (`SinkError`: the
forwarder retries the batch with backoff). 401, 403 and 404 are retried too:
they say the destination is not ready or not set up for us yet, and would
otherwise drop every event until an operator fixes it. Any other 4xx means
the request itself can never be taken: its events are counted in
`dropped{reason="rejected"}`, logged (one line per interval) and not retried,
the one exception to "retry until the destination takes it". Redirects are
not followed (a 3xx fails the send: fix the URL).

`HttpClient` does the requests and remembers, per batch, how many of its
requests were acknowledged: a batch sent again after a failure resumes at the
first request not acknowledged, so the requests before it are not sent twice.
The `hinemos` sink uses it too.
"""

from __future__ import annotations

import logging
import ssl
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import aiohttp
import xxhash
import yarl

from gateway._ratelog import RateLimited
from gateway.errors import ConfigError, SinkError
from gateway.metrics import Counters, Latency
from gateway.sinks import SinkType

if TYPE_CHECKING:
    from gateway.config import SinkConfig
    from gateway.sinks import Outgoing

log = logging.getLogger(__name__)

BODIES = ("array", "ndjson")
IDEMPOTENCY = ("batch", "event", "none")
RETRIED_4XX = frozenset({401, 403, 404, 408, 425, 429})
"""4xx statuses that fail the send (retried) rather than reject the request."""

_CONTENT_TYPES = {"array": "application/json", "ndjson": "application/x-ndjson"}
_PROGRESS_KEPT = 64  # batches whose partial progress is remembered


@dataclass(frozen=True)
class HttpOptions:
    """The keys of an `http` sink."""

    url: str
    body: str = "array"
    idempotency: str = "batch"
    headers: dict[str, str] = field(default_factory=dict)
    tls_ca: str = ""  # a PEM file of CAs to trust instead of the system's
    tls_verify: bool = True

    def check(self, key: str) -> None:
        """Raise `ConfigError` for a value out of range."""
        check_url(f"{key}.url", self.url)
        if self.body not in BODIES:
            raise ConfigError(f"{key}.body", f"{self.body!r} is not one of {', '.join(BODIES)}")
        if self.idempotency not in IDEMPOTENCY:
            raise ConfigError(f"{key}.idempotency",
                              f"{self.idempotency!r} is not one of {', '.join(IDEMPOTENCY)}")


def check_url(key: str, url: str) -> yarl.URL:
    """`url` parsed; a `ConfigError` unless it is an http or https URL with a host."""
    try:
        parsed = yarl.URL(url)
    except ValueError as exc:
        raise ConfigError(key, f"{url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(key, f"{url!r} must be an http:// or https:// URL with a host")
    return parsed


def batch_key(batch: Sequence[Outgoing]) -> str:
    """A stable key of a batch: the hash of its event ids (the same for every retry of it)."""
    return str(xxhash.xxh3_128_hexdigest("\n".join([o.id for o in batch]).encode()))


class Request(NamedTuple):
    """One POST of a batch: its body, its extra headers, how many events it carries.

    `truncated`: how many of them were cut to fit (counted once the request is
    acknowledged, in `errors{reason="truncated"}`).
    """

    body: bytes
    headers: dict[str, str]
    events: int
    truncated: int = 0


class HttpClient:
    """POSTs requests to one URL through one `aiohttp.ClientSession` (see the module docstring).

    The session is opened by `start()` and closed by `close()`; a CA file that
    cannot be read is a `SinkError` when the client is built. The forwarder's
    `timeout` bounds each send (the session has no timeout of its own).
    """

    def __init__(self, counters: Counters, url: str, headers: dict[str, str], tls_ca: str,
                 tls_verify: bool) -> None:
        self.counters = counters
        self.url = url
        self.headers = headers
        self._ssl: ssl.SSLContext | bool = True
        if not tls_verify:
            self._ssl = False
        elif tls_ca:
            try:
                self._ssl = ssl.create_default_context(cafile=tls_ca)
            except (OSError, ssl.SSLError) as exc:
                raise SinkError(f"sink {counters.component}: cannot read tls_ca {tls_ca}: {exc}") from None
        self._session: aiohttp.ClientSession | None = None
        self._progress: OrderedDict[str, int] = OrderedDict()
        self.report = RateLimited(log)

    async def start(self) -> None:
        """Open the session (no connection is made before the first request)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, key: str, requests: Iterable[Request]) -> None:
        """POST `requests` in order, skipping those of batch `key` acknowledged by an earlier attempt.

        Returns once each was acknowledged or rejected; raises `SinkError` at
        the first that failed (the next attempt resumes there).
        """
        progress = self._progress
        done = progress.get(key, 0)
        for n, request in enumerate(requests):
            if n < done:
                continue
            await self._post(request)
            progress[key] = n + 1
            progress.move_to_end(key)
            if len(progress) > _PROGRESS_KEPT:
                progress.popitem(last=False)
        progress.pop(key, None)

    async def _post(self, request: Request) -> None:
        """POST one request; the `SinkError` it raises is logged by the forwarder after the sink's name."""
        session = self._session
        name = self.counters.component
        if session is None:
            raise SinkError("not started")
        try:
            async with session.post(self.url, data=request.body, headers=request.headers,
                                    allow_redirects=False) as response:
                status = response.status
                text = (await response.read())[:200].decode(errors="replace")
        except aiohttp.ServerDisconnectedError:
            raise SinkError(f"{self.url} closed the connection without a response") from None
        except aiohttp.ClientError as exc:
            raise SinkError(f"{self.url}: {str(exc) or type(exc).__name__}") from None
        except OSError as exc:
            raise SinkError(f"{self.url}: {exc.strerror or exc}") from None
        if 200 <= status < 300:
            if request.truncated:
                self.counters.errors["truncated"] += request.truncated
                self.report(logging.WARNING, f"{name}_truncated", "sink %s: the MSG of %d events was cut "
                            "to fit a body", name, request.truncated)
            return
        if 400 <= status < 500 and status not in RETRIED_4XX:
            self.counters.dropped["rejected"] += request.events
            self.report(logging.ERROR, f"{name}_rejected", "sink %s: %s answered %d (%s): %d events "
                        "rejected, not retried", name, self.url, status, " ".join(text.split()),
                        request.events)
            return
        raise SinkError(f"{self.url} answered {status} {' '.join(text.split())[:80]}".rstrip())


class HttpSink:
    """JSON batches POSTed to a URL (see the module docstring)."""

    def __init__(self, name: str, config: SinkConfig, options: HttpOptions) -> None:
        self.counters = Counters(name, "sink", latency=Latency())
        self.options = options
        headers = {"Content-Type": _CONTENT_TYPES[options.body], **options.headers}
        self.client = HttpClient(self.counters, options.url, headers, options.tls_ca, options.tls_verify)

    async def start(self) -> None:
        """Open the client session."""
        await self.client.start()

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """POST `batch` as the options say; return once the destination acknowledged (or rejected) it."""
        idempotency = self.options.idempotency
        key = batch_key(batch)
        if idempotency == "event":
            requests = [Request(self._body([o]), {"Idempotency-Key": o.id}, 1) for o in batch]
        else:
            headers = {"Idempotency-Key": key} if idempotency == "batch" else {}
            requests = [Request(self._body(batch), headers, len(batch))]
        await self.client.deliver(key, requests)

    def _body(self, batch: Sequence[Outgoing]) -> bytes:
        if self.options.body == "ndjson":
            return b"".join([o.line for o in batch])
        return b"[" + b",".join([o.line.rstrip(b"\n") for o in batch]) + b"]"

    async def close(self) -> None:
        """Close the client session."""
        await self.client.close()


SINK = SinkType(HttpOptions, HttpSink)
