"""The `snmp` sink: SNMP events re-emitted to a manager as v2c or v3 Traps or Informs.

Strategy: each event becomes one datagram made by `formats.snmp.notify`
(the project's BER and USM code): its varbinds as they arrived, a v1 trap
mapped per RFC 3584, and snmpTrapAddress.0 / snmpTrapCommunity.0 appended
as a proxy does, so the manager still sees the origin. A sink takes SNMP
events only: configure it with ``formats = ["snmp"]``; any other event is
counted as dropped (``not_snmp``) and skipped, as are fields that make no
notification (``bad_fields``) or a datagram over 65507 octets (``too_big``).

Traps are acknowledged once every datagram of the batch is handed to the
socket (one sendto each). Informs are acknowledged when the manager
answered each of them: an unanswered inform is sent again every
`inform_timeout` seconds, `inform_retries` times, then the send fails and
the forwarder retries the batch with backoff, so an inform is retried until
answered; the ones answered already are not sent again with their batch.
The sink's `timeout` should exceed `inform_timeout` x (`inform_retries` + 2)
(the sends and one discovery), else the forwarder cuts the resends short.
A v3 inform first learns the manager's engine id from the Report to a probe
(RFC 3414 section 4); a v3 trap carries this sink's own engine id, boots
(kept in `engine_boots_file`, incremented at each start) and time.

`keep_source` sends each trap from the address and port the event came
from, through a raw socket (IPv4, needs CAP_NET_RAW), as trap forwarders
do; without the capability it logs one line and sends from this host.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.snmp import SnmpError, UsmUser
from formats.snmp.notify import MAX_DATAGRAM, EncodeError, Notifier, Reply, notification_varbinds
from gateway._ratelog import RateLimited
from gateway._snmp_config import _hex, default_engine_id
from gateway.config import parse_address
from gateway.errors import ConfigError, GatewayError, SinkError
from gateway.metrics import Counters, Latency
from gateway.receivers.snmp import next_engine_boots
from gateway.sinks import SinkType

if TYPE_CHECKING:
    from gateway.config import SinkConfig
    from gateway.sinks import Outgoing

log = logging.getLogger(__name__)

VERSIONS = ("2c", "3")
_MAX_ANSWERED = 65536


@dataclass(frozen=True)
class SnmpSinkOptions:
    """The keys of an `snmp` sink (see the module docstring)."""

    address: str  # the manager, host:port
    version: str = "2c"
    community: str = "public"
    inform: bool = False
    inform_timeout: float = 1.0  # seconds before an unanswered inform is sent again
    inform_retries: int = 3  # sends again within one attempt of the batch
    user: str = ""  # v3
    auth: str = ""  # a protocol of formats.snmp.AUTH_PROTOCOLS, or "" for none
    auth_passphrase: str = ""
    priv: str = ""  # a protocol of formats.snmp.PRIV_PROTOCOLS, or "" for none
    priv_passphrase: str = ""
    engine_id: str = ""  # hex; this sink's engine id for v3 traps (default: from host and sink name)
    engine_boots_file: str = ""  # default: trapgate-sink-NAME-engine-boots
    keep_source: bool = False

    def check(self, key: str) -> None:
        """Raise `ConfigError` for a value out of range or keys that do not go together."""
        parse_address(f"{key}.address", self.address)
        if self.version not in VERSIONS:
            raise ConfigError(f"{key}.version", f"{self.version!r} is not one of {', '.join(VERSIONS)}")
        if self.inform_timeout <= 0 or self.inform_retries < 0:
            raise ConfigError(key, "inform_timeout must be above 0, inform_retries 0 or more")
        if self.keep_source and self.inform:
            raise ConfigError(f"{key}.keep_source", "applies to traps: an inform's answer would go to "
                              "the spoofed source")
        if self.engine_id:
            engine_id = _hex(f"{key}.engine_id", self.engine_id)
            if not 5 <= len(engine_id) <= 32:
                raise ConfigError(f"{key}.engine_id", "must have 5 to 32 octets")
        if self.version == "3":
            if not self.user:
                raise ConfigError(f"{key}.user", "is required with version = '3'")
            try:
                self.usm_user()
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from None

    def usm_user(self) -> UsmUser:
        """The v3 user this sink sends as."""
        return UsmUser(self.user, self.auth or None, self.auth_passphrase, self.priv or None,
                       self.priv_passphrase)


def engine_id_of(sink: str) -> bytes:
    """The default engine id of sink `sink` on this host (text format, at most 32 octets)."""
    return default_engine_id(f"{socket.gethostname()}:{sink}")


def udp_packet(source: tuple[str, int], destination: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 header and a UDP datagram with its checksum, for a raw socket with IP_HDRINCL.

    The kernel fills in the IP checksum, the total length and the id.
    """
    src, dst = socket.inet_aton(source[0]), socket.inet_aton(destination[0])
    length = 8 + len(payload)
    header = struct.pack("!HHHH", source[1], destination[1], length, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
    return ip + header[:6] + struct.pack("!H", checksum) + payload


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


class SnmpSink:
    """Traps or informs to one manager (see the module docstring)."""

    def __init__(self, name: str, config: SinkConfig, options: SnmpSinkOptions) -> None:
        self.counters = Counters(name, "sink", latency=Latency())
        self.options = options
        self.now = time.monotonic
        self.report = RateLimited(log)
        self._host, self._port = parse_address(f"sinks.{name}.address", options.address)
        self._notifier: Notifier | None = None
        self._sock: socket.socket | None = None
        self._raw: socket.socket | None = None
        self._destination: tuple[Any, ...] = ()
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._answered: set[str] = set()
        self._request_ids = itertools.count(int.from_bytes(os.urandom(3), "big") + 1)
        self._discovery = asyncio.Lock()
        self._sending = asyncio.Lock()

    async def start(self) -> None:
        """Make the engine (v3: increment its boots) and open the sockets; the manager may be down."""
        options, name = self.options, self.counters.component
        if options.version == "3":
            boots_file = options.engine_boots_file or f"trapgate-sink-{name}-engine-boots"
            try:
                boots = next_engine_boots(Path(boots_file))
            except GatewayError as exc:
                raise SinkError(f"sink {name}: {exc}") from None
            engine_id = _hex("engine_id", options.engine_id) if options.engine_id else engine_id_of(name)
            self._notifier = Notifier("3", user=options.usm_user(), engine_id=engine_id, boots=boots,
                                      started_at=self.now(), salt=int.from_bytes(os.urandom(8), "big"))
        else:
            self._notifier = Notifier("2c", community=options.community.encode())
        with contextlib.suppress(SinkError):
            await self._socket()

    async def _socket(self) -> socket.socket:
        """The socket to the manager, opened (and the address resolved) on first use."""
        if self._sock is not None:
            return self._sock
        loop = asyncio.get_running_loop()
        name = self.counters.component
        try:
            infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_DGRAM)
            if self._sock is not None:  # a concurrent send opened it meanwhile
                return self._sock
            family, _, _, _, self._destination = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        except OSError as exc:
            raise SinkError(f"sink {name}: cannot reach {self.options.address}: {exc}") from None
        self._sock = sock
        if self.options.keep_source:
            self._raw = self._open_raw(family)
        if self.options.inform:
            loop.add_reader(sock.fileno(), self._read_replies)
        return sock

    def _open_raw(self, family: int) -> socket.socket | None:
        name = self.counters.component
        if family != socket.AF_INET:
            log.warning("sink %s: keep_source works towards IPv4 managers only; traps go out from this "
                        "host's own address", name)
            return None
        try:
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            log.warning("sink %s: keep_source needs CAP_NET_RAW, which this process lacks; traps go out "
                        "from this host's own address", name)
            return None
        except OSError as exc:
            log.warning("sink %s: keep_source: no raw socket (%s); traps go out from this host's own "
                        "address", name, exc.strerror)
            return None
        raw.setblocking(False)
        return raw

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """Send each SNMP event of `batch` as a trap or inform; return once all went out or were answered."""
        assert self._notifier is not None, "send before start"
        counters = self.counters
        items: list[tuple[Outgoing, bytes, bytes]] = []
        for o in batch:
            if o.event.format != "snmp":
                counters.dropped["not_snmp"] += 1
                continue
            if o.id in self._answered:
                continue
            try:
                varbinds = notification_varbinds(o.event.fields, o.event.peer[0])
            except EncodeError as exc:
                counters.dropped[exc.reason] += 1
                self.report(logging.WARNING, f"{counters.component}_fields", "sink %s: event %s skipped: %s",
                            counters.component, o.id, exc)
                continue
            engine_hex = o.event.fields.get("engine_id")
            context = bytes.fromhex(engine_hex) if isinstance(engine_hex, str) else b""
            items.append((o, varbinds, context))
        if not items:
            return
        sock = await self._socket()
        if self.options.inform:
            await self._inform(sock, items)
            for o, _, _ in items:
                self._answered.discard(o.id)
            return
        notifier = self._notifier
        for o, varbinds, context in items:
            data = notifier.notification(varbinds, next(self._request_ids), False, self.now(), context)
            if len(data) > MAX_DATAGRAM:
                counters.dropped["too_big"] += 1
                continue
            await self._send_trap(sock, data, o.event.peer)

    async def _send_trap(self, sock: socket.socket, data: bytes, origin: tuple[str, int]) -> None:
        if self._raw is not None and ":" not in origin[0]:  # a peer is an address: IPv4 or IPv6
            packet = udp_packet(origin, self._destination[:2], data)
            await self._sendto(self._raw, packet, (self._destination[0], 0))
        else:
            await self._sendto(sock, data, self._destination)

    async def _inform(self, sock: socket.socket, items: list[tuple[Outgoing, bytes, bytes]]) -> None:
        """Send each inform until answered, `inform_retries` times more at most; else raise `SinkError`."""
        loop = asyncio.get_running_loop()
        notifier = self._notifier
        assert notifier is not None
        options = self.options
        unanswered = {next(self._request_ids): item for item in items}
        mine: list[int] = []
        try:
            for _ in range(options.inform_retries + 1):
                if notifier.needs_discovery and not await self._discover(sock):
                    continue
                futures: dict[int, asyncio.Future[Reply]] = {}
                for request_id, (_, varbinds, context) in unanswered.items():
                    futures[request_id] = self._waiting[request_id] = loop.create_future()
                    mine.append(request_id)
                    data = notifier.notification(varbinds, request_id, True, self.now(), context)
                    await self._sendto(sock, data, self._destination)
                await asyncio.wait(futures.values(), timeout=options.inform_timeout)
                for request_id, future in futures.items():
                    del self._waiting[request_id]
                    if not future.done():
                        continue
                    reply = future.result()
                    if reply.outcome == "answered":
                        o = unanswered.pop(request_id)[0]
                        self._answered.add(o.id)
                    elif not reply.resend:
                        raise SinkError(f"sink {self.counters.component}: {options.address} refused an "
                                        f"inform: {reply.outcome}")
                if not unanswered:
                    return
        finally:
            for request_id in mine:
                self._waiting.pop(request_id, None)
            if len(self._answered) > _MAX_ANSWERED:
                self._answered.clear()
        raise SinkError(f"sink {self.counters.component}: {len(unanswered)} of {len(items)} informs "
                        f"unanswered by {options.address} after {options.inform_retries + 1} sends")

    async def _discover(self, sock: socket.socket) -> bool:
        """Probe the manager for its engine id (one probe at a time); whether it is known now."""
        notifier = self._notifier
        assert notifier is not None
        async with self._discovery:
            if not notifier.needs_discovery:
                return True
            request_id = next(self._request_ids)
            future = self._waiting[request_id] = asyncio.get_running_loop().create_future()
            try:
                await self._sendto(sock, notifier.probe(request_id), self._destination)
                await asyncio.wait([future], timeout=self.options.inform_timeout)
            finally:
                del self._waiting[request_id]
            return not notifier.needs_discovery

    async def _sendto(self, sock: socket.socket, data: bytes, address: tuple[Any, ...]) -> None:
        """Hand `data` to the socket, waiting while its buffer is full; an OS error is a `SinkError`."""
        # The socket is used directly (uvloop has no sock_sendto): one sendto
        # each, and a wait for writability when the kernel says EAGAIN.
        async with self._sending:
            while True:
                try:
                    sock.sendto(data, address)
                    return
                except BlockingIOError:
                    await _writable(sock)
                except OSError as exc:
                    raise SinkError(f"sink {self.counters.component}: cannot send to "
                                    f"{self.options.address}: {exc.strerror or exc}") from None

    def _read_replies(self) -> None:
        """Hand each reply from the manager to the send waiting for its request id."""
        sock, notifier = self._sock, self._notifier
        assert sock is not None and notifier is not None
        manager = self._destination[:2]
        while True:
            try:
                data, sender = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                continue
            if sender[:2] != manager:
                continue
            try:
                reply = notifier.reply(data, self.now())
            except SnmpError as exc:
                self.counters.errors[f"reply_{exc.reason}"] += 1
                continue
            future = self._waiting.get(reply.request_id) if reply is not None else None
            if future is not None and not future.done():
                future.set_result(reply)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Stop reading replies and close the sockets."""
        if self._sock is not None and self.options.inform:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        for sock in (self._sock, self._raw):
            if sock is not None:
                sock.close()


async def _writable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_writer(sock.fileno())


SINK = SinkType(SnmpSinkOptions, SnmpSink)
