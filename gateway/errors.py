"""The gateway's own errors: each carries what the user needs in one line."""

from __future__ import annotations


class GatewayError(Exception):
    """An expected failure that ends a command with one line and exit code 2."""

    reason = "error"


class ConfigError(GatewayError):
    """A config value that is missing, of the wrong type or out of range."""

    reason = "config"

    def __init__(self, key: str, problem: str, file: bool = False) -> None:
        super().__init__(f"config file {key}: {problem}" if file else f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


class ListenError(GatewayError):
    """A receiver or the admin API could not bind its address."""

    reason = "listen"

    def __init__(self, what: str, address: str, problem: str) -> None:
        super().__init__(f"cannot listen on {address} ({what}): {problem}")
        self.address = address


class SinkError(GatewayError):
    """A sink could not take events (file not writable, pipe closed)."""

    reason = "sink"
