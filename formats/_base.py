"""The shapes every format shares: `Event`, `FormatError`, the parser registry.

Strategy: a parser is any object with `name` and `parse(data, peer, received_at)`.
Built-in parsers register on import of their module; third-party parsers are
found through the entry point group `trapgate.formats` the first time a name is
looked up that is not built in. Identity is a tuple of plain values chosen by
the format (DESIGN.md section 3); `dedup` hashes it, so transport details must
never enter it.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, NamedTuple, Protocol, TypeAlias

Peer: TypeAlias = tuple[str, int]
"""The sender's (host, port) as the transport saw it."""

IdentityPart: TypeAlias = bytes | str | int | None

ENTRY_POINT_GROUP = "trapgate.formats"


class FormatError(Exception):
    """Input that is not a valid message of the format.

    `reason` is a short stable token (``bad_pri``, ``not_json`` ...) used as a
    metric label and in the quarantine file; the message text is for people.
    """

    reason: str = "malformed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class Event(NamedTuple):
    """One normalized event, as one node received it (immutable).

    A NamedTuple rather than a frozen dataclass: it is built once per packet
    on the hot path, and a frozen dataclass costs about three times as much
    to construct (its __init__ goes through object.__setattr__ per field).

    `identity` holds the fields that make two copies the same event; two
    copies of one occurrence received over different paths have equal
    identities. `fields` are the format's normalized fields as they appear in
    the forwarded JSON.
    """

    format: str
    peer: Peer
    received_at: float
    fields: Mapping[str, Any]
    raw: bytes
    identity: tuple[IdentityPart, ...]


class Parser(Protocol):
    """What a format plugin provides."""

    name: str

    def parse(self, data: bytes, peer: Peer, received_at: float) -> Event:
        """Return the event `data` holds, or raise a `FormatError`."""
        ...


class ManyParser(Parser, Protocol):
    """A parser whose unit of input (an HTTP body) may hold several events."""

    def parse_many(
        self, data: bytes, peer: Peer, received_at: float
    ) -> list[Event | FormatError]:
        """Return one `Event` or `FormatError` per entry, in input order.

        Raises `FormatError` only when the unit as a whole is unreadable.
        """
        ...


_registry: dict[str, Parser] = {}
_builtins_loaded = False


def register(parser: Parser) -> Parser:
    """Make `parser` available under `parser.name`; the last one wins."""
    _registry[parser.name] = parser
    return parser


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    # Imported here, not at module top, so the registry module has no cycle.
    import formats.custom
    import formats.snmp
    import formats.syslog  # noqa: F401


def _load_plugin(name: str) -> Parser | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        loaded = ep.load()
        parser: Parser = loaded() if isinstance(loaded, type) else loaded
        return register(parser)
    return None


def get_parser(name: str) -> Parser:
    """The parser registered as `name`, loading plugins on first use.

    Raises `KeyError` with the known names when there is none.
    """
    _load_builtins()
    parser = _registry.get(name) or _load_plugin(name)
    if parser is None:
        known = ", ".join(parser_names())
        raise KeyError(f"unknown format {name!r} (known: {known})")
    return parser


def parser_names() -> list[str]:
    """Names of the built-in parsers and of every installed plugin."""
    _load_builtins()
    names = set(_registry) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)
