"""Sans-IO parsers: bytes in, `Event` out, a `FormatError` otherwise.

Nothing in this package touches a socket, a clock it was not given, a logger
or a metric. Receivers own framing and I/O; parsers own meaning.
"""

from formats._base import (
    Event,
    FormatError,
    Parser,
    Peer,
    get_parser,
    parser_names,
    register,
)

__all__ = [
    "Event",
    "FormatError",
    "Parser",
    "Peer",
    "get_parser",
    "parser_names",
    "register",
]
