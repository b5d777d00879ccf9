"""The `syslog` sink: events re-emitted as syslog over UDP, TCP (RFC 6587) or TLS (RFC 5425).

Strategy: a syslog event goes out as the bytes the device sent (`Event.raw`),
so the manager sees what it would have seen without the gateway. With
`rewrite` it goes out as RFC 5424 carrying one more SD-ELEMENT,
``[trapgate@32473 id="..." peer="..." port="..."]`` (the SD-ID is the `sd_id`
option; 32473 is the IANA example enterprise number, RFC 5612): an RFC 5424
original keeps its bytes with the element inserted before its own
STRUCTURED-DATA; an RFC 3164 one gets an RFC 5424 header from its fields (its
RFC 3339 timestamp when it had one, else the time the gateway received it).
Events without raw bytes (restored from the spool or the rescue stream, which
keep fields only) are rendered that way too. Other formats become RFC 5424
messages whose MSG is the event's JSON line (PRI user.notice, APP-NAME
``trapgate``, MSGID the format), or with ``others = "drop"`` are skipped and
counted in ``dropped["not_syslog"]`` (configure ``formats = ["syslog"]`` to
not hand them to the sink at all).

UDP (via asyncio-dgram): one datagram per event (one over 65507 octets is
dropped, ``dropped["too_big"]``); UDP has no acknowledgement, so a send
returns once every datagram is handed to the socket. A refusal the kernel
reports (ICMP port unreachable: during the send on this host, a round trip
later elsewhere, never when a firewall drops it) fails the batch it is
noticed in, and the forwarder sends it again. Lost without a trace: datagrams
sent to a remote receiver before its refusal came back, those the receiver
had not read when it stopped, and those beyond its socket buffer, as when
the backlog of an outage goes out as one burst at its restart.

TCP and TLS: the batch is framed (octet counting, or one LF after each
message) and written in one write on one connection, opened when first
needed and again after it broke. A send returns once the peer's TCP has
acknowledged every byte (the kernel's unacknowledged count, polled, is 0 and
the connection is still established): a message written into a connection
the receiver already closed is reset, not acknowledged, so the batch fails
and is sent again on a new connection. A broken connection, a refused
connect or a send cancelled by the forwarder's timeout drops the connection
and the whole batch is sent again: delivery is at least once, in order per
connection (rewritten messages carry the same ids each time). What the
receiver's kernel acknowledged but its process never read (it exited with
data in its socket buffer) is lost: RFC 6587 and RFC 5425 have no
application acknowledgement.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import socket
import ssl
import struct
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncio_dgram

from gateway._render import rfc3339
from gateway.config import parse_address
from gateway.errors import ConfigError, SinkError
from gateway.metrics import Counters, Latency
from gateway.sinks import SinkType

if TYPE_CHECKING:
    from gateway.config import SinkConfig
    from gateway.sinks import Outgoing

TRANSPORTS = ("udp", "tcp", "tls")
FRAMINGS = ("octet-counting", "lf")
OTHERS = ("rfc5424", "drop")
MAX_DATAGRAM = 65507  # an IPv4 UDP payload
_OTHERS_PRI = b"<13>"  # user.notice
_SD_NAME = re.compile(r"[!#-<>-\\^-~]{1,32}")  # RFC 5424 SD-NAME: PRINTUSASCII but '=', ' ', ']', '"'


@dataclass(frozen=True)
class SyslogOptions:
    """The keys of a `syslog` sink."""

    address: str  # host:port of the receiver
    transport: str = "udp"
    framing: str = "octet-counting"  # tcp and tls
    rewrite: bool = False  # RFC 5424 with the id and peer in an SD-ELEMENT
    others: str = "rfc5424"  # non-syslog events: as RFC 5424 with their JSON as MSG, or dropped
    sd_id: str = "trapgate@32473"
    tls_ca: str = ""  # PEM CA file (default: the system's CAs)
    tls_cert: str = ""  # PEM client certificate (and key, unless tls_key)
    tls_key: str = ""
    tls_verify: bool = True  # verify the server's certificate and name
    tls_server_name: str = ""  # the name to verify and send as SNI (default: the address's host)

    def check(self, key: str) -> None:
        """Raise `ConfigError` for a value out of range or a key that does not apply."""
        parse_address(f"{key}.address", self.address)
        for name, allowed in (("transport", TRANSPORTS), ("framing", FRAMINGS), ("others", OTHERS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{key}.{name}", f"{value!r} is not one of {', '.join(allowed)}")
        if self.transport == "udp" and self.framing != "octet-counting":
            raise ConfigError(f"{key}.framing", "applies to transport tcp or tls, not udp")
        if self.transport != "tls":
            for name in ("tls_ca", "tls_cert", "tls_key", "tls_server_name"):
                if getattr(self, name):
                    raise ConfigError(f"{key}.{name}", f"applies to transport tls, not {self.transport}")
        if self.tls_key and not self.tls_cert:
            raise ConfigError(f"{key}.tls_key", "needs tls_cert")
        if not _SD_NAME.fullmatch(self.sd_id) or "@" not in self.sd_id:
            raise ConfigError(f"{key}.sd_id", f"{self.sd_id!r} is not an SD-ID of the form name@number "
                                              "(up to 32 printable ASCII characters but '=', ']', '\"')")


class SyslogSink:
    """Syslog to one receiver over UDP, TCP or TLS (see the module docstring)."""

    def __init__(self, name: str, config: SinkConfig, options: SyslogOptions) -> None:
        self.counters = Counters(name, "sink", latency=Latency())
        self.options = options
        host, port = parse_address(f"sinks.{name}.address", options.address)
        self._render = _Renderer(options.sd_id.encode())
        self._link: _Datagrams | _Stream
        if options.transport == "udp":
            self._link = _Datagrams(host, port)
        else:
            tls = _tls_context(name, options) if options.transport == "tls" else None
            self._link = _Stream(host, port, options.framing, tls, options.tls_server_name or host)

    async def start(self) -> None:
        """Nothing to do: the connection or socket is opened by the first send."""

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """Send `batch`; `SinkError` when not all of it reached the receiver (see the module docstring)."""
        rewrite, keep_others, render = self.options.rewrite, self.options.others == "rfc5424", self._render
        messages = []
        for o in batch:
            event = o.event
            if event.format == "syslog":
                messages.append(render.rewritten(o) if rewrite or not event.raw else event.raw)
            elif keep_others:
                messages.append(render.other(o))
            else:
                self.counters.dropped["not_syslog"] += 1
        if isinstance(self._link, _Datagrams):
            fitting = [m for m in messages if len(m) <= MAX_DATAGRAM]
            if len(fitting) != len(messages):
                self.counters.dropped["too_big"] += len(messages) - len(fitting)
                messages = fitting
        if messages:
            await self._link.send(messages)

    async def close(self) -> None:
        """Close the socket or connection."""
        self._link.close()


class _Renderer:
    """RFC 5424 messages carrying an SD-ELEMENT with the event's id and original peer."""

    _HEADER = re.compile(rb"<\d{1,3}> *1 (?:[^ ]+ ){5}")  # through MSGID, as the parser read it
    _LEADING_JUNK = b" \t\r\n\x00\x0b\x0c"
    _NOT_PRINTABLE = re.compile(r"[^!-~]")
    _RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:[Zz]|[+-]\d\d:\d\d)")

    def __init__(self, sd_id: bytes) -> None:
        self.sd_id = sd_id
        self._sd_id_text = sd_id.decode()
        # An element of our SD-ID in the original (a gateway upstream): replaced by ours, since an
        # SD-ID must not appear twice (RFC 5424 section 6.3.2).
        self._ours = re.compile(rb"\[" + re.escape(sd_id) + rb'(?: [^ ="\]]+="(?:[^"\\]|\\.)*")*\]', re.S)

    def element(self, o: Outgoing) -> bytes:
        host, port = o.event.peer
        return b'[%s id="%s" peer="%s" port="%d"]' % (self.sd_id, _escape(o.id), _escape(host), port)

    def rewritten(self, o: Outgoing) -> bytes:
        """A syslog event as RFC 5424 with our element first in its STRUCTURED-DATA."""
        event = o.event
        fields = event.fields
        raw = event.raw
        if raw and fields.get("protocol") == "rfc5424":
            body = raw if raw.startswith(b"<") else raw.lstrip(self._LEADING_JUNK)
            m = self._HEADER.match(body)
            if m is not None:
                head, rest = body[: m.end()], body[m.end() :]
                if rest.startswith(b"-"):
                    return head + self.element(o) + rest[1:]
                if self._sd_id_text in fields.get("structured_data", {}):
                    rest = self._ours.sub(b"", rest, count=1)
                return head + self.element(o) + rest
        timestamp = fields.get("timestamp")
        if not (isinstance(timestamp, str) and self._RFC3339.fullmatch(timestamp)):
            timestamp = rfc3339(event.received_at)
        pri = (int(fields.get("facility", 1)) << 3) | int(fields.get("severity", 5))
        header = " ".join([
            f"<{pri}>1 {timestamp}",
            self._token(fields.get("hostname") or event.peer[0], 255),
            self._token(fields.get("app_name"), 48),
            self._token(fields.get("procid"), 128),
            self._token(fields.get("msgid"), 32),
        ]).encode()
        sd = self.element(o) + b"".join(
            _sd_element(sd_id, params) for sd_id, params in fields.get("structured_data", {}).items()
            if sd_id != self._sd_id_text)
        return b"%s %s %s" % (header, sd, str(fields.get("msg", "")).encode())

    def other(self, o: Outgoing) -> bytes:
        """A non-syslog event as RFC 5424 whose MSG is its JSON line."""
        event = o.event
        return b"%s1 %s %s trapgate - %s %s %s" % (
            _OTHERS_PRI, rfc3339(event.received_at).encode(), self._token(event.peer[0], 255).encode(),
            self._token(event.format, 32).encode(), self.element(o), o.line.rstrip(b"\n"))

    def _token(self, value: Any, limit: int) -> str:
        """An RFC 5424 header field: printable ASCII without spaces, at most `limit` long, or '-'."""
        if value is None or value == "":
            return "-"
        return self._NOT_PRINTABLE.sub("_", str(value))[:limit]


def _escape(value: str) -> bytes:
    """A PARAM-VALUE: '"', '\\' and ']' escaped with a backslash (RFC 5424 section 6.3.3)."""
    if '"' in value or "\\" in value or "]" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return value.encode()


def _sd_element(sd_id: str, params: dict[str, Any]) -> bytes:
    """An SD-ELEMENT from the parser's decoded form (a repeated name is a list of values)."""
    parts = [f"[{sd_id}".encode()]
    for name, value in params.items():
        for one in value if isinstance(value, list) else [value]:
            parts.append(b' %s="%s"' % (name.encode(), _escape(str(one))))
    parts.append(b"]")
    return b"".join(parts)


def _tls_context(name: str, options: SyslogOptions) -> ssl.SSLContext:
    """The client context of a `tls` sink; files that cannot be loaded are a `SinkError`."""
    try:
        context = ssl.create_default_context(cafile=options.tls_ca or None)
        if options.tls_cert:
            context.load_cert_chain(options.tls_cert, options.tls_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"sink {name}: cannot load its TLS files: {exc}") from None
    if not options.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Datagrams:
    """One connected UDP socket (asyncio-dgram), opened by the first send."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self._client: Any = None

    async def send(self, messages: list[bytes]) -> None:
        host, port = self.address
        try:
            if self._client is None:
                self._client = await asyncio_dgram.connect(self.address)
            client = self._client
            refused = _reported(client)  # since the last send: those datagrams may be lost
            if refused is None:
                for message in messages:
                    await client.send(message)
                # A refusal the kernel has already (at once for this host) is pending on the
                # socket until the loop polls it: take it now.
                pending = client.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                refused = _reported(client) or (OSError(pending, os.strerror(pending)) if pending else None)
        except (OSError, asyncio_dgram.TransportClosed) as exc:
            self.close()
            why = _why(exc) if isinstance(exc, OSError) else "socket closed"
            raise SinkError(f"datagrams to {host}:{port} failed: {why}") from None
        if refused is not None:
            raise SinkError(f"{host}:{port} refused datagrams: {refused.strerror}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reported(client: Any) -> OSError | None:
    """The first error the kernel reported on a datagram socket since the last call; all are taken."""
    first = None
    while True:
        try:
            _ = client.exception  # raises the oldest error not taken yet
        except OSError as exc:
            first = first or exc
            continue
        return first


def _why(exc: OSError) -> str:
    """An OS or TLS error in a few words (asyncio's connect error hides its errno's text)."""
    if isinstance(exc, ssl.SSLError) or not exc.errno:
        return str(exc)
    return os.strerror(exc.errno)


_TCP_OK_STATES = (1, 8)  # ESTABLISHED, CLOSE_WAIT (the peer closed after acknowledging)


class _Connection(asyncio.Protocol):
    """One TCP or TLS connection: flow control, and whether it is still usable."""

    def __init__(self, half_close: bool) -> None:
        self.transport: asyncio.Transport | None = None
        self.half_close = half_close  # TLS cannot: its transport closes at the peer's EOF
        self.usable = True
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """A syslog receiver sends nothing; whatever it sends is ignored."""

    def eof_received(self) -> bool:
        self.usable = False  # the next send opens a new connection
        return self.half_close  # stay open, so a send in progress can see its bytes acknowledged

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def drain(self) -> None:
        await self._writable.wait()


class _Stream:
    """Frames messages and writes them on one TCP or TLS connection, opened when needed."""

    def __init__(self, host: str, port: int, framing: str, tls: ssl.SSLContext | None,
                 server_name: str) -> None:
        self.host, self.port = host, port
        self.octet_counting = framing == "octet-counting"
        self.tls, self.server_name = tls, server_name
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()

    def frame(self, messages: list[bytes]) -> bytes:
        if self.octet_counting:
            return b"".join([b"%d %s" % (len(m), m) for m in messages])
        return b"".join([(m[:-1] if m.endswith(b"\n") else m) + b"\n" for m in messages])

    async def send(self, messages: list[bytes]) -> None:
        data = self.frame(messages)
        connection = await self._connected()
        transport = connection.transport
        assert transport is not None
        try:
            transport.write(data)
            await connection.drain()
            await self._acknowledged(connection, transport)
        except OSError as exc:
            self._drop(connection)
            raise SinkError(f"connection to {self.host}:{self.port} broke: {_why(exc)}") from None
        except asyncio.CancelledError:
            self._drop(connection)  # how much of the batch went out is unknown: it is sent again
            raise

    async def _connected(self) -> _Connection:
        async with self._connecting:
            connection = self._connection
            if connection is not None and connection.usable:
                return connection
            if connection is not None:
                self._drop(connection)
            loop = asyncio.get_running_loop()
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.tls is None), self.host, self.port, ssl=self.tls,
                    server_hostname=self.server_name if self.tls else None)
            except OSError as exc:  # ssl.SSLError included
                raise SinkError(f"cannot connect to {self.host}:{self.port}: {_why(exc)}") from None
            self._connection = connection
            return connection

    @staticmethod
    async def _acknowledged(connection: _Connection, transport: asyncio.Transport) -> None:
        """Wait until the peer's TCP has acknowledged every byte written; `OSError` if it never will."""
        sock = transport.get_extra_info("socket")
        delay = 0.0005
        while True:
            if transport.is_closing():
                raise ConnectionResetError("connection closed")
            if transport.get_write_buffer_size() == 0:
                unacknowledged = struct.unpack(
                    "i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
                if unacknowledged == 0:
                    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
                    if state not in _TCP_OK_STATES:
                        raise ConnectionResetError("connection reset by the receiver")
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _drop(self, connection: _Connection) -> None:
        if connection.transport is not None:
            connection.transport.abort()
        if self._connection is connection:
            self._connection = None

    def close(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None


SINK = SinkType(SyslogOptions, SyslogSink)
