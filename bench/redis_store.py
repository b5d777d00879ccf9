"""`python -m bench redis-store`: what RedisStore costs in Redis memory and how fast it claims.

Starts its own redis-server on a free loopback port (persistence off) unless
`--port` names one on 127.0.0.1 to use, which is then flushed (never 6379).
Memory: ``used_memory`` before and after claiming `--fingerprints` distinct
fingerprints, per fingerprint, for one node, then with forwarded markers,
then with the second node of an HA pair claiming the same fingerprints (its
own counters), in suppress mode, and as a running pair writes (the master's
claims marked by its watermark, the standby's counters). Throughput: events
per second claimed in batches of `--batch`, one batch in flight and several,
for fresh fingerprints and for repeats.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.procs import BenchError
from bench.redisproc import RedisProcess
from dedup import Mode
from dedup.redis import RedisSettings, RedisStore

HOST = "127.0.0.1"
WINDOW = 600.0  # long enough that nothing expires while measuring


@dataclass(frozen=True)
class Server:
    """The measured redis-server on 127.0.0.1:`port`, for the bench's own commands.

    Each command gets a connection of its own, closed after it, so no idle
    connection of the bench holds buffers in a ``used_memory`` reading.
    """

    port: int

    def client(self) -> redis.Redis:
        """A new synchronous connection (the caller closes it)."""
        return redis.Redis(host=HOST, port=self.port)

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section`` as a dict."""
        with self.client() as c:
            return dict(c.info(section))


def _fps(start: int, n: int) -> list[str]:
    return [f"{i:016x}" for i in range(start, start + n)]


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _used(server: Server) -> int:
    return int(server.info("memory")["used_memory"])


async def _claim_all(
    store: RedisStore, node: str, fps: list[str], mode: Mode, batch: int, watermarks: bool = False
) -> list[str]:
    """Claim `fps` in batches; with `watermarks`, as an HA master does (batch seqs, one watermark a
    batch, a token a batch)."""
    ids: list[str] = []
    for seq, chunk in enumerate(_chunks(fps, batch), 1):
        won = (await store.claim(node, chunk, mode, WINDOW, time.time(), seq if watermarks else None,
                                 f"{node}.{seq}" if watermarks else ""))[0]
        if watermarks:
            await store.forwarded_through(seq, won[-1])
        ids += won
    return ids


async def memory(store: RedisStore, server: Server, n: int, batch: int) -> dict[str, Any]:
    """Bytes of ``used_memory`` per fingerprint in each scenario."""
    with server.client() as c:
        c.flushall()
    await store.claim("warm", ["ffffffffffffffff"], Mode.EXACT, WINDOW, time.time())  # loads the scripts
    await store.mark_forwarded(["ffffffffffffffff-1-1"])
    fps = _fps(0, n)
    with server.client() as c:
        base_keys = int(c.dbsize())
    base = _used(server)
    ids = await _claim_all(store, "node-a", fps, Mode.EXACT, batch)
    one_node = _used(server)
    for chunk in _chunks(ids, batch):
        await store.mark_forwarded(chunk, WINDOW)
    marked = _used(server)
    await _claim_all(store, "node-b", fps, Mode.EXACT, batch)
    pair = _used(server)
    with server.client() as c:
        keys = int(c.dbsize()) - base_keys
        c.flushall()
    await store.claim("warm", ["ffffffffffffffff"], Mode.EXACT, WINDOW, time.time())
    base_s = _used(server)
    await _claim_all(store, "node-a", fps, Mode.SUPPRESS, batch)
    suppress = _used(server)
    with server.client() as c:
        c.flushall()
    await store.claim("warm", ["ffffffffffffffff"], Mode.EXACT, WINDOW, time.time())
    await store.number("warm", ["ffffffffffffffff"], Mode.EXACT, WINDOW)
    base_ha = _used(server)
    await _claim_all(store, "node-a", fps, Mode.EXACT, batch, watermarks=True)
    for i, chunk in enumerate(_chunks(fps, batch)):
        await store.number("node-b", chunk, Mode.EXACT, WINDOW, f"node-b.{i}")
    ha_run = _used(server)

    def per(delta: int) -> float:
        return round(delta / n, 1)

    return {
        "fingerprints": n,
        "keys_ha_pair": keys,
        "bytes_per_fp_exact_one_node": per(one_node - base),
        "bytes_per_fp_exact_one_node_forwarded": per(marked - base),
        "bytes_per_fp_exact_ha_pair_forwarded": per(pair - base),
        "bytes_per_fp_suppress_one_node": per(suppress - base_s),
        # What a running pair writes: the master's claims carry its batch seq
        # (marked by watermark), the standby numbers its copies; each call
        # keeps its numbers under its token.
        "bytes_per_fp_ha_pair_as_run": per(ha_run - base_ha),
    }


async def throughput(
    store: RedisStore,
    server: Server,
    batch: int,
    seconds: float,
    in_flight: int,
    repeats: bool,
    mode: Mode,
    tokens: bool = False,
) -> dict[str, Any]:
    """Events per second claimed for `seconds`, with `in_flight` batches outstanding (with `tokens`,
    each call carries one, as in an HA pair).

    Also the server's own time per event (the script's ``usec_per_call``), which
    bounds the rate whatever the client does.
    """
    with server.client() as c:
        c.config_resetstat()
    next_fp = [10_000_000]
    done = [0]
    deadline = time.perf_counter() + seconds

    def batch_fps() -> list[str]:
        if repeats:  # 64 fingerprints, 16 copies each: counters and claims already exist
            return [f"{i % 64:016x}" for i in range(batch)]
        start, next_fp[0] = next_fp[0], next_fp[0] + batch
        return _fps(start, batch)

    async def worker(node: str) -> None:
        while time.perf_counter() < deadline:
            token = f"{node}.{done[0]}" if tokens else ""
            await store.claim(node, batch_fps(), mode, WINDOW, time.time(), token=token)
            done[0] += batch

    started = time.perf_counter()
    await asyncio.gather(*(worker(f"node-{i}") for i in range(in_flight)))
    elapsed = time.perf_counter() - started
    script = server.info("commandstats")["cmdstat_evalsha"]
    return {
        "mode": str(mode),
        "batch": batch,
        "in_flight": in_flight,
        "fingerprints": "repeated" if repeats else "fresh",
        "tokens": tokens,
        "events": done[0],
        "seconds": round(elapsed, 3),
        "events_per_s": round(done[0] / elapsed),
        "batch_ms": round(1000 * elapsed * in_flight / (done[0] / batch), 3),
        "server_us_per_event": round(float(script["usec_per_call"]) / batch, 2),
    }


async def markers(store: RedisStore, batch: int, seconds: float) -> dict[str, Any]:
    """Ids per second through mark_forwarded and forwarded, one batch in flight."""
    ids = [f"{i:016x}-1-1" for i in range(10_000_000, 10_000_000 + batch)]
    out: dict[str, Any] = {}
    for name in ("mark_forwarded", "forwarded"):
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            await (store.mark_forwarded(ids, WINDOW) if name == "mark_forwarded" else store.forwarded(ids))
            n += batch
        out[f"{name}_ids_per_s"] = round(n / (time.perf_counter() - started))
    return out


async def _run(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    store = RedisStore(RedisSettings(host=HOST, port=server.port))
    try:
        mem = await memory(store, server, args.fingerprints, args.batch)
        with server.client() as c:
            c.flushall()
        runs = [
            await throughput(store, server, args.batch, args.seconds, in_flight, repeats, mode, tokens)
            for mode, repeats, in_flight, tokens in (
                (Mode.EXACT, False, 1, False),
                (Mode.EXACT, False, 1, True),
                (Mode.EXACT, False, 4, False),
                (Mode.EXACT, True, 1, False),
                (Mode.SUPPRESS, False, 1, False),
            )
        ]
        marks = await markers(store, args.batch, args.seconds)
    finally:
        await store.close()
    version = server.info("server")["redis_version"]
    return {
        "benchmark": "redis_store",
        "redis_version": version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory": mem,
        "claim_throughput": runs,
        "markers": marks,
    }


def run(args: argparse.Namespace) -> int:
    """Run the measurements and print the JSON report."""
    if args.port == 6379:
        raise BenchError("refusing to flush 6379; start a server elsewhere or omit --port")
    with contextlib.ExitStack() as stack:
        port: int | None = args.port
        if port is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-redis-")))
            port = stack.enter_context(RedisProcess(workdir, HOST, "redis")).port
        report = asyncio.run(_run(Server(port), args))
    print(json.dumps(report, indent=None if args.compact else 2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `redis-store` subcommand to the `python -m bench` parser."""
    parser = subparsers.add_parser(
        "redis-store", help="RedisStore memory per fingerprint and claim rate", description=__doc__
    )
    parser.add_argument("--fingerprints", type=int, default=100_000, help="for the memory figures (100000)")
    parser.add_argument("--batch", type=int, default=1024, help="fingerprints per claim (1024)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput run (3)")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="use the redis-server already on 127.0.0.1:PORT (it is flushed!)",
    )
    parser.add_argument("--compact", action="store_true", help="JSON on one line")
    parser.set_defaults(run=run)
