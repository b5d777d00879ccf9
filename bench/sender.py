"""A paced UDP sender that offers a fixed rate from one Python process.

Strategy: the sender works in ticks of about a millisecond. On each tick it
computes how many datagrams are due since the start (rate x elapsed) and sends
the difference in one tight loop, so a late tick is made up by the next
rather than lowering the rate. Rendering is a C-level callable per datagram
(e.g. `template.__mod__`) and runs of equal-length datagrams leave in one
sendmmsg call, which keeps the loop at a few µs per datagram: about 200k
datagrams/s on loopback, where the kernel's receive path is paid by the
sender. Every `probe_every`-th datagram is a probe: it is rendered by
its own callable (so the receiving side can find it cheaply) and its send
time is recorded for latency. With several destinations (a device that
sends every trap to two receivers) each run is rendered once and sent to
every destination in turn, one sendmmsg batch per destination.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench._mmsg import FixedBatchSender

Render = Callable[[int], bytes]
Address = tuple[str, int]

_TICK = 0.001
_SNDBUF = 4 * 1024 * 1024
_BATCH = 256


@dataclass
class SendResult:
    """What a paced send achieved; times are `time.monotonic()` seconds.

    `attempted` counts numbered datagrams, each sent to every one of
    `destinations`; `errors` counts refused copies.
    """

    rate: float
    destinations: int = 1
    attempted: int = 0
    errors: int = 0
    t_first: float = 0.0
    t_last: float = 0.0
    probe_times: dict[int, float] = field(default_factory=dict)
    method: str = "send"

    @property
    def sent(self) -> int:
        """Datagrams the kernel accepted.

        With several destinations, a lower bound on the numbers of which at
        least one copy was accepted.
        """
        return self.attempted - self.errors

    @property
    def elapsed(self) -> float:
        """Seconds from the first send to the end of the last one."""
        return self.t_last - self.t_first

    @property
    def achieved_rate(self) -> float:
        """Datagrams offered per second, as measured."""
        return self.attempted / self.elapsed if self.elapsed > 0 else 0.0


class _Destination:
    """One connected socket and, where available, its sendmmsg batcher."""

    def __init__(self, address: Address, length: int, use_sendmmsg: bool) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        self.sock.connect(address)
        self.send = self.sock.send
        self.batcher = (
            FixedBatchSender(self.sock.fileno(), length, _BATCH)
            if use_sendmmsg and FixedBatchSender.available()
            else None
        )


def _send_each(sends: Sequence[Callable[[bytes], int]], data: bytes) -> int:
    """Send `data` through every one of `sends`; how many refused it."""
    errors = 0
    for send in sends:
        try:
            send(data)
        except OSError:
            errors += 1
    return errors


def send_paced(
    addresses: Sequence[Address],
    rate: float,
    duration: float,
    render: Render,
    render_probe: Render,
    probe_every: int = 1000,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    use_sendmmsg: bool = True,
) -> SendResult:
    """Send `round(rate * duration)` datagrams numbered 0.. to every one of `addresses`.

    Datagram `seq` is `render(seq)`, or `render_probe(seq)` when `seq` is a
    multiple of `probe_every` (0 disables probes); a probe's send time is
    taken just before its first copy leaves. Runs of datagrams of one length
    go out through sendmmsg when `use_sendmmsg` and the C library allow it,
    others one `send` each. Send errors (e.g. ICMP port unreachable reported
    on the connected socket) are counted, not raised.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    if not addresses:
        raise ValueError("no destination")
    total = round(rate * duration)
    result = SendResult(rate=rate, destinations=len(addresses))
    probe_times = result.probe_times
    length = len(render(0))
    dests = [_Destination(address, length, use_sendmmsg) for address in addresses]
    try:
        sends = [d.send for d in dests]
        batchers = [d.batcher for d in dests if d.batcher is not None]
        if len(batchers) != len(dests):
            batchers = []
        result.method = "sendmmsg" if batchers else "send"
        seq = 0
        next_probe = 0 if probe_every > 0 else total
        errors = 0
        start = clock()
        result.t_first = start
        while seq < total:
            due = min(total, int((clock() - start) * rate) + 1)
            if due <= seq:
                sleep(_TICK)
                continue
            while seq < due:
                if seq == next_probe:
                    probe_times[seq] = clock()
                    errors += _send_each(sends, render_probe(seq))
                    seq += 1
                    next_probe += probe_every
                    continue
                stop = min(due, next_probe, seq + _BATCH)
                if batchers:
                    data = b"".join(map(render, range(seq, stop)))
                    if len(data) == (stop - seq) * length:
                        for batcher in batchers:
                            errors += batcher.send(data)
                        seq = stop
                        continue
                for n in range(seq, stop):
                    errors += _send_each(sends, render(n))
                seq = stop
        result.t_last = clock()
        result.attempted = total
        result.errors = errors
    finally:
        for d in dests:
            d.sock.close()
    return result
