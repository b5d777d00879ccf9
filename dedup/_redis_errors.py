"""redis-py exceptions mapped to `StoreError` reasons, in one place.

Reasons: ``auth`` (bad credentials or an ACL refusal), ``tls`` (handshake or
certificate refused, either way), ``timeout``,
``fenced`` (a write from a lower epoch than the server's, a `FencedError`),
``readonly`` (a replica was asked to write), ``oom`` (maxmemory reached with
no key to evict), ``cluster`` (slots moved, down or not covered), ``script``
(a script or command failed on the server) and ``unavailable`` (the server
cannot be reached or is not ready).
"""

from __future__ import annotations

import re
import ssl

from redis import exceptions as rx

from dedup._store import FencedError, StoreError

_REASONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    ((rx.AuthenticationError, rx.AuthenticationWrongNumberOfArgsError, rx.AuthorizationError,
      rx.NoPermissionError), "auth"),
    ((rx.TimeoutError, TimeoutError), "timeout"),
    (rx.ReadOnlyError, "readonly"),
    (rx.OutOfMemoryError, "oom"),
    ((rx.ClusterError, rx.AskError, rx.TryAgainError, rx.ClusterCrossSlotError,
      rx.RedisClusterException), "cluster"),
    ((rx.ConnectionError, OSError), "unavailable"),
)

# Messages the server sends as plain errors, by the text that identifies them.
_MESSAGES = (
    ("non local key", "cluster"),
    ("CLUSTERDOWN", "cluster"),
    ("READONLY", "readonly"),
    ("NOPERM", "auth"),
    ("user executing the script can't", "auth"),  # an ACL refusal inside a script (Redis 7.0)
    ("NOAUTH", "auth"),
    ("WRONGPASS", "auth"),
    ("OOM", "oom"),
    ("LOADING", "unavailable"),
    ("MASTERDOWN", "unavailable"),
)


def reason_of(exc: BaseException) -> str:
    """The stable reason label for a redis-py (or socket) exception."""
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__context__, ssl.SSLError) or "[SSL" in str(exc):
        return "tls"
    for kinds, reason in _REASONS:
        if isinstance(exc, kinds):
            return reason
    text = str(exc)
    for needle, reason in _MESSAGES:
        if needle in text:
            return reason
    return "script"


_FENCED = re.compile(r"FENCED (\d+)")


def store_error(exc: BaseException) -> StoreError:
    """A `StoreError` carrying `exc`'s message and reason (chain it with ``from``)."""
    fenced = _FENCED.search(str(exc))
    if fenced:
        return FencedError(f"redis store: fenced: the store is at epoch {fenced[1]}", int(fenced[1]))
    reason = reason_of(exc)
    # asyncio's TimeoutError (a read that outlived its deadline) says nothing by itself.
    detail = str(exc) or ("no reply in time" if reason == "timeout" else type(exc).__name__)
    return StoreError(f"redis store: {reason}: {detail}", reason)
