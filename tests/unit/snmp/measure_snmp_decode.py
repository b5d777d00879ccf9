"""CPU µs per notification: trapgate's `SnmpReceiver.handle` against pysnmp.

Run from the repository root: `python tests/unit/snmp/measure_snmp_decode.py`
(`--quick` skips pysnmp). Times are process CPU time per call; each line
gives the minimum and the median over the repeats, since other load on the
machine inflates single repeats. Three loads per version:

* fixed: one 6-varbind trap (built by pysnmp) decoded again and again, the
  best case for every cache;
* bench: the `python -m bench snmp` linkDown trap, 8 varbinds, each datagram
  new: its sequence varbind (and for v3 msgID, salt, ciphertext) never seen
  before, the other seven as a device repeats them;
* varied: as bench, and sysUpTime and ifIndex change too, so three of the
  eight varbinds are new in every datagram.

Not collected by pytest.
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[3])]

from pyasn1.codec.ber import decoder  # noqa: E402
from pysnmp.proto.api import v2c  # noqa: E402
from snmp_reference import ADDRESS, DOMAIN, V3Pair, encode_v2c, notification_varbinds  # noqa: E402

from bench.snmpload import V3Identity, scoped_pdu_template, v2c_template  # noqa: E402
from formats.snmp import SnmpConfig, SnmpReceiver, UsmUser  # noqa: E402
from formats.snmp._ber import OCTET_STRING, tlv  # noqa: E402
from formats.snmp._message import FLAG_AUTH, FLAG_PRIV, encode_v3  # noqa: E402
from formats.snmp._usm import Usm  # noqa: E402

NUMBER, REPEAT = 1000, 25
WARM = 1000
PEER = ("127.0.0.1", 5000)


def cpu_us(call: Callable[[], Any], number: int, repeat: int) -> tuple[float, float]:
    """(minimum, median) CPU time of one call over `repeat` runs of `number`, in µs."""
    runs = timeit.repeat(call, number=number, repeat=repeat, timer=time.process_time)
    return min(runs) / number * 1e6, statistics.median(runs) / number * 1e6


def _vary(datagram: bytes, seq: int) -> bytes:
    # sysUpTime 123456 (43 03 01 e2 40) and the ifIndex value 3 (02 01 03,
    # then the next binding's 30) get same-length values that change with seq.
    ticks = (0x010000 + seq * 7).to_bytes(3, "big")
    datagram = datagram.replace(b"\x43\x03\x01\xe2\x40", b"\x43\x03" + ticks)
    return datagram.replace(b"\x02\x01\x03\x30", bytes((2, 1, 1 + seq % 100, 0x30)))


def _v2c_datagrams(vary: bool) -> Iterator[bytes]:
    template = v2c_template("public")
    for seq in range(WARM + NUMBER * REPEAT):
        yield _vary(template % seq, seq) if vary else template % seq


def _v3_datagrams(identity: V3Identity, user: UsmUser, vary: bool) -> Iterator[bytes]:
    # As bench.snmpload.V3Encoder: new msgID and salt per datagram, engine
    # time one second per 1000 datagrams; the plaintext varied or not.
    usm = Usm([user], identity.engine_id, identity.boots, 0.0, salt=1)
    keys = usm.keys_for(user, identity.engine_id)
    template = scoped_pdu_template(identity.engine_id, b"d", 0x10000000)
    for seq in range(WARM + NUMBER * REPEAT):
        plaintext = _vary(template % seq, seq) if vary else template % seq
        time = 0x1000 + seq // 1000
        ciphertext, salt = usm.encrypt(keys, plaintext, identity.boots, time)
        whole, offset = encode_v3(
            0x10000000 + seq, 65507, FLAG_AUTH | FLAG_PRIV, identity.engine_id, identity.boots, time,
            identity.user.encode(), keys.digest_length, salt, tlv(OCTET_STRING, ciphertext),
        )  # fmt: skip
        yield Usm.sign(keys, whole, offset)


def _each_once(receiver: SnmpReceiver, datagrams: Iterator[bytes]) -> Callable[[], Any]:
    # Every call handles a datagram the receiver has not seen; the first
    # WARM fill the caches as a running gateway's would be.
    pool = iter(list(datagrams))
    handle = receiver.handle
    for _ in range(WARM):
        handle(next(pool), PEER, 1.0)
    return lambda: handle(next(pool), PEER, 1.0)


def main() -> None:
    """Print trapgate's figures for each load, and pysnmp's for the fixed one."""
    rest = [
        ("1.3.6.1.2.1.2.2.1.1.3", v2c.Integer32(3)),
        ("1.3.6.1.2.1.2.2.1.2.3", v2c.OctetString(b"GigabitEthernet0/3")),
        ("1.3.6.1.2.1.2.2.1.7.3", v2c.Integer32(1)),
        ("1.3.6.1.2.1.2.2.1.8.3", v2c.Integer32(2)),
    ]
    varbinds = notification_varbinds(123456, "1.3.6.1.6.3.1.1.5.3", rest)
    v2 = encode_v2c(b"public", False, 12345678, varbinds)
    user = UsmUser("alice", "SHA", "authpass1", "AES", "privpass1")
    pair = V3Pair([user])
    v3 = pair.encode_trap(user, 12345678, varbinds)
    ours = SnmpReceiver(SnmpConfig(users=(user,)), started_at=0.0)

    identity = V3Identity()
    bench_user = UsmUser(
        identity.user, identity.auth, identity.auth_passphrase, identity.priv, identity.priv_passphrase
    )

    def receiver() -> SnmpReceiver:
        return SnmpReceiver(SnmpConfig(users=(bench_user,), trap_time_window=False))

    print(f"6-varbind traps: v2c {len(v2)} B, v3 authPriv SHA/AES-128 {len(v3)} B; bench traps 8 varbinds")
    print(f"{'':38s} {'min':>7s} {'median':>7s} µs")
    rows: list[tuple[str, Callable[[], Callable[[], Any]], int, int]] = [
        ("trapgate handle  v2c fixed", lambda: lambda: ours.handle(v2, PEER, 1.0), NUMBER, REPEAT),
        ("trapgate handle  v2c bench", lambda: _each_once(receiver(), _v2c_datagrams(False)), NUMBER, REPEAT),
        ("trapgate handle  v2c varied", lambda: _each_once(receiver(), _v2c_datagrams(True)), NUMBER, REPEAT),
        ("trapgate handle  v3  fixed", lambda: lambda: ours.handle(v3, PEER, 1.0), NUMBER, REPEAT),
        (
            "trapgate handle  v3  bench",
            lambda: _each_once(receiver(), _v3_datagrams(identity, bench_user, False)),
            NUMBER,
            REPEAT,
        ),
        (
            "trapgate handle  v3  varied",
            lambda: _each_once(receiver(), _v3_datagrams(identity, bench_user, True)),
            NUMBER,
            REPEAT,
        ),
    ]
    if "--quick" not in sys.argv:
        spec = v2c.Message()
        mp = pair.receiver.message_processing_subsystems[3]

        def pysnmp_v2c() -> Any:
            msg, _ = decoder.decode(v2, asn1Spec=spec)
            pdu = v2c.apiMessage.get_pdu(msg)
            return [(str(oid), value.prettyPrint()) for oid, value in v2c.apiPDU.get_varbinds(pdu)]

        def pysnmp_v3() -> Any:
            pdu = mp.prepare_data_elements(pair.receiver, DOMAIN, ADDRESS, v3)[7]
            return [(str(oid), value.prettyPrint()) for oid, value in v2c.apiPDU.get_varbinds(pdu)]

        rows += [
            ("pysnmp   decode v2c fixed", lambda: pysnmp_v2c, 200, 10),
            ("pysnmp   prepare_data_elements v3 fixed", lambda: pysnmp_v3, 100, 10),
        ]
    for name, make, number, repeat in rows:
        least, median = cpu_us(make(), number, repeat)
        print(f"{name:38s} {least:7.1f} {median:7.1f}")


if __name__ == "__main__":
    main()
