"""SNMP notifications, v1/v2c/v3, decoded by trapgate's own BER and USM code.

`SnmpReceiver` is the full sans-IO receiver (replies to informs, engine
discovery, USM); `SnmpParser`, registered as ``snmp``, parses v1/v2c
datagrams without replies. pysnmp is the reference the tests compare with,
never a dependency of this package.
"""

from formats._base import register
from formats.snmp._errors import AccessError, BerError, DiscoveryError, SnmpError
from formats.snmp._receiver import DEFAULT_ENGINE_ID, SnmpConfig, SnmpParser, SnmpReceiver
from formats.snmp._usm import AUTH_PROTOCOLS, PRIV_PROTOCOLS, UsmUser

__all__ = [
    "AUTH_PROTOCOLS",
    "DEFAULT_ENGINE_ID",
    "PRIV_PROTOCOLS",
    "AccessError",
    "BerError",
    "DiscoveryError",
    "SnmpConfig",
    "SnmpError",
    "SnmpParser",
    "SnmpReceiver",
    "UsmUser",
]

register(SnmpParser())
