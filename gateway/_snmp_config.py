"""From a `[receivers.NAME]` table of type ``snmp`` to the sans-IO `SnmpConfig`."""

from __future__ import annotations

import ipaddress

from formats.snmp import AUTH_PROTOCOLS, PRIV_PROTOCOLS, SnmpConfig, UsmUser
from gateway.config import ReceiverConfig, SnmpUserConfig
from gateway.errors import ConfigError

_ENGINE_PREFIX = b"\x80\x00\x00\x00\x04"  # enterprise 0, format 4: text


def default_engine_id(node: str) -> bytes:
    """A stable engine id for `node`: RFC 3411 text format, at most 32 octets."""
    return (_ENGINE_PREFIX + b"trapgate:" + node.encode())[:32]


def _hex(key: str, value: str) -> bytes:
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ConfigError(key, f"{value!r} is not hexadecimal") from None


def _user(key: str, u: SnmpUserConfig) -> UsmUser:
    if u.auth and u.auth.upper() not in AUTH_PROTOCOLS and u.auth.upper() not in ("SHA1", "SHA-1"):
        raise ConfigError(f"{key}.auth", f"{u.auth!r} is not one of {', '.join(AUTH_PROTOCOLS)}")
    if u.priv and u.priv.upper() not in PRIV_PROTOCOLS and u.priv.upper() not in ("AES-128", "AES128"):
        raise ConfigError(f"{key}.priv", f"{u.priv!r} is not one of {', '.join(PRIV_PROTOCOLS)}")
    for i, net in enumerate(u.networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"{key}.networks[{i}]", f"{net!r} is not a network") from None
    try:
        return UsmUser(
            name=u.name,
            auth=u.auth or None,
            auth_passphrase=u.auth_passphrase,
            priv=u.priv or None,
            priv_passphrase=u.priv_passphrase,
            engine_ids=frozenset(_hex(f"{key}.engine_ids[{i}]", e) for i, e in enumerate(u.engine_ids)),
            networks=u.networks,
        )
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def snmp_config(name: str, r: ReceiverConfig, node: str) -> SnmpConfig:
    """The `SnmpConfig` of receiver `name`; a bad value is a `ConfigError`."""
    key = f"receivers.{name}"
    users = tuple(_user(f"{key}.users[{i}]", u) for i, u in enumerate(r.users))
    engine_id = _hex(f"{key}.engine_id", r.engine_id) if r.engine_id else default_engine_id(node)
    try:
        return SnmpConfig(
            communities=frozenset(r.communities),
            users=users,
            engine_id=engine_id,
            source_order=r.source_order,
            engine_sources={k.lower().removeprefix("0x"): v for k, v in r.engine_sources.items()},
            trap_time_window=r.trap_time_window,
        )
    except ValueError as exc:
        field = "engine_id" if str(exc).startswith("engine_id") else "source_order"
        raise ConfigError(f"{key}.{field}", str(exc)) from None
