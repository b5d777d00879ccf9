"""The User-based Security Model (RFC 3414, RFC 7860, RFC 3826) for receiving.

Strategy: a user is configured once by name, protocols and passphrases; its
master keys (RFC 3414 A.2, one megabyte of hashing each) are computed when the
`Usm` is built. Keys localized to an engine id are derived on first sight of
that engine id and kept in a bounded cache, so a trap from any of thousands
of senders works without listing their engine ids. Several users may share a
name: each candidate whose restrictions admit the message is tried and the
one whose digest verifies wins. Everything that depends only on the user
and the engine id is made once, with the localized keys: a keyed HMAC that
each message copies, and an ECB context that decrypts every message of
both privacy modes (see `Usm.decrypt`); both come from `cryptography`.
Time is never read here: callers pass `now` in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hmac import HMAC

from formats.snmp._decoded import FLAG_AUTH, FLAG_PRIV, V3Message
from formats.snmp._errors import AccessError

# name -> (hashlib name, truncated digest length) per RFC 3414 and RFC 7860.
AUTH_PROTOCOLS: dict[str, tuple[str, int]] = {
    "MD5": ("md5", 12),
    "SHA": ("sha1", 12),
    "SHA-224": ("sha224", 16),
    "SHA-256": ("sha256", 24),
    "SHA-384": ("sha384", 32),
    "SHA-512": ("sha512", 48),
}
"""Authentication protocols by their Net-SNMP names."""

# hashlib name -> the same hash in `cryptography`, whose HMAC objects copy in one call.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# name -> (cipher, key length, key extension); "-C" is the Reeder ("Cisco")
# extension, the plain AES-192/256 names the Blumenthal one, as in Net-SNMP.
PRIV_PROTOCOLS: dict[str, tuple[str, int, str]] = {
    "DES": ("des", 16, ""),
    "AES": ("aes", 16, ""),
    "AES-192": ("aes", 24, "blumenthal"),
    "AES-256": ("aes", 32, "blumenthal"),
    "AES-192-C": ("aes", 24, "reeder"),
    "AES-256-C": ("aes", 32, "reeder"),
}
"""Privacy protocols by their Net-SNMP names."""

_ALIASES = {"SHA1": "SHA", "SHA-1": "SHA", "AES-128": "AES", "AES128": "AES"}

NO_AUTH, AUTH_NO_PRIV, AUTH_PRIV = 0, FLAG_AUTH, FLAG_AUTH | FLAG_PRIV
_TIME_WINDOW = 150
_MAX_BOOTS = 0x7FFFFFFF
_CACHE_SIZE = 65536
_BOOTS_TIME = struct.Struct(">II")


def _protocol(name: str | None, table: dict[str, Any], what: str) -> str | None:
    if name is None:
        return None
    key = name.upper().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in table:
        raise ValueError(f"unknown {what} protocol {name!r} (known: {', '.join(table)})")
    return key


@dataclass(frozen=True)
class UsmUser:
    """One configured v3 user.

    `auth`/`priv` are protocol names (`AUTH_PROTOCOLS`, `PRIV_PROTOCOLS`) or
    None. A message must use exactly the user's security level. Non-empty
    `engine_ids` (raw bytes) or `networks` (CIDR text) restrict which sender
    engine ids or source addresses the user is accepted from.
    """

    name: str
    auth: str | None = None
    auth_passphrase: str = ""
    priv: str | None = None
    priv_passphrase: str = ""
    engine_ids: frozenset[bytes] = frozenset()
    networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "auth", _protocol(self.auth, AUTH_PROTOCOLS, "auth"))
        object.__setattr__(self, "priv", _protocol(self.priv, PRIV_PROTOCOLS, "privacy"))
        if self.priv and not self.auth:
            raise ValueError(f"user {self.name!r}: privacy needs authentication")
        for protocol, passphrase in ((self.auth, self.auth_passphrase), (self.priv, self.priv_passphrase)):
            if protocol and len(passphrase.encode()) < 8:
                raise ValueError(f"user {self.name!r}: passphrases need at least 8 octets")

    @property
    def level(self) -> int:
        """The msgFlags security bits this user sends with."""
        return (FLAG_AUTH if self.auth else 0) | (FLAG_PRIV if self.priv else 0)


def password_to_master_key(passphrase: bytes, hash_name: str) -> bytes:
    """Ku of RFC 3414 A.2: the hash of the passphrase repeated to 1 MiB."""
    repeated = passphrase * (1048576 // len(passphrase) + 1)
    return hashlib.new(hash_name, repeated[:1048576]).digest()


def localize_key(master: bytes, engine_id: bytes, hash_name: str) -> bytes:
    """Kul of RFC 3414 A.2: the master key bound to one engine id."""
    return hashlib.new(hash_name, master + engine_id + master).digest()


def localize_priv_key(master: bytes, engine_id: bytes, hash_name: str, priv: str) -> bytes:
    """The localized privacy key of `priv`, extended to its key length."""
    _, size, extension = PRIV_PROTOCOLS[priv]
    key = localize_key(master, engine_id, hash_name)
    while len(key) < size:
        if extension == "blumenthal":
            key += hashlib.new(hash_name, key).digest()
        else:
            key += localize_key(password_to_master_key(key, hash_name), engine_id, hash_name)
    return key[:size]


@dataclass(slots=True)
class LocalKeys:
    """One user's keys localized to one engine id, ready to use."""

    user: UsmUser
    mac: HMAC  # keyed with the localized authentication key, copied per message
    digest_length: int
    cipher: Any  # a cryptography cipher algorithm holding the key, or None
    ecb: Any  # an ECB context of that cipher: AES encrypts (CFB), DES decrypts (CBC)
    pre_iv: bytes  # DES only


@dataclass(slots=True)
class _User:
    config: UsmUser
    level: int
    auth_master: bytes
    priv_master: bytes
    networks: list[Any]
    keys: dict[bytes, LocalKeys] = field(default_factory=dict)


class Usm:
    """Authentication, privacy and timeliness for messages to one local engine.

    `engine_id`, `boots` and `started_at` describe the local engine:
    its snmpEngineTime is `now - started_at` in whole seconds.
    """

    def __init__(
        self,
        users: Iterable[UsmUser],
        engine_id: bytes,
        boots: int,
        started_at: float,
        salt: int,
    ) -> None:
        self.engine_id = engine_id
        self.boots = boots
        self.started_at = started_at
        self._salt = salt
        self._users: dict[bytes, list[_User]] = {}
        for user in users:
            hash_name = AUTH_PROTOCOLS[user.auth][0] if user.auth else ""
            entry = _User(
                user,
                user.level,
                password_to_master_key(user.auth_passphrase.encode(), hash_name) if user.auth else b"",
                password_to_master_key(user.priv_passphrase.encode(), hash_name) if user.priv else b"",
                [ipaddress.ip_network(net, strict=False) for net in user.networks],
            )
            self._users.setdefault(user.name.encode(), []).append(entry)
        self._remote_time: dict[bytes, tuple[int, int, float]] = {}

    def engine_time(self, now: float) -> int:
        """The local snmpEngineTime at `now`."""
        return min(max(int(now - self.started_at), 0), _MAX_BOOTS)

    def authenticate(self, msg: V3Message, peer_host: str) -> tuple[UsmUser, LocalKeys | None]:
        """The user that sent `msg` and its keys, after checking the digest.

        The keys are None for an admissible noAuthNoPriv message. Raises
        `AccessError` with the usmStats reason otherwise. A message addressed
        to this engine (an inform) passes the user's engine id list here:
        only its scopedPDU names the sender, which the caller checks.
        """
        candidates = self._users.get(msg.user)
        if not candidates:
            raise AccessError(f"unknown user {msg.user!r}", "unknown_user_name")
        level = msg.flags & AUTH_PRIV
        refused = "unknown_user_name"
        for entry in candidates:
            if entry.networks and not _in_networks(peer_host, entry.networks):
                continue
            allowed = entry.config.engine_ids
            if allowed and msg.engine_id not in allowed and msg.engine_id != self.engine_id:
                refused = _worse(refused, "unknown_engine_id")
                continue
            if entry.level != level:
                refused = _worse(refused, "unsupported_sec_level")
                continue
            if level == NO_AUTH:
                return entry.config, None
            keys = entry.keys.get(msg.engine_id) or self._local_keys(entry, msg.engine_id)
            if _verify(keys, msg):
                return entry.config, keys
            refused = "wrong_digest"
        raise AccessError(f"user {msg.user!r} refused: {refused}", refused)

    def keys_for(self, user: UsmUser, engine_id: bytes) -> LocalKeys:
        """The keys of a configured `user` localized to `engine_id`."""
        for entry in self._users.get(user.name.encode(), []):
            if entry.config is user:
                return self._local_keys(entry, engine_id)
        raise KeyError(user.name)

    def _local_keys(self, entry: _User, engine_id: bytes) -> LocalKeys:
        keys = entry.keys.get(engine_id)
        if keys is None:
            if len(entry.keys) >= _CACHE_SIZE:
                entry.keys.clear()
            keys = entry.keys[engine_id] = _localize(entry, engine_id)
        return keys

    def decrypt(self, keys: LocalKeys, msg: V3Message) -> bytes:
        """The plaintext scopedPDU bytes of an authPriv message."""
        salt = msg.priv_params
        data = msg.buf[msg.data_start : msg.data_stop]
        n = len(data)
        if len(salt) != 8:
            raise AccessError("privacy parameters are not 8 octets", "decryption_error")
        # Both modes decrypt with one call to a reusable ECB context: CFB's
        # keystream is E(IV || C[:-1]), CBC's plaintext is D(C) ^ (IV || C[:-1]).
        if keys.pre_iv:
            if not n or n % 8:
                raise AccessError("DES data is not whole 8-octet blocks", "decryption_error")
            chained = _xor(salt, keys.pre_iv) + data[:-8]
            return _xor(keys.ecb.update(data), chained)
        try:
            iv = _BOOTS_TIME.pack(msg.boots, msg.time) + salt
        except struct.error:
            raise AccessError("engine boots or time beyond 32 bits", "decryption_error") from None
        keystream = keys.ecb.update(iv + data[: (n - 1) // 16 * 16])
        return _xor(data, keystream[:n])

    def encrypt(self, keys: LocalKeys, plaintext: bytes, boots: int, time: int) -> tuple[bytes, bytes]:
        """(ciphertext, privacy parameters) of `plaintext` under a fresh salt."""
        # A new context per message around the key object made once in
        # `_localize`: the IV is new every time, and `cryptography` cannot
        # give a CBC or CFB context another IV (`reset_nonce` is for CTR and
        # ChaCha20 only). Chaining the blocks through the cached ECB context
        # instead costs more from six blocks (96 octets) on, which nearly
        # every Response passes.
        self._salt = (self._salt + 1) & 0xFFFFFFFFFFFFFFFF
        if keys.pre_iv:
            salt = boots.to_bytes(4, "big") + (self._salt & 0xFFFFFFFF).to_bytes(4, "big")
            iv = _xor(salt, keys.pre_iv)
            plaintext += bytes(-len(plaintext) % 8)
            encryptor = Cipher(keys.cipher, modes.CBC(iv)).encryptor()
        else:
            salt = self._salt.to_bytes(8, "big")
            iv = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt
            encryptor = Cipher(keys.cipher, CFB(iv)).encryptor()
        return encryptor.update(plaintext) + encryptor.finalize(), salt

    @staticmethod
    def sign(keys: LocalKeys, whole: bytes, offset: int) -> bytes:
        """`whole` with its zeroed authentication parameters at `offset` filled in."""
        mac = keys.mac.copy()
        mac.update(whole)
        end = offset + keys.digest_length
        return whole[:offset] + mac.finalize()[: keys.digest_length] + whole[end:]

    def in_local_window(self, msg: V3Message, now: float) -> bool:
        """RFC 3414 3.2.7a: is a message to this (authoritative) engine timely?"""
        return (
            self.boots != _MAX_BOOTS
            and msg.boots == self.boots
            and abs(msg.time - self.engine_time(now)) <= _TIME_WINDOW
        )

    def in_remote_window(self, msg: V3Message, now: float) -> bool:
        """RFC 3414 3.2.7b: is a message from an authoritative sender timely?

        Keeps this engine's notion of each sender's boots and time, learning
        it on first sight, so replays older than the window are refused.
        """
        known = self._remote_time.get(msg.engine_id)
        if known is None:
            if len(self._remote_time) >= _CACHE_SIZE:
                self._remote_time.clear()
            self._remote_time[msg.engine_id] = (msg.boots, msg.time, now)
            return msg.boots != _MAX_BOOTS
        boots, latest, seen_at = known
        if msg.boots > boots or (msg.boots == boots and msg.time > latest):
            self._remote_time[msg.engine_id] = (msg.boots, msg.time, now)
            return msg.boots != _MAX_BOOTS
        estimate = latest + int(now - seen_at)
        return not (boots == _MAX_BOOTS or msg.boots < boots or msg.time < estimate - _TIME_WINDOW)


def _worse(current: str, new: str) -> str:
    # The reason closest to the right user wins: level beats engine id beats name.
    order = ("unknown_user_name", "unknown_engine_id", "unsupported_sec_level", "wrong_digest")
    return new if order.index(new) > order.index(current) else current


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _in_networks(host: str, networks: list[Any]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def _verify(keys: LocalKeys, msg: V3Message) -> bool:
    n = keys.digest_length
    if len(msg.auth_params) != n:
        return False
    buf, offset = msg.buf, msg.auth_offset
    mac = keys.mac.copy()
    mac.update(buf[:offset])
    mac.update(bytes(n))
    mac.update(buf[offset + n :])
    return hmac.compare_digest(mac.finalize()[:n], msg.auth_params)


def _localize(entry: _User, engine_id: bytes) -> LocalKeys:
    user = entry.config
    assert user.auth is not None
    hash_name, digest_length = AUTH_PROTOCOLS[user.auth]
    mac = HMAC(localize_key(entry.auth_master, engine_id, hash_name), _HASHES[hash_name]())
    cipher: Any = None
    ecb: Any = None
    pre_iv = b""
    if user.priv:
        key = localize_priv_key(entry.priv_master, engine_id, hash_name, user.priv)
        if PRIV_PROTOCOLS[user.priv][0] == "des":
            cipher, pre_iv = TripleDES(key[:8] * 3), key[8:16]
            ecb = Cipher(cipher, modes.ECB()).decryptor()
        else:
            cipher = algorithms.AES(key)
            ecb = Cipher(cipher, modes.ECB()).encryptor()
    return LocalKeys(user, mac, digest_length, cipher, ecb, pre_iv)
