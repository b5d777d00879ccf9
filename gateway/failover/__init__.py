"""The failover controller: a small process per node that elects the master of the pair.

It heartbeats to the peer's controller over every configured path, checks its
own node's health, and drives its gateway only through the gateway's admin
API (`POST /role` with a lease that it renews every heartbeat). It imports
nothing of the receive pipeline. `Controller` is the process;
`trapgate controller -c FILE` runs it.
"""

from gateway.failover.controller import Controller

__all__ = ["Controller"]
