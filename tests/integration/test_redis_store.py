"""RedisStore against real redis-server processes: the MemoryStore contract, HA primitives, errors.

The contract tests run against both stores with the real clock, to show that
RedisStore (expiring by the server's clock) answers like MemoryStore.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from dedup import Deduplicator, FencedError, MemoryStore, Mode, Store, StoreError
from dedup.redis import RedisSettings, RedisStore
from formats import Event
from tests.redis_servers import HOST, RedisClusterServers, RedisServer, require_redis_server, write_tls_files

pytestmark = pytest.mark.integration
EXACT, SUPPRESS = Mode.EXACT, Mode.SUPPRESS
Body = Callable[[Store], Coroutine[Any, Any, None]]
RBody = Callable[[RedisStore], Coroutine[Any, Any, None]]
WithStore = Callable[[Body], None]
Use = Callable[[RBody], None]
# Commands the claim script calls, and the handshake of the client that reads the stats.
CLAIM_SCRIPT_COMMANDS = {"hincrby", "hget", "hset", "time", "get", "pexpire", "pttl", "set", "dbsize", "info",
                         "hello"}


def fp(i: int) -> str:
    return f"{i:016x}"


X, Y = fp(0xA1), fp(0xB2)


def ev(identity: tuple[object, ...]) -> Event:
    return Event("syslog", ("10.0.0.1", 514), 0.0, {}, b"raw", identity)  # type: ignore[arg-type]


async def claim(store: Store, node: str, fps: list[str], mode: Mode = EXACT,
                window: float = 30.0) -> tuple[list[str], list[bool]]:
    """Claim through `store`; the ids come back without their window tag (``fingerprint-k``)."""
    ids, won = await store.claim(node, fps, mode, window, time.time())
    return bare(ids), won


def bare(ids: list[str]) -> list[str]:
    """Ids without their window tag, to compare occurrences: ``fingerprint-k``."""
    return [f"{fp}-{k}" for fp, _, k in (i.split("-") for i in ids)]


def tag_of(event_id: str) -> str:
    return event_id.split("-")[1]


T = "1"  # the window tag of ids a test makes up (a window opened by count_ids or claim_ids takes it)


def run(settings: RedisSettings, body: RBody) -> None:
    async def main() -> None:
        store = RedisStore(settings)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer(tmp_path_factory.mktemp("redis")) as s:
        yield s


@pytest.fixture
def primary(server: RedisServer) -> RedisServer:
    """The module's server, emptied."""
    with server.client() as c:
        c.flushall()
        c.script_flush()
    return server


@pytest.fixture
def use(primary: RedisServer) -> Use:
    return lambda body: run(RedisSettings(port=primary.port), body)


@pytest.fixture(params=["memory", "redis"])
def with_store(request: pytest.FixtureRequest) -> WithStore:
    """Runs a test body with a fresh store of either kind."""
    if request.param == "memory":
        return lambda body: asyncio.run(body(MemoryStore()))
    port = request.getfixturevalue("primary").port

    def use_redis(body: Body) -> None:
        run(RedisSettings(port=port), body)

    return use_redis


# -- the MemoryStore contract -------------------------------------------------


def test_exact_mode_forwards_every_copy_with_increasing_occurrence(with_store: WithStore) -> None:
    async def body(store: Store) -> None:
        out = await Deduplicator(store).decide([ev(("x",)), ev(("x",)), ev(("x",)), ev(("y",))])
        assert out.forward == [True] * 4
        assert [i.split("-")[2] for i in out.ids] == ["1", "2", "3", "1"]

    with_store(body)


def test_exact_mode_two_nodes_sharing_a_store_forward_each_occurrence_once(
    with_store: WithStore,
) -> None:
    async def body(store: Store) -> None:
        a, b = Deduplicator(store, node="a"), Deduplicator(store, node="b")
        assert (await a.decide([ev(("x",))] * 3)).forward == [True, True, True]
        # node B lost one copy: its two copies are occurrences 1 and 2, both taken.
        assert (await b.decide([ev(("x",))] * 2)).forward == [False, False]

    with_store(body)


def test_exact_mode_node_that_saw_more_copies_forwards_the_extra_ones(with_store: WithStore) -> None:
    async def body(store: Store) -> None:
        assert await claim(store, "a", [X, X]) == ([f"{X}-1", f"{X}-2"], [True, True])
        ids, won = await claim(store, "b", [X, Y, X, X, X])
        assert ids == [f"{X}-1", f"{Y}-1", f"{X}-2", f"{X}-3", f"{X}-4"]
        assert won == [False, True, False, True, True]

    with_store(body)


def test_exact_mode_window_restarts_occurrences_after_w(with_store: WithStore) -> None:
    async def body(store: Store) -> None:
        assert (await claim(store, "n", [X, X], window=0.3))[0] == [f"{X}-1", f"{X}-2"]
        await asyncio.sleep(0.4)
        assert await claim(store, "n", [X], window=0.3) == ([f"{X}-1"], [True])

    with_store(body)


def test_suppress_mode_forwards_one_per_window(with_store: WithStore) -> None:
    async def body(store: Store) -> None:
        assert (await claim(store, "n", [X, X, Y], SUPPRESS, 0.5))[1] == [True, False, True]
        await asyncio.sleep(0.1)
        assert await claim(store, "other", [X], SUPPRESS, 0.5) == ([f"{X}-1"], [False])
        await asyncio.sleep(0.5)
        assert await claim(store, "n", [X], SUPPRESS, 0.5) == ([f"{X}-1"], [True])

    with_store(body)


def test_empty_batch_asks_nothing(with_store: WithStore) -> None:
    async def body(store: Store) -> None:
        before = store.stats()
        assert await claim(store, "n", []) == ([], [])
        assert store.stats() == before

    with_store(body)


def test_expired_claim_behind_a_longer_lived_one_is_claimable(with_store: WithStore) -> None:
    async def body(store: Store) -> None:
        await claim(store, "n", [X], EXACT, 100.0)
        await claim(store, "n", [Y], SUPPRESS, 0.2)
        await asyncio.sleep(0.3)
        assert await claim(store, "n", [Y], SUPPRESS, 0.2) == ([f"{Y}-1"], [True])
        assert await claim(store, "m", [X], SUPPRESS, 0.2) == ([f"{X}-1"], [False])

    with_store(body)


def test_claim_of_a_later_copy_expires_when_the_nodes_window_closes(
    with_store: WithStore,
) -> None:
    async def body(store: Store) -> None:
        await claim(store, "a", [X], window=0.8)
        await asyncio.sleep(0.2)
        assert await claim(store, "a", [X], window=0.8) == ([f"{X}-2"], [True])
        await asyncio.sleep(0.7)  # a's window (and so X-2's claim) closed; b's is open
        assert await claim(store, "b", [X, X], window=0.8) == ([f"{X}-1", f"{X}-2"], [True, True])

    with_store(body)


def test_redis_store_answers_like_memory_store_on_random_batches(use: Use) -> None:
    rng = random.Random(4)
    memory = MemoryStore()

    async def body(store: RedisStore) -> None:
        for _ in range(200):
            node, mode = rng.choice("abc"), rng.choice([EXACT, EXACT, SUPPRESS])
            batch = [fp(rng.randrange(12)) for _ in range(rng.randrange(1, 40))]
            ids, won = memory.claim_now(node, batch, mode, 100.0, time.time())
            assert await claim(store, node, batch, mode, 100.0) == (bare(ids), won)

    use(body)


def test_fingerprint_with_a_newline_is_refused(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        with pytest.raises(ValueError):
            await claim(store, "a", [X, "bad\nfp"])

    use(body)


# -- Redis specifics ----------------------------------------------------------


def test_a_batch_is_one_evalsha_and_keys_are_tagged_prefixed_and_expiring(
    primary: RedisServer, use: Use
) -> None:
    batch = [fp(i % 300) for i in range(1024)]

    async def body(store: RedisStore) -> None:
        await claim(store, "warm", [fp(0xFFFF)])  # loads the script
        before = primary.command_calls()
        ids, won = await claim(store, "a", batch, window=5.0)
        after = primary.command_calls()
        assert won == [True] * 1024 and ids[300] == f"{fp(0)}-2"
        changed = {c for c in after if after[c] != before.get(c, 0)}
        assert after["evalsha"] - before["evalsha"] == 1
        assert changed - CLAIM_SCRIPT_COMMANDS == {"evalsha"}
        assert store.stats()["entries"] == 3 + 300 + 1024

    use(body)
    with primary.client() as c:
        keys = [k.decode() for k in c.scan_iter(count=1000) if k != b"tg:{pair}epoch"]
        assert len(keys) == 2 + 300 + 1024
        for key in keys:
            assert re.fullmatch(r"tg:\{[0-9a-f]{16}\}(w|[0-9a-f]+-\d+)", key), key
            # A window lives 5 s; a claim lives one window past its window's end.
            limit = 5000 if key.endswith("w") else 10_000
            assert 0 < c.pttl(key) <= (60_000 if fp(0xFFFF) in key else limit), key


def test_keys_expire_with_the_window_and_a_custom_prefix_is_used(primary: RedisServer) -> None:
    tags: list[str] = []

    async def body(store: RedisStore) -> None:
        ids, _ = await store.claim("a", [X, Y, X], EXACT, 0.2, time.time())
        await store.mark_forwarded(ids[:1])
        tags.append(tag_of(ids[0]))

    run(RedisSettings(port=primary.port, prefix="site7:"), body)
    t = tags[0]
    with primary.client() as c:
        assert sorted(k.decode() for k in c.scan_iter()) == sorted(
            [f"site7:{{{X}}}w", f"site7:{{{Y}}}w", f"site7:{{{X}}}{t}-1", f"site7:{{{X}}}{t}-2",
             f"site7:{{{Y}}}{t}-1", "site7:{pair}epoch"])
        time.sleep(0.5)  # the windows closed at 0.2 s, their claims a window later
        assert [k.decode() for k in c.scan_iter()] == ["site7:{pair}epoch"]


def test_prefix_with_a_brace_is_refused() -> None:
    with pytest.raises(ValueError):
        RedisSettings(prefix="tg{")


def test_forwarded_markers_round_trip_in_one_call_each_and_expire_with_the_claim(
    primary: RedisServer, use: Use
) -> None:
    async def body(store: RedisStore) -> None:
        ids, _ = await store.claim("a", [X, X, Y], EXACT, 0.5, time.time())
        await store.forwarded(ids)  # loads the scripts
        await store.mark_forwarded([f"{fp(9)}-{T}-1"])
        await store.mark_forwarded([])
        before = primary.command_calls()
        await store.mark_forwarded([*ids[:2], f"{fp(7)}-{T}-3"], window=5.0)
        marked = await store.forwarded([*ids, f"{fp(7)}-{T}-3", f"{fp(7)}-{T}-4"])
        assert marked == [True, True, False, True, False]
        after = primary.command_calls()
        assert after["evalsha"] - before["evalsha"] == 2
        with primary.client() as c:
            claim_key = f"tg:{{{X}}}{tag_of(ids[0])}-1"
            assert c.get(claim_key) == b"0" and 500 < c.pttl(claim_key) <= 1000  # a window past its window
            assert c.pttl(f"tg:{{{fp(7)}}}{T}-3f") > 4000  # no claim: a marker key with the fallback window
        await asyncio.sleep(1.1)
        assert await store.forwarded(ids) == [False, False, False]

    use(body)


def test_claim_ids_claims_given_ids_and_numbers_the_nodes_next_copies_after_them(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        (x1,), _ = await store.claim("a", [X], EXACT, 30.0, time.time())
        t = tag_of(x1)
        won = await store.claim_ids([x1, f"{X}-{t}-3", f"{Y}-{T}-2"], 30.0, time.time())
        assert won == [False, True, True]
        # Without a node no counter moves and no window opens; with one, its next copies
        # come after the given ids (in the open window, or in the ids' window, opened).
        assert await claim(store, "b", [Y]) == ([f"{Y}-1"], [True])
        (y1,), _ = await store.claim("c", [Y], EXACT, 30.0, time.time())
        bumped = [f"{X}-{t}-5", f"{Y}-{tag_of(y1)}-4", f"{X}-{t}-2", f"{X}-{T}-9"]  # the last: another window
        assert await store.claim_ids(bumped, 30.0, time.time(), node="a") == [True] * 4
        assert await claim(store, "a", [X, Y]) == ([f"{X}-6", f"{Y}-5"], [True, True])
        with pytest.raises(StoreError):
            await store.claim_ids(["nodash"], 30.0, time.time())

    use(body)


def test_a_batch_claimed_with_a_seq_is_forwarded_once_its_epochs_watermark_reaches_it(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        top = (1 << 20) - 1
        store.epoch = 1
        ids_1, _ = await store.claim("a", [X], EXACT, 30.0, time.time(), seq=1)
        ids_2, _ = await store.claim("a", [Y], EXACT, 30.0, time.time(), seq=2)
        # a restarted as master at epoch 2: its watermark never covers what epoch 1 claimed.
        store.epoch = 2
        ids_r, _ = await store.claim("a", [fp(0xD4)], EXACT, 30.0, time.time(), seq=1)
        store.epoch = top
        ids_b, _ = await store.claim("b", [fp(0xC3)], EXACT, 30.0, time.time(), seq=(1 << 33) - 1)
        everything = ids_1 + ids_2 + ids_b + ids_r
        assert await store.forwarded(everything) == [False, False, False, False]
        assert await store.progress() is None
        store.epoch = 1
        with pytest.raises(FencedError) as fenced:  # epoch 1 is over on this store
            await store.forwarded_through(1, ids_1[-1])
        assert fenced.value.epoch == top and fenced.value.reason == "fenced"
        async with Redis(port=store.settings.port) as c:
            await c.set("tg:{pair}epoch", 1)  # as if the later epochs had not come yet
        await store.forwarded_through(1, ids_1[-1])
        assert await store.forwarded(everything) == [True, False, False, False]
        assert await store.progress() == ids_1[-1]
        store.epoch = 2
        await store.forwarded_through(1, ids_r[-1])
        assert await store.forwarded(everything) == [True, False, False, True]
        store.epoch = top
        await store.forwarded_through((1 << 33) - 2, ids_b[-1])
        assert await store.forwarded(everything) == [True, False, False, True]  # one seq short
        await store.forwarded_through((1 << 33) - 1, ids_b[-1])
        await store.forwarded_through(5, ids_1[-1])  # a watermark never goes down
        await store.mark_forwarded(ids_2)  # the id by id way marks a seq claim too
        assert await store.forwarded(everything) == [True, True, True, True]
        assert await store.progress() == ids_b[-1]
        # Epochs idle for longer than asked are forgotten, the others kept.
        assert await store.prune_epochs(3600) == 0
        assert await store.prune_epochs(-1) == 3
        assert await store.forwarded(everything) == [False, True, False, False]
        store.epoch = 1 << 20
        with pytest.raises(ValueError):
            await store.claim("a", [X], EXACT, 30.0, time.time(), seq=1)

    use(body)


def test_both_nodes_number_inside_one_window_opened_by_the_first_copy(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        # a numbers the first occurrence, b 100 ms later; the window is a's, for both.
        assert await claim(store, "a", [X], window=0.6) == ([f"{X}-1"], [True])
        await asyncio.sleep(0.1)
        (first,) = await store.number("b", [X], EXACT, 0.6)
        await asyncio.sleep(0.4)  # a second occurrence, before the window closes for both
        (second,), _ = await store.claim("a", [X], EXACT, 0.6, time.time())
        assert await store.number("b", [X], EXACT, 0.6) == [second]
        await asyncio.sleep(0.15)  # closed for both: the next occurrence is 1 of a new window on both
        (third,) = await store.number("b", [X], EXACT, 0.6)
        assert await store.claim("a", [X], EXACT, 0.6, time.time()) == ([third], [True])
        assert bare([first, second, third]) == [f"{X}-1", f"{X}-2", f"{X}-1"]
        assert tag_of(first) == tag_of(second) != tag_of(third)

    use(body)


def test_every_write_from_a_lower_epoch_is_refused_and_a_higher_one_raises_the_store(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        store.epoch = 4
        await claim(store, "a", [X])
        assert await store.read_epoch() == (4, "")
        store.epoch = 3
        writes = [
            lambda: claim(store, "a", [Y]),
            lambda: store.claim("a", [Y], EXACT, 30.0, time.time(), seq=1),
            lambda: store.number("b", [Y], EXACT, 30.0),
            lambda: store.claim_ids([f"{Y}-{T}-1"], 30.0, time.time()),
            lambda: store.count_ids("a", [f"{Y}-{T}-1"], 30.0),
            lambda: store.take_ids([f"{Y}-{T}-1"], 30.0),
            lambda: store.mark_forwarded([f"{X}-{T}-1"]),
            lambda: store.forwarded_through(1, f"{X}-{T}-1"),
            lambda: store.rescue_add([b"e"]),
        ]
        for write in writes:
            with pytest.raises(FencedError) as err:
                await write()
            assert err.value.epoch == 4
        assert await store.forwarded([f"{X}-{T}-1", f"{Y}-{T}-1"]) == [False, False]  # reads are not fenced
        async with Redis(port=store.settings.port) as c:
            assert await c.exists(f"tg:{{{Y}}}w", f"tg:{{{Y}}}{T}-1", "tg:rescue") == 0  # nothing was written
        store.epoch = 5
        await store.number("b", [Y], EXACT, 30.0)
        assert (await store.read_epoch())[0] == 5

    use(body)


def test_take_ids_takes_what_nobody_forwarded_and_what_a_lower_epoch_left(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        store.epoch = 1
        (forwarded, left, watermarked), _ = await store.claim("a", [X, Y, fp(3)], EXACT, 30.0, time.time())
        await store.mark_forwarded([forwarded])
        store.epoch = 2
        (done,), _ = await store.claim("a", [fp(5)], EXACT, 30.0, time.time(), seq=1)
        (in_flight,), _ = await store.claim("a", [fp(4)], EXACT, 30.0, time.time(), seq=2)
        await store.forwarded_through(1, done)
        store.epoch = 3
        nobody = f"{fp(6)}-{T}-1"
        ids = [forwarded, left, watermarked, in_flight, done, nobody]
        assert await store.take_ids(ids, 30.0) == [0, 1, 1, 1, 0, 1]
        # Taken at epoch 3: the same master asking again gets "taken by me", and nothing is forwarded
        # yet; an id a batch of epoch 3 claimed is "mine" too.
        assert await store.take_ids(ids, 30.0) == [0, 3, 3, 3, 0, 3]
        (batch,), _ = await store.claim("a", [fp(8)], EXACT, 30.0, time.time(), seq=1)
        assert await store.take_ids([batch], 30.0) == [2]
        assert await store.forwarded(ids) == [True, False, False, False, True, False]
        await store.mark_forwarded([left])
        store.epoch = 4
        assert await store.take_ids([left, nobody], 30.0) == [0, 1]

    use(body)


def test_a_mark_waits_for_the_replica_in_the_same_round_trip(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "p") as first, RedisServer(tmp_path / "r", replicaof=first) as second:
        second.wait_replica_link()

        async def body(store: RedisStore) -> None:
            ids, _ = await store.claim("a", [X, Y], EXACT, 30.0, time.time(), seq=1)
            assert await store.forwarded_through(1, ids[-1], replicas=1, wait=2.0) == 1
            assert await store.mark_forwarded(ids, 30.0, replicas=1, wait=2.0) == 1
            with second.client() as c:
                assert c.hget("tg:forwarded", "w:1") == b"1"
                assert c.get(f"tg:{{{X}}}{tag_of(ids[0])}-1") == b"0"
            role = await store.role()
            assert role.role == "master" and role.replicas == 1
            second.stop()
            started = time.monotonic()
            assert await store.mark_forwarded(ids, 30.0, replicas=1, wait=0.2) == 0
            assert time.monotonic() - started < 1.0

        run(RedisSettings(port=first.port), body)


def test_a_claim_waits_for_the_replica_in_the_same_round_trip(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "p") as first, RedisServer(tmp_path / "r", replicaof=first) as second:
        second.wait_replica_link()

        async def body(store: RedisStore) -> None:
            ids, won, acked = await store.claim_replicated("a", [X, Y], EXACT, 30.0, time.time(), seq=1,
                                                           replicas=1, wait=2.0)
            assert won == [True, True] and acked == 1
            with second.client() as c:  # the windows and claims are on the replica already
                assert c.hget(f"tg:{{{X}}}w", "t").decode() == tag_of(ids[0])
                assert c.exists(f"tg:{{{Y}}}{tag_of(ids[1])}-1") == 1
            second.stop()
            started = time.monotonic()
            _, _, acked = await store.claim_replicated("a", [fp(9)], EXACT, 30.0, time.time(), seq=2,
                                                       replicas=1, wait=0.2)
            assert acked == 0 and time.monotonic() - started < 1.0

        run(RedisSettings(port=first.port), body)


def test_count_ids_moves_the_nodes_counters_and_claims_nothing(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        await store.count_ids("a", [f"{X}-{T}-3", f"{Y}-{T}-1"], 30.0)
        ids, won = await store.claim("a", [X, Y], EXACT, 30.0, time.time())
        assert (ids, won) == ([f"{X}-{T}-4", f"{Y}-{T}-2"], [True, True])  # in the windows count_ids opened
        # The counted ids themselves are still free, and the other node's counters did not move.
        assert await store.claim_ids([f"{X}-{T}-3", f"{Y}-{T}-1"], 30.0, time.time()) == [True, True]
        assert await claim(store, "b", [X]) == ([f"{X}-1"], [True])

    use(body)


def test_fresh_is_true_once_per_data_set(primary: RedisServer, use: Use) -> None:
    async def body(store: RedisStore) -> None:
        assert [await store.fresh(), await store.fresh()] == [True, False]
        primary.client().flushall()
        assert await store.fresh()

    use(body)


def test_number_counts_copies_without_claiming_them(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        # A standby numbers its copies; the master's claim of the same ids still wins.
        numbered = await store.number("b", [X, X, Y], EXACT, 30.0)
        assert bare(numbered) == [f"{X}-1", f"{X}-2", f"{Y}-1"]
        assert await store.claim("a", [X, X, Y], EXACT, 30.0, time.time()) == (numbered, [True, True, True])
        assert bare(await store.number("b", [X], EXACT, 30.0)) == [f"{X}-3"]
        assert bare(await store.number("b", [X, X], SUPPRESS, 30.0)) == [f"{X}-1", f"{X}-1"]

    use(body)


def test_promote_replicate_and_epoch(tmp_path: Path) -> None:
    require_redis_server()
    with RedisServer(tmp_path / "p") as p, RedisServer(tmp_path / "r") as r:
        async def body(store: RedisStore) -> None:
            await store.replicate_from("127.0.0.1", p.port)
            r.wait_replica_link()
            await store.promote()
            assert r.info("replication")["role"] == "master"
            assert await store.read_epoch() == (0, "")
            assert [await store.raise_epoch(3, "a"), await store.raise_epoch(2, "b")] == [3, 3]
            assert await store.read_epoch() == (3, "a")
            role = await store.role()
            assert role.role == "master" and role.replicas == 0

        run(RedisSettings(port=r.port), body)


def test_claim_ids_window_expires(primary: RedisServer, use: Use) -> None:
    async def body(store: RedisStore) -> None:
        assert await store.claim_ids([f"{X}-{T}-2"], 0.2, time.time(), node="a") == [True]
        with primary.client() as c:
            assert 0 < c.pttl(f"tg:{{{X}}}w") <= 200 and 0 < c.pttl(f"tg:{{{X}}}{T}-2") <= 200
        await asyncio.sleep(0.3)
        assert await claim(store, "a", [X]) == ([f"{X}-1"], [True])

    use(body)


def test_malformed_event_id_is_a_script_error(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        with pytest.raises(StoreError) as err:
            await store.forwarded(["no-dash-number-"])
        assert err.value.reason == "script"

    use(body)


def test_script_is_reloaded_after_the_server_forgets_it(
    primary: RedisServer, use: Use
) -> None:
    async def body(store: RedisStore) -> None:
        await claim(store, "a", [X])
        with primary.client() as c:
            c.script_flush()
        assert await claim(store, "a", [X]) == ([f"{X}-2"], [True])
        assert store.stats()["script_loads"] == 2

    use(body)


def test_stats_report_keys_and_evictions_seen_by_the_claims(primary: RedisServer) -> None:
    with primary.client() as c:
        c.config_set("maxmemory-policy", "volatile-ttl")
        c.config_set("maxmemory", int(c.info("memory")["used_memory"]) + 1_000_000)
    try:
        async def body(store: RedisStore) -> None:
            for n in range(65):  # evicted_keys is read by the 1st and the 65th claim
                await claim(store, "a", [fp(n * 1000 + i) for i in range(500)])
            stats = store.stats()
            assert stats["evicted"] > 0 and 0 < stats["entries"] < 65 * 1000

        run(RedisSettings(port=primary.port), body)
    finally:
        with primary.client() as c:
            c.config_set("maxmemory", 0)
            c.config_set("maxmemory-policy", "noeviction")


# -- rescue stream ------------------------------------------------------------


def test_rescue_entries_are_added_read_once_and_acknowledged(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        assert await store.rescue_add([b"one", b"two\x00\xff"]) == 2
        got = await store.rescue_read("master-a", count=10)
        assert [payload for _, payload in got] == [b"one", b"two\x00\xff"]
        assert await store.rescue_read("master-a") == []
        assert await store.rescue_ack([i for i, _ in got]) == 2
        assert await store.rescue_reclaim("master-b", min_idle_ms=0) == []

    use(body)


def test_rescue_read_blocks_until_an_entry_arrives(
    primary: RedisServer, use: Use
) -> None:
    async def body(store: RedisStore) -> None:
        assert await store.rescue_read("m", block_ms=100) == []

        async def later() -> None:
            await asyncio.sleep(0.1)
            with primary.client() as c:
                c.xadd("tg:rescue", {b"e": b"late"})

        task = asyncio.create_task(later())
        started = time.monotonic()
        got = await store.rescue_read("m", block_ms=3000)
        await task
        assert [payload for _, payload in got] == [b"late"] and time.monotonic() - started < 2

    use(body)


def test_rescue_entries_of_a_dead_consumer_can_be_reclaimed(use: Use) -> None:
    async def body(store: RedisStore) -> None:
        await store.rescue_add([b"a", b"b"])
        read = await store.rescue_read("crashed-master")
        assert await store.rescue_reclaim("new-master", min_idle_ms=60_000) == []
        await asyncio.sleep(0.05)
        assert await store.rescue_reclaim("new-master", min_idle_ms=10) == read
        assert await store.rescue_ack([i for i, _ in read]) == 2

    use(body)


def test_rescue_stream_refuses_what_does_not_fit_and_never_trims_unread_entries(primary: RedisServer) -> None:
    async def body(store: RedisStore) -> None:
        assert await store.rescue_add([b"first"] + [b"x"] * 39) == 40
        assert await store.rescue_add([b"y"] * 100) == 10
        assert await store.rescue_add([b"z"]) == 0
        got = await store.rescue_read("m", count=100)
        assert len(got) == 50 and got[0][1] == b"first"  # the oldest is still there
        await store.rescue_ack([i for i, _ in got[:5]])
        assert await store.rescue_add([b"z"] * 10) == 5

    run(RedisSettings(port=primary.port, rescue_maxlen=50), body)


# -- replication and promotion -------------------------------------------------


def test_claims_replicate_and_a_promoted_replica_does_not_grant_them_again(tmp_path: Path) -> None:
    claimed: list[str] = []
    with RedisServer(tmp_path) as first, RedisServer(tmp_path, replicaof=first) as second:
        async def on_primary(store: RedisStore) -> None:
            ids, won = await store.claim("a", [X, X, X, Y], EXACT, 30.0, time.time())
            assert won == [True] * 4
            claimed.extend(ids)
            await store.mark_forwarded(ids[:1])
            with first.client() as c:
                assert c.wait(1, 2000) == 1

        async def on_replica(store: RedisStore) -> None:
            assert await store.forwarded(claimed[:2]) == [True, False]
            with pytest.raises(StoreError) as err:
                await claim(store, "b", [X])
            assert err.value.reason == "readonly"

        async def after_promotion(store: RedisStore) -> None:
            assert await claim(store, "b", [X, X, X, Y]) == (
                [f"{X}-1", f"{X}-2", f"{X}-3", f"{Y}-1"], [False] * 4)
            assert await claim(store, "a", [X]) == ([f"{X}-4"], [True])

        run(RedisSettings(port=first.port), on_primary)
        t = tag_of(claimed[0])
        with second.client() as c:
            assert c.exists(f"tg:{{{X}}}{t}-3", f"tg:{{{X}}}w") == 2 and c.get(f"tg:{{{X}}}{t}-1") == b"0"
        run(RedisSettings(port=second.port), on_replica)
        first.kill()
        second.promote()
        run(RedisSettings(port=second.port), after_promotion)


# -- error mapping -------------------------------------------------------------


def test_stopped_server_is_unavailable(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path).start()

    async def body(store: RedisStore) -> None:
        await claim(store, "a", [X])
        srv.stop()
        for call in (claim(store, "a", [X]), store.forwarded([f"{X}-{T}-1"]), store.rescue_add([b"e"]),
                     store.ping()):
            with pytest.raises(StoreError) as err:
                await call
            assert err.value.reason == "unavailable"
        assert store.stats()["errors"] == 4

    run(RedisSettings(port=srv.port, connect_timeout=0.5), body)


def test_credentials_wrong_password_and_acl_refusal_map_to_auth(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="s3cret") as srv:
        with srv.client() as c:
            c.acl_setuser("gw", enabled=True, passwords=["+gwpass"], keys=["tg:*"], commands=["+@all"])
            c.acl_setuser("other", enabled=True, passwords=["+pw"], keys=["elsewhere:*"], commands=["+@all"])

        async def works(store: RedisStore) -> None:
            assert (await claim(store, "a", [X]))[1] == [True]

        async def refused(store: RedisStore) -> None:
            with pytest.raises(StoreError) as err:
                await claim(store, "a", [X])
            assert err.value.reason == "auth"

        run(RedisSettings(port=srv.port, password="s3cret"), works)
        run(RedisSettings(url=f"redis://gw:gwpass@{HOST}:{srv.port}/0"), works)
        run(RedisSettings(port=srv.port, username="gw", password="gwpass"), works)
        run(RedisSettings(port=srv.port, password="wrong"), refused)
        run(RedisSettings(port=srv.port), refused)
        run(RedisSettings(port=srv.port, username="other", password="pw"), refused)


def test_slow_server_is_a_timeout(primary: RedisServer) -> None:
    async def body(store: RedisStore) -> None:
        await claim(store, "a", [X])
        with primary.client() as c:
            c.execute_command("CLIENT", "PAUSE", 1000, "WRITE")
        try:
            with pytest.raises(StoreError) as err:
                await claim(store, "a", [X])
            assert err.value.reason == "timeout"
        finally:
            with primary.client() as c:
                c.execute_command("CLIENT", "UNPAUSE")

    run(RedisSettings(port=primary.port, socket_timeout=0.2), body)


def test_a_failing_script_is_a_script_error(primary: RedisServer, use: Use) -> None:
    with primary.client() as c:
        c.set(f"tg:{{{X}}}w", "not a window")

    async def body(store: RedisStore) -> None:
        with pytest.raises(StoreError) as err:
            await claim(store, "a", [X])
        assert err.value.reason == "script"

    use(body)


# -- TLS and cluster -----------------------------------------------------------


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    with RedisServer(tmp_path, tls=files) as srv:
        async def body(store: RedisStore) -> None:
            assert await claim(store, "a", [X, X]) == ([f"{X}-1", f"{X}-2"], [True, True])

        run(RedisSettings(port=srv.port, tls=True, tls_ca=str(files.ca), tls_cert=str(files.cert),
                          tls_key=str(files.key)), body)
        # As a node's config gives it: a URL (either scheme) and `tls = true`.
        for scheme in ("redis", "rediss"):
            with srv.client() as c:
                c.flushall()
            run(RedisSettings(url=f"{scheme}://{HOST}:{srv.port}", tls=True, tls_ca=str(files.ca),
                              tls_cert=str(files.cert), tls_key=str(files.key)), body)

        def refused(*reasons: str) -> RBody:
            async def body(store: RedisStore) -> None:
                with pytest.raises(StoreError) as err:
                    await claim(store, "a", [X])
                assert err.value.reason in reasons

            return body

        untrusted = RedisSettings(port=srv.port, tls=True, tls_cert=str(files.cert), tls_key=str(files.key))
        run(untrusted, refused("tls"))
        # Without a client certificate the server may reset the connection before its alert is read.
        run(RedisSettings(port=srv.port, tls=True, tls_ca=str(files.ca)), refused("tls", "unavailable"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    require_redis_server()
    with RedisClusterServers(tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


def evalsha_calls(servers: list[RedisServer]) -> list[int]:
    return [s.command_calls().get("evalsha", 0) for s in servers]


def test_cluster_claims_a_batch_spanning_all_masters_with_one_call_per_master(
    cluster: RedisClusterServers,
) -> None:
    fps = [fp(i) for i in range(30)]
    with cluster.servers[0].client() as c:
        owners = {port for lo, hi, (_, port, *_), *_ in c.execute_command("CLUSTER", "SLOTS")
                  for f in fps if lo <= key_slot(f.encode()) <= hi}
    assert owners == {s.port for s in cluster.servers}

    async def body(store: RedisStore) -> None:
        await store.ping()
        await claim(store, "warm", [fp(1000 + i) for i in range(30)])  # loads the script everywhere
        before = evalsha_calls(cluster.servers)
        full, won = await store.claim("a", fps * 3, EXACT, 30.0, time.time())
        ids = bare(full)
        assert evalsha_calls(cluster.servers) == [n + 1 for n in before]
        assert ids == [f"{f}-{k}" for k in (1, 2, 3) for f in fps] and won == [True] * 90
        assert (await claim(store, "b", fps * 2))[1] == [False] * 60
        assert (await claim(store, "b", fps * 2))[1] == [False] * 30 + [True] * 30
        await store.mark_forwarded(full[:30])
        assert await store.forwarded(full[:60]) == [True] * 30 + [False] * 30
        assert await store.rescue_add([b"r1", b"r2"]) == 2
        got = await store.rescue_read("m", block_ms=100)
        assert [p for _, p in got] == [b"r1", b"r2"] and await store.rescue_ack([i for i, _ in got]) == 2
        assert store.stats()["entries"] > 0

    run(RedisSettings(port=cluster.startup[1], cluster=True, prefix="c1:"), body)


def test_an_id_numbered_at_the_end_of_its_window_is_still_known_forwarded_after_it(use: Use) -> None:
    """A standby asks about an id up to a window after numbering it; the window may close meanwhile
    (it opened with the first copy). The claim, and so the mark, outlive the window by a window."""

    async def body(store: RedisStore) -> None:
        await claim(store, "a", [X], window=0.6)
        await asyncio.sleep(0.5)
        (late,), _ = await store.claim("a", [X], EXACT, 0.6, time.time(), seq=1)  # occurrence 2, at the end
        await store.forwarded_through(1, late)
        await asyncio.sleep(0.3)  # the window closed
        assert await store.forwarded([late]) == [True]
        store.epoch = 2
        assert await store.take_ids([late], 0.6) == [0]  # a rescue of it is not forwarded again

    use(body)


def test_a_numbering_repeated_with_its_token_gives_the_same_ids_and_wins_what_it_won(use: Use) -> None:
    """A call whose reply was lost is made again with its token: the copies are not counted twice."""

    async def body(store: RedisStore) -> None:
        first, won = await store.claim("a", [X, X, Y], EXACT, 30.0, time.time(), seq=1, token="t1")
        assert won == [True, True, True]
        again, won_again = await store.claim("a", [X, X, Y], EXACT, 30.0, time.time(), seq=2, token="t1")
        assert (again, won_again) == (first, won)
        assert await store.forwarded_through(2, again[-1]) == 0  # the new seq's watermark covers them
        assert await store.forwarded(first) == [True, True, True]
        # As numbering, after a claim with that token: the same ids again; the next copy is the third.
        assert await store.number("a", [X, X, Y], EXACT, 30.0, token="t1") == first
        assert bare(await store.number("a", [X], EXACT, 30.0, token="t2")) == [f"{X}-3"]
        assert await store.number("a", [X], EXACT, 30.0, token="t2") == await store.number(
            "a", [X], EXACT, 30.0, token="t2")
        # A standby's numbering repeated.
        numbered = await store.number("b", [Y, X], EXACT, 30.0, token="t3")
        assert await store.number("b", [Y, X], EXACT, 30.0, token="t3") == numbered
        assert bare(numbered) == [f"{Y}-1", f"{X}-1"]
        # What another master took meanwhile, a repeat does not win back.
        store.epoch = 2
        (z,), _ = await store.claim("a", [fp(7)], EXACT, 30.0, time.time(), seq=3, token="t4")
        store.epoch = 3
        assert await store.take_ids([z], 30.0) == [1]
        store.epoch = 4
        assert await store.claim("a", [fp(7)], EXACT, 30.0, time.time(), seq=1, token="t4") == ([z], [False])

    use(body)
