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
time is recorded for latency.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench._mmsg import FixedBatchSender

Render = Callable[[int], bytes]

_TICK = 0.001
_SNDBUF = 4 * 1024 * 1024
_BATCH = 256


@dataclass
class SendResult:
    """What a paced send achieved; times are `time.monotonic()` seconds."""

    rate: float
    attempted: int = 0
    errors: int = 0
    t_first: float = 0.0
    t_last: float = 0.0
    probe_times: dict[int, float] = field(default_factory=dict)
    method: str = "send"

    @property
    def sent(self) -> int:
        """Datagrams the kernel accepted."""
        return self.attempted - self.errors

    @property
    def elapsed(self) -> float:
        """Seconds from the first send to the end of the last one."""
        return self.t_last - self.t_first

    @property
    def achieved_rate(self) -> float:
        """Datagrams offered per second, as measured."""
        return self.attempted / self.elapsed if self.elapsed > 0 else 0.0


def send_paced(
    address: tuple[str, int],
    rate: float,
    duration: float,
    render: Render,
    render_probe: Render,
    probe_every: int = 1000,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    use_sendmmsg: bool = True,
) -> SendResult:
    """Send `round(rate * duration)` datagrams numbered 0.. to `address`.

    Datagram `seq` is `render(seq)`, or `render_probe(seq)` when `seq` is a
    multiple of `probe_every` (0 disables probes). Runs of datagrams of one
    length go out through sendmmsg when `use_sendmmsg` and the C library
    allow it, others one `send` each. Send errors (e.g. ICMP port
    unreachable reported on the connected socket) are counted, not raised.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    total = round(rate * duration)
    result = SendResult(rate=rate)
    probe_times = result.probe_times
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        sock.connect(address)
        send = sock.send
        length = len(render(0))
        batcher = (
            FixedBatchSender(sock.fileno(), length, _BATCH)
            if use_sendmmsg and FixedBatchSender.available()
            else None
        )
        result.method = "sendmmsg" if batcher is not None else "send"
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
                    try:
                        send(render_probe(seq))
                    except OSError:
                        errors += 1
                    seq += 1
                    next_probe += probe_every
                    continue
                stop = min(due, next_probe, seq + _BATCH)
                if batcher is not None:
                    data = b"".join(map(render, range(seq, stop)))
                    if len(data) == (stop - seq) * length:
                        errors += batcher.send(data)
                        seq = stop
                        continue
                for n in range(seq, stop):
                    try:
                        send(render(n))
                    except OSError:
                        errors += 1
                seq = stop
        result.t_last = clock()
        result.attempted = total
        result.errors = errors
    return result
