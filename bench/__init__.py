"""Load generators, peer runners and reports for trapgate (not installed).

`python -m bench <benchmark>` drives trapgate from outside, like a user: it
writes a config, starts the gateway as a subprocess, offers load over sockets
and counts what comes out. Peers (rsyslog, ...) get the same load in the same
invocation so that the report can give ratios rather than bare numbers.
"""
