"""The UDP receiver's batch receive: the compiled recvmmsg path against its Python twin."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline import RawItem
from gateway.receivers import udp

compiled = udp.recv_batch_compiled


def _pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.setblocking(False)
    sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.bind((host, 0))
    return receiver, sender


@pytest.fixture(params=[(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")], ids=["ipv4", "ipv6"])
def sockets(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    family, host = request.param
    try:
        receiver, sender = _pair(family, host)
    except OSError:
        pytest.skip(f"no {host} here")
    yield receiver, sender
    receiver.close()
    sender.close()


def drained(receive: str, receiver: socket.socket, max_msgs: int, max_size: int) -> list[RawItem]:
    """Everything waiting on `receiver`, read `max_msgs` at a time by the named path."""
    items: list[RawItem] = []
    while True:
        if receive == "compiled":
            assert compiled is not None
            got, _ = compiled(receiver.fileno(), max_msgs, max_size, 1.5, items)
        else:
            got, _ = udp.recv_batch_pure(receiver, max_msgs, max_size, 1.5, items)
        if not got:
            return items


needs_compiled = pytest.mark.skipif(compiled is None, reason="the _recvmmsg module is not built")


def test_the_compiled_path_is_loaded_where_a_compiler_was_there_at_install() -> None:
    if os.environ.get("TRAPGATE_PURE"):
        assert compiled is None
    elif shutil.which("cc") or shutil.which("gcc"):
        assert compiled is not None, "gateway/receivers/_recvmmsg was not built (pip install . builds it)"


@needs_compiled
@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=2048), min_size=1, max_size=40), st.integers(1, 16),
       st.integers(1, 4096))
def test_recvmmsg_gives_what_recvfrom_gives(payloads: list[bytes], max_msgs: int, max_size: int) -> None:
    receiver, sender = _pair(socket.AF_INET, "127.0.0.1")
    try:
        where = receiver.getsockname()
        for p in payloads:
            sender.sendto(p, where)
        by_c = drained("compiled", receiver, max_msgs, max_size)
        for p in payloads:
            sender.sendto(p, where)
        by_python = drained("pure", receiver, max_msgs, max_size)
    finally:
        receiver.close()
        sender.close()
    assert by_c == by_python
    assert [data for data, _, _ in by_c] == [p[:max_size] for p in payloads]


@needs_compiled
def test_both_paths_give_the_same_peer_and_time_for_ipv4_and_ipv6(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    receiver, sender = sockets
    where = receiver.getsockname()
    sender.sendto(b"<14>hello", where)
    (c_item,) = drained("compiled", receiver, 8, 65535)
    sender.sendto(b"<14>hello", where)
    (py_item,) = drained("pure", receiver, 8, 65535)
    assert c_item == py_item
    assert c_item[1][:2] == sender.getsockname()[:2] and c_item[2] == 1.5


@needs_compiled
def test_the_kernel_drop_counter_comes_with_the_datagrams() -> None:
    receiver, sender = _pair(socket.AF_INET, "127.0.0.1")
    try:
        receiver.setsockopt(socket.SOL_SOCKET, udp.SO_RXQ_OVFL, 1)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny buffer overflows
        for _ in range(200):
            sender.sendto(b"x" * 1000, receiver.getsockname())
        assert compiled is not None
        drained("compiled", receiver, 64, 2048)  # queued before the drops: they carry no count
        sender.sendto(b"after", receiver.getsockname())
        items: list[RawItem] = []
        got, drops = compiled(receiver.fileno(), 64, 2048, 0.0, items)
        assert got == 1 and drops > 0 and drops == udp.kernel_drops(receiver)
    finally:
        receiver.close()
        sender.close()


def test_arguments_out_of_range_are_refused() -> None:
    if compiled is None:
        pytest.skip("the _recvmmsg module is not built")
    with pytest.raises(ValueError):
        compiled(0, 0, 10, 0.0, [])
    with pytest.raises(ValueError):
        compiled(0, 10_000, 10, 0.0, [])
