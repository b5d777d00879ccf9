"""bench.netinfo: /proc/net/udp and `ss -m` parsing, and live socket lookup."""

from __future__ import annotations

import socket

from bench.netinfo import effective_rcvbuf, parse_proc_net_udp, parse_ss_rcvbuf, udp_socket_stats

PROC_NET_UDP = """\
sl local_address rem_address st tx_queue rx_queue tr tm->when retrnsmt uid timeout inode ref pointer drops
9034: 0100007F:3C9A 00000000:0000 07 00000000:00000C00 00:00000000 00000000 0 0 13364 2 0000000000000000 17
120: 00000000:0202 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 13365 2 0000000000000000 0
"""


def test_proc_net_udp_gives_queue_and_drops_of_the_bound_socket() -> None:
    stats = parse_proc_net_udp(PROC_NET_UDP, 15514)
    assert stats is not None
    assert (stats.address, stats.rx_queue_bytes, stats.drops) == ("127.0.0.1", 0xC00, 17)


def test_proc_net_udp_matches_wildcard_bind_and_misses_other_ports() -> None:
    wildcard = parse_proc_net_udp(PROC_NET_UDP, 514)
    assert wildcard is not None and wildcard.address == "0.0.0.0"
    assert parse_proc_net_udp(PROC_NET_UDP, 9999) is None
    assert parse_proc_net_udp(PROC_NET_UDP, 15514, "127.0.0.2") is None


def test_ss_rcvbuf_is_the_rb_field_of_skmem() -> None:
    line = "UNCONN 0 0 127.0.0.1:15514 0.0.0.0:*\n\t skmem:(r0,rb67108864,t0,tb212992,f0,w0,o0,bl0,d0)\n"
    assert parse_ss_rcvbuf(line) == 67108864
    assert parse_ss_rcvbuf("") is None


def test_live_socket_is_found_with_its_buffer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        stats = udp_socket_stats(port)
        assert stats is not None and stats.drops == 0
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert effective_rcvbuf(port) in (granted, None)
