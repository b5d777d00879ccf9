"""CPU µs per decode: trapgate's SNMP fast path against pysnmp's decoder.

Run from the repository root: `python tests/unit/snmp/measure_snmp_decode.py`.
Times are process CPU time, the minimum over repeats, so other load on the
machine inflates them less. Not collected by pytest.
"""

from __future__ import annotations

import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[3])]

from pyasn1.codec.ber import decoder  # noqa: E402
from pysnmp.proto.api import v2c  # noqa: E402
from snmp_reference import ADDRESS, DOMAIN, V3Pair, encode_v2c, notification_varbinds  # noqa: E402

from formats.snmp import SnmpConfig, SnmpReceiver, UsmUser  # noqa: E402


def cpu_us(call: Callable[[], Any], number: int, repeat: int) -> float:
    """Minimum CPU time of one call, in µs."""
    return min(timeit.repeat(call, number=number, repeat=repeat, timer=time.process_time)) / number * 1e6


def main() -> None:
    """Print the four figures: ours and pysnmp's, v2c and v3 authPriv."""
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
    peer = ("127.0.0.1", 5000)
    ours = SnmpReceiver(SnmpConfig(users=(user,)), started_at=0.0)
    spec = v2c.Message()
    mp = pair.receiver.message_processing_subsystems[3]

    def pysnmp_v2c() -> Any:
        msg, _ = decoder.decode(v2, asn1Spec=spec)
        pdu = v2c.apiMessage.get_pdu(msg)
        return [(str(oid), value.prettyPrint()) for oid, value in v2c.apiPDU.get_varbinds(pdu)]

    def pysnmp_v3() -> Any:
        pdu = mp.prepare_data_elements(pair.receiver, DOMAIN, ADDRESS, v3)[7]
        return [(str(oid), value.prettyPrint()) for oid, value in v2c.apiPDU.get_varbinds(pdu)]

    print(f"6-varbind traps: v2c {len(v2)} B, v3 authPriv SHA/AES-128 {len(v3)} B")
    print(f"trapgate SnmpReceiver.handle  v2c {cpu_us(lambda: ours.handle(v2, peer, 1.0), 2000, 30):7.1f} µs")
    print(f"trapgate SnmpReceiver.handle  v3  {cpu_us(lambda: ours.handle(v3, peer, 1.0), 2000, 30):7.1f} µs")
    print(f"pysnmp   decode               v2c {cpu_us(pysnmp_v2c, 200, 10):7.1f} µs")
    print(f"pysnmp   prepare_data_elements v3 {cpu_us(pysnmp_v3, 100, 10):7.1f} µs")


if __name__ == "__main__":
    main()
