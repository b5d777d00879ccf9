"""The syslog sink's messages (original, rewritten, other formats), framing, config keys, reconnects."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from formats import Event, get_parser
from gateway.config import SinkConfig, config_from_dict
from gateway.errors import ConfigError, SinkError
from gateway.sinks import Outgoing
from gateway.sinks.syslog import SyslogOptions, SyslogSink

PEER = ("192.0.2.7", 51400)
ELEMENT = b'[trapgate@32473 id="00ff-1-2" peer="192.0.2.7" port="51400"]'
RECEIVED_AT = 1700000000.25  # 2023-11-14T22:13:20.250Z


def out(raw: bytes, fmt: str = "syslog", **fields: Any) -> Outgoing:
    event = (get_parser("syslog").parse(raw, PEER, RECEIVED_AT) if fmt == "syslog" and raw
             else Event(fmt, PEER, RECEIVED_AT, fields, raw, ()))
    return Outgoing(event, "00ff", "00ff-1-2", b'{"id":"00ff-1-2"}\n')


class Captured(SyslogSink):
    """A sink whose link keeps the messages instead of sending them."""

    def __init__(self, **options: Any) -> None:
        super().__init__("out", SinkConfig("syslog"), SyslogOptions(address="127.0.0.1:1", **options))
        self.sent: list[bytes] = []

        async def keep(messages: list[bytes]) -> None:
            self.sent += messages

        self._link.send = keep  # type: ignore[method-assign]


def messages(o: Outgoing, **options: Any) -> list[bytes]:
    sink = Captured(**options)
    asyncio.run(sink.send([o]))
    return sink.sent


@pytest.mark.parametrize(("raw", "rewritten"), [
    (b"<13>1 2024-05-01T10:00:00Z h app 7 ID1 - hello",
     b"<13>1 2024-05-01T10:00:00Z h app 7 ID1 " + ELEMENT + b" hello"),
    (b'<13>1 - h app - - [a@1 x="1"][b@2 y="\\]"] hi',
     b"<13>1 - h app - - " + ELEMENT + b'[a@1 x="1"][b@2 y="\\]"] hi'),
    (b"<13>1 - h app - - -", b"<13>1 - h app - - " + ELEMENT),  # no MSG
    (b'<13>1 - h app - - [trapgate@32473 id="old-1-1" peer="10.0.0.1" port="514"][a@1 x="1"] relayed',
     b"<13>1 - h app - - " + ELEMENT + b'[a@1 x="1"] relayed'),  # an upstream gateway's element is replaced
    (b"<34>Oct 11 22:14:15 mymachine su[42]: 'su root' failed",
     b"<34>1 2023-11-14T22:13:20.250Z mymachine su 42 - " + ELEMENT + b" 'su root' failed"),
    (b"<13>2024-05-01T10:00:00.5+02:00 host tag: rfc3339 in 3164",
     b"<13>1 2024-05-01T10:00:00.5+02:00 host tag - - " + ELEMENT + b" rfc3339 in 3164"),
    (b"no pri at all", b"<13>1 2023-11-14T22:13:20.250Z 192.0.2.7 - - - " + ELEMENT + b" no pri at all"),
])
def test_rewrite_puts_the_id_and_peer_element_first_and_keeps_the_rest(raw: bytes, rewritten: bytes) -> None:
    assert messages(out(raw), rewrite=True) == [rewritten]
    assert messages(out(raw)) == [raw]


def test_an_event_without_raw_bytes_is_rendered_from_its_fields_even_without_rewrite() -> None:
    restored = out(b"", "syslog", facility=4, severity=3, timestamp="2024-05-01T10:00:00Z", hostname="h",
                   app_name="sshd", procid=None, msgid=None, msg="bad login",
                   structured_data={"a@1": {"x": 'q"', "y": ["1", "2"]}}, protocol="rfc5424")
    assert messages(restored) == [b"<35>1 2024-05-01T10:00:00Z h sshd - - " + ELEMENT
                                  + b'[a@1 x="q\\"" y="1" y="2"] bad login']


def test_header_fields_are_printable_ascii_within_their_lengths() -> None:
    restored = out(b"", "syslog", facility=1, severity=5, hostname="bad host", app_name="é" * 60, msg="m")
    header = messages(restored)[0].split(b" ")
    assert header[2:4] == [b"bad_host", b"_" * 48]


def test_other_formats_are_rfc5424_with_their_json_line_or_are_dropped_and_counted() -> None:
    trap = out(b"", "snmp", trap_oid="1.3.6.1.6.3.1.1.5.3")
    assert messages(trap) == [b"<13>1 2023-11-14T22:13:20.250Z 192.0.2.7 trapgate - snmp " + ELEMENT
                              + b' {"id":"00ff-1-2"}']
    sink = Captured(others="drop")
    asyncio.run(sink.send([trap, out(b"<13>kept")]))
    assert sink.sent == [b"<13>kept"] and sink.counters.dropped == {"not_syslog": 1}


def test_a_message_too_big_for_a_datagram_is_dropped_and_counted() -> None:
    sink = Captured()
    asyncio.run(sink.send([out(b"<13>" + b"x" * 65504), out(b"<13>" + b"x" * 65503)]))
    assert [len(m) for m in sink.sent] == [65507] and sink.counters.dropped == {"too_big": 1}


def test_sd_param_values_are_escaped() -> None:
    o = out(b"<13>1 - h a - - - m")
    odd = o._replace(id='a"b\\c]d')
    assert b'id="a\\"b\\\\c\\]d"' in messages(odd, rewrite=True)[0]


@pytest.mark.parametrize(("table", "key", "problem"), [
    ({}, "sinks.m.address", "is required"),
    ({"address": "nohost"}, "sinks.m.address", "is not host:port"),
    ({"address": "h:514", "transport": "relp"}, "sinks.m.transport", "is not one of udp, tcp, tls"),
    ({"address": "h:514", "framing": "lf"}, "sinks.m.framing", "applies to transport tcp or tls"),
    ({"address": "h:514", "transport": "tcp", "tls_ca": "ca.pem"}, "sinks.m.tls_ca",
     "applies to transport tls"),
    ({"address": "h:514", "others": "json"}, "sinks.m.others", "is not one of rfc5424, drop"),
    ({"address": "h:514", "transport": "tls", "tls_key": "k.pem"}, "sinks.m.tls_key", "needs tls_cert"),
    ({"address": "h:514", "sd_id": "no at sign"}, "sinks.m.sd_id", "is not an SD-ID"),
])
def test_config_keys_out_of_range_are_named(table: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        config_from_dict({"sinks": {"m": {"type": "syslog", **table}}}, ("syslog",))
    assert info.value.key == key


def test_tls_files_that_cannot_be_loaded_are_a_sink_error() -> None:
    options = SyslogOptions(address="127.0.0.1:6514", transport="tls", tls_ca="/nonexistent/ca.pem")
    with pytest.raises(SinkError, match=r"^sink m: cannot load its TLS files"):
        SyslogSink("m", SinkConfig("syslog"), options)


def test_tcp_frames_a_batch_in_one_write_and_reconnects_after_the_receiver_closed() -> None:
    """A receiver that closes after each read: every later send finds the connection gone, opens a
    new one, and the frames arrive whole (octet counting)."""
    received: list[bytes] = []
    connections = 0

    async def main() -> None:
        nonlocal connections

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            received.append(await reader.read(65536))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = SyslogSink("out", SinkConfig("syslog"), SyslogOptions(address=f"127.0.0.1:{port}",
                                                                     transport="tcp"))
        for n in range(3):
            await sink.send([out(b"<13>a %d" % n), out(b"<13>b %d" % n)])
            deadline = time.monotonic() + 5
            while len(received) <= n and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the receiver's FIN reaches the sink before its next send
        await sink.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert received == [b"7 <13>a %d7 <13>b %d" % (n, n) for n in range(3)]
    assert connections == 3


def test_tcp_to_a_closed_port_is_a_sink_error_naming_the_address() -> None:
    from tests.redis_servers import free_port

    port = free_port()
    options = SyslogOptions(address=f"127.0.0.1:{port}", transport="tcp")
    sink = SyslogSink("out", SinkConfig("syslog"), options)
    with pytest.raises(SinkError, match=rf"^cannot connect to 127\.0\.0\.1:{port}: Connection refused"):
        asyncio.run(sink.send([out(b"<13>x")]))
