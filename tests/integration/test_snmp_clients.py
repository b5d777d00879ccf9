"""Net-SNMP's snmptrap and snmpinform against a running trapgate: v1, v2c and v3 with USM.

One trapgate serves the whole module (a receiver with communities, several v3
users and an engine id map); each test tells its events apart by a marker
varbind or a fresh engine id, and reads counters as differences, so tests
stay independent in any order.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway._snmp_config import default_engine_id
from tests.integration.harness import SCHEMA, Trapgate, free_port, occurrence

pytestmark = pytest.mark.integration

ENTERPRISE = "1.3.6.1.4.1.99999"
MARK = f"{ENTERPRISE}.1.1"  # an OCTET STRING varbind that tells a test's events apart
SNMP_TRAPS = "1.3.6.1.6.3.1.1.5"
TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
TRAP_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"

ENGINE_ID = "8000000004747261706761746531"  # trapgate's own, as configured below
LISTED_ENGINE = "800000000501aa"
UNLISTED_ENGINE = "800000000501bb"
MAPPED_ENGINE = "800000000501cc"
SHARED_ENGINES = ("800000000501d1", "800000000501d2")

AUTH = ("MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
# trapgate's privacy names -> Net-SNMP's -x names (the "-C" Reeder variants are
# accepted by snmptrap although its --help lists only DES|AES|AES-192|AES-256).
PRIV = {"DES": "DES", "AES": "AES", "AES-192": "AES-192", "AES-256": "AES-256",
        "AES-192-C": "AES192C", "AES-256-C": "AES256C"}


def _user(name: str, auth: str = "", priv: str = "", **extra: Any) -> dict[str, Any]:
    user: dict[str, Any] = {"name": name, **extra}
    if auth:
        user |= {"auth": auth, "auth_passphrase": f"auth-{name}"}
    if priv:
        user |= {"priv": priv, "priv_passphrase": f"priv-{name}"}
    return user


USERS = {
    u["name"]: u
    for u in [
        _user("u-none"),
        *(_user(f"u-{a}", a) for a in AUTH),
        *(_user(f"u-{a}-{p}", a, p) for a in AUTH for p in PRIV),
        _user("u-restricted", "SHA-256", "AES", engine_ids=[LISTED_ENGINE]),
        _user("u-local", "SHA", networks=["127.0.0.0/8"]),
        _user("u-elsewhere", "SHA", networks=["192.0.2.0/24"]),
    ]
}
SHARED = [  # one name, a passphrase per engine id
    {"name": "u-shared", "auth": "SHA", "auth_passphrase": "shared-one", "engine_ids": [SHARED_ENGINES[0]]},
    {"name": "u-shared", "auth": "SHA", "auth_passphrase": "shared-two", "engine_ids": [SHARED_ENGINES[1]]},
]

_marks = itertools.count(1)
_engines = itertools.count(1)


def mark() -> str:
    return f"mark-{next(_marks)}"


def fresh_engine() -> str:
    """An engine id this module's trapgate has never seen."""
    return f"8000000005{next(_engines):08x}"


def usm(name: str, **wrong: str) -> list[str]:
    """snmptrap options for configured user `name`; `wrong` replaces a passphrase."""
    u = USERS[name]
    level = "authPriv" if "priv" in u else "authNoPriv" if "auth" in u else "noAuthNoPriv"
    opts = ["-v3", "-l", level, "-u", name]
    if "auth" in u:
        opts += ["-a", u["auth"], "-A", wrong.get("auth", u["auth_passphrase"])]
    if "priv" in u:
        opts += ["-x", PRIV[u["priv"]], "-X", wrong.get("priv", u["priv_passphrase"])]
    return opts


def engine(engine_id: str) -> list[str]:
    # -e alone sets only msgAuthoritativeEngineID; snmptrap would put a random
    # engine id of its own in contextEngineID, which trapgate reports as the device.
    return ["-e", engine_id, "-E", engine_id]


def validate(event: dict[str, Any]) -> None:
    jsonschema.validate(event, SCHEMA)
    assert event["format"] == "snmp"
    assert event["peer"] == "127.0.0.1"
    assert event["node"] == "test-node"
    assert occurrence(event)[0] == event["fingerprint"]


def marked(event: dict[str, Any], text: str) -> bool:
    return [MARK, "OCTET STRING", text] in event["varbinds"]


class Snmp:
    """The module's trapgate, its SNMP port, and Net-SNMP clients aimed at it."""

    def __init__(self, node: Trapgate, port: int, client_dir: Path) -> None:
        self.node = node
        self.port = port
        # A private persistent dir and config path: no ~/.snmp or /etc/snmp
        # defaults, and no MIB loading (every OID here is numeric).
        self.env = {**os.environ, "SNMP_PERSISTENT_DIR": str(client_dir),
                    "SNMPCONFPATH": str(client_dir), "MIBS": ""}

    def run(self, tool: str, options: list[str], *params: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [tool, *options, f"127.0.0.1:{self.port}", *params],
            env=self.env, capture_output=True, text=True, timeout=30,
        )
        missing = re.search(r"Invalid (\w+) protocol specified after -3\w flag: (\S+)", proc.stderr)
        if missing:
            pytest.skip(f"Net-SNMP here has no {missing[1]} protocol {missing[2]}")
        return proc

    def trap(self, options: list[str], *params: str) -> None:
        proc = self.run("snmptrap", options, *params)
        assert proc.returncode == 0, proc.stderr

    def inform(self, options: list[str], *params: str) -> subprocess.CompletedProcess[str]:
        return self.run("snmpinform", options, *params)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], n: int = 1,
                 timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.node.events() if match(e)]
            if len(found) >= n or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def wait_marked(self, text: str, n: int = 1) -> list[dict[str, Any]]:
        found = self.wait_for(lambda e: marked(e, text), n)
        assert len(found) == n, f"{len(found)} events marked {text!r}, expected {n}"
        for event in found:
            validate(event)
        return found

    def errors(self, reason: str) -> float:
        return self.node.metric("trapgate_errors_total", component="snmp", reason=reason)

    def replies(self) -> float:
        return self.node.metric("trapgate_replies_total", component="snmp")

    def quarantined(self) -> list[dict[str, Any]]:
        if not self.node.quarantine.exists():
            return []
        return [json.loads(line) for line in self.node.quarantine.read_text().splitlines()]


@pytest.fixture(scope="module")
def snmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmp]:
    workdir = tmp_path_factory.mktemp("trapgate")
    port = free_port()
    receiver = {
        "type": "snmp", "address": f"127.0.0.1:{port}", "engine_id": ENGINE_ID,
        "engine_boots_file": str(workdir / "engine-boots"),
        "communities": ["public", "second"],
        "users": [*USERS.values(), *SHARED],
        "engine_sources": {MAPPED_ENGINE: "core-router-1"},
    }
    node = Trapgate(workdir, {"receivers": {"snmp": receiver}}).start()
    yield Snmp(node, port, tmp_path_factory.mktemp("net-snmp"))
    code, err = node.stop()
    assert "Traceback" not in err, err
    assert code == 0, err


def expect_rejected(snmp: Snmp, reason: str, send: Callable[[], None], count: int = 1) -> None:
    """`send` must be refused for `reason`: counted (`count` times in all),
    quarantined once, not forwarded, and the receiver must still serve the
    next valid trap."""
    errors, quarantined, forwarded = snmp.errors(reason), len(snmp.quarantined()), len(snmp.node.events())
    send()
    after = mark()
    snmp.trap(["-v2c", "-c", "public"], "1", f"{ENTERPRISE}.0.1", MARK, "s", after)
    snmp.wait_marked(after)
    assert snmp.errors(reason) == errors + count
    assert len(snmp.node.events()) == forwarded + 1
    [record] = snmp.quarantined()[quarantined:]
    assert record["reason"] == reason
    assert (record["receiver"], record["format"]) == ("snmp", "snmp")
    assert record["peer"].startswith("127.0.0.1:")
    assert base64.b64decode(record["raw_b64"])[:1] == b"\x30"  # the datagram as received


# v1 -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("generic", "specific", "trap_oid"),
    [
        (0, 0, f"{SNMP_TRAPS}.1"),  # coldStart
        (1, 0, f"{SNMP_TRAPS}.2"),  # warmStart
        (2, 0, f"{SNMP_TRAPS}.3"),  # linkDown
        (3, 0, f"{SNMP_TRAPS}.4"),  # linkUp
        (4, 0, f"{SNMP_TRAPS}.5"),  # authenticationFailure
        (5, 0, f"{SNMP_TRAPS}.6"),  # egpNeighborLoss
        (6, 17, f"{ENTERPRISE}.2.3.0.17"),  # enterpriseSpecific
    ],
)
def test_v1_trap_gets_its_rfc3584_trap_oid_and_is_sourced_from_agent_addr(
    snmp: Snmp, generic: int, specific: int, trap_oid: str
) -> None:
    text = mark()
    snmp.trap(["-v1", "-c", "public"], f"{ENTERPRISE}.2.3", "192.0.2.7", str(generic), str(specific),
              "12345", MARK, "s", text)
    [event] = snmp.wait_marked(text)
    assert event["version"] == "1"
    assert event["pdu"] == "trap"
    assert event["community"] == "public"
    assert "user" not in event
    assert event["engine_id"] is None
    assert event["trap_oid"] == trap_oid
    assert event["enterprise"] == f"{ENTERPRISE}.2.3"
    assert event["uptime"] == 12345
    assert event["agent_addr"] == "192.0.2.7"
    assert (event["source"], event["source_rule"]) == ("192.0.2.7", "agent_addr")
    assert event["varbinds"] == [[MARK, "OCTET STRING", text]]
    assert occurrence(event) == (event["fingerprint"], 1)


def test_v1_trap_with_agent_addr_0_0_0_0_is_sourced_from_the_peer(snmp: Snmp) -> None:
    text = mark()
    snmp.trap(["-v1", "-c", "second"], f"{ENTERPRISE}.2.3", "0.0.0.0", "6", "2147483647", "4294967295",
              MARK, "s", text)
    [event] = snmp.wait_marked(text)
    assert event["community"] == "second"
    assert event["agent_addr"] == "0.0.0.0"
    assert (event["source"], event["source_rule"]) == ("127.0.0.1", "peer")
    assert event["trap_oid"] == f"{ENTERPRISE}.2.3.0.2147483647"
    assert event["uptime"] == 4294967295


def test_v1_trap_and_its_rfc3584_v2c_translation_share_a_fingerprint(snmp: Snmp) -> None:
    text = mark()
    snmp.trap(["-v1", "-c", "public"], f"{ENTERPRISE}.2.4", "192.0.2.8", "6", "5", "999", MARK, "s", text)
    # What a proxy sends for it (RFC 3584 3.1): the three added varbinds must not count.
    snmp.trap(["-v2c", "-c", "second"], "999", f"{ENTERPRISE}.2.4.0.5", MARK, "s", text,
              TRAP_ADDRESS, "a", "192.0.2.8", TRAP_COMMUNITY, "s", "public",
              TRAP_ENTERPRISE, "o", f"{ENTERPRISE}.2.4")
    v1, v2c = snmp.wait_marked(text, 2)
    assert (v1["version"], v2c["version"]) == ("1", "2c")
    assert (v2c["source"], v2c["source_rule"]) == ("192.0.2.8", "trap_address")
    assert v2c["agent_addr"] is None
    assert v1["trap_oid"] == v2c["trap_oid"]
    assert v1["fingerprint"] == v2c["fingerprint"]
    assert sorted([occurrence(v1), occurrence(v2c)]) == [(v1["fingerprint"], 1), (v1["fingerprint"], 2)]


# v2c and value types --------------------------------------------------------

VALUES = [  # snmptrap type letter, value as given, type and value forwarded
    ("i", "-5", "INTEGER", -5),
    ("i", "-2147483648", "INTEGER", -2147483648),
    ("i", "2147483647", "INTEGER", 2147483647),
    ("s", "plain text", "OCTET STRING", "plain text"),
    ("s", "h\u00e9llo \u65e5\u672c", "OCTET STRING", "h\u00e9llo \u65e5\u672c"),
    ("s", "tab\there\nnewline", "OCTET STRING", "tab\there\nnewline"),
    ("s", "", "OCTET STRING", ""),
    ("x", "00ff10", "Hex-STRING", "00ff10"),
    ("x", "e9", "Hex-STRING", "e9"),
    ("x", "414243", "OCTET STRING", "ABC"),
    ("o", "1.3.6.1.2.1.1.1", "OID", "1.3.6.1.2.1.1.1"),
    ("o", "2.999.1", "OID", "2.999.1"),
    ("o", "1.3.6.1.4.1.4294967295", "OID", "1.3.6.1.4.1.4294967295"),
    ("a", "192.0.2.1", "IpAddress", "192.0.2.1"),
    ("a", "255.255.255.255", "IpAddress", "255.255.255.255"),
    ("c", "0", "Counter32", 0),
    ("c", "4294967295", "Counter32", 4294967295),
    ("u", "42", "Gauge32", 42),
    ("u", "4294967295", "Gauge32", 4294967295),
    ("t", "360000", "TimeTicks", 360000),
    ("t", "4294967295", "TimeTicks", 4294967295),
    ("C", "0", "Counter64", 0),
    ("C", "18446744073709551615", "Counter64", 18446744073709551615),
]


def test_v2c_trap_is_forwarded_field_by_field_with_every_value_type(snmp: Snmp) -> None:
    text = mark()
    args = [MARK, "s", text]
    for i, (letter, value, _, _) in enumerate(VALUES):
        args += [f"{ENTERPRISE}.3.{i}", letter, value]
    snmp.trap(["-v2c", "-c", "public"], "4711", f"{ENTERPRISE}.0.2", *args)
    [event] = snmp.wait_marked(text)
    assert event["version"] == "2c"
    assert event["pdu"] == "trap"
    assert event["community"] == "public"
    assert "user" not in event and "enterprise" not in event
    assert event["engine_id"] is None
    assert event["trap_oid"] == f"{ENTERPRISE}.0.2"
    assert event["uptime"] == 4711
    assert event["agent_addr"] is None
    assert (event["source"], event["source_rule"]) == ("127.0.0.1", "peer")
    assert event["varbinds"][0] == [MARK, "OCTET STRING", text]
    assert event["varbinds"][1:] == [
        [f"{ENTERPRISE}.3.{i}", kind, shown] for i, (_, _, kind, shown) in enumerate(VALUES)
    ]


def test_v2c_trap_with_snmp_trap_address_is_sourced_from_it(snmp: Snmp) -> None:
    text = mark()
    snmp.trap(["-v2c", "-c", "public"], "5", f"{ENTERPRISE}.0.3", TRAP_ADDRESS, "a", "198.51.100.9",
              MARK, "s", text)
    [event] = snmp.wait_marked(text)
    assert (event["source"], event["source_rule"]) == ("198.51.100.9", "trap_address")
    assert event["varbinds"] == [[TRAP_ADDRESS, "IpAddress", "198.51.100.9"], [MARK, "OCTET STRING", text]]


def test_same_v2c_trap_twice_is_occurrence_1_and_2(snmp: Snmp) -> None:
    text = mark()
    for _ in range(2):
        snmp.trap(["-v2c", "-c", "public"], "808", f"{ENTERPRISE}.0.4", MARK, "s", text)
    first, second = snmp.wait_marked(text, 2)
    assert first["fingerprint"] == second["fingerprint"]
    assert [occurrence(first), occurrence(second)] == [(first["fingerprint"], 1), (first["fingerprint"], 2)]


def test_same_v3_trap_at_two_engine_times_is_occurrence_1_and_2(snmp: Snmp) -> None:
    # msgID, salt, digest and engine time differ between the copies; none is identity.
    text, sender = mark(), fresh_engine()
    for clock in ("3,100", "3,110"):
        snmp.trap([*usm("u-SHA-384-AES-256"), *engine(sender), "-Z", clock], "808", f"{ENTERPRISE}.0.4",
                  MARK, "s", text)
    first, second = snmp.wait_marked(text, 2)
    assert first["fingerprint"] == second["fingerprint"]
    assert [occurrence(first), occurrence(second)] == [(first["fingerprint"], 1), (first["fingerprint"], 2)]


def test_v2c_trap_and_inform_with_the_same_content_share_a_fingerprint(snmp: Snmp) -> None:
    text = mark()
    snmp.trap(["-v2c", "-c", "public"], "31337", f"{ENTERPRISE}.0.5", MARK, "s", text)
    # Another community: it is not part of the identity either.
    proc = snmp.inform(["-v2c", "-c", "second"], "31337", f"{ENTERPRISE}.0.5", MARK, "s", text)
    assert proc.returncode == 0, proc.stderr
    trap, inform = snmp.wait_marked(text, 2)
    assert (trap["pdu"], inform["pdu"]) == ("trap", "inform")
    assert inform["community"] == "second"
    assert trap["fingerprint"] == inform["fingerprint"]
    assert occurrence(inform) == (trap["fingerprint"], 2)


# v3 traps -------------------------------------------------------------------

V3_USERS = ["u-none", *(f"u-{a}" for a in AUTH), *(f"u-{a}-{p}" for a in AUTH for p in PRIV)]


@pytest.mark.parametrize("user", V3_USERS)
def test_v3_trap_is_accepted_at_every_level_and_protocol(snmp: Snmp, user: str) -> None:
    text, sender = mark(), fresh_engine()
    snmp.trap([*usm(user), *engine(sender)], "2024", f"{ENTERPRISE}.0.6", MARK, "s", text)
    [event] = snmp.wait_marked(text)
    assert event["version"] == "3"
    assert event["pdu"] == "trap"
    assert event["user"] == user
    assert "community" not in event
    assert event["engine_id"] == sender
    assert event["trap_oid"] == f"{ENTERPRISE}.0.6"
    assert event["uptime"] == 2024
    assert event["agent_addr"] is None
    assert (event["source"], event["source_rule"]) == (sender, "engine_id")
    assert event["varbinds"] == [[MARK, "OCTET STRING", text]]


def test_v3_traps_from_engine_ids_never_seen_are_accepted_without_listing_them(snmp: Snmp) -> None:
    text = mark()
    senders = [fresh_engine() for _ in range(3)]
    for sender in senders:
        snmp.trap([*usm("u-SHA-256-AES"), *engine(sender)], "1", f"{ENTERPRISE}.0.7", MARK, "s", text)
    events = snmp.wait_marked(text, 3)
    assert [e["engine_id"] for e in events] == senders
    assert len({e["fingerprint"] for e in events}) == 3  # three devices, three identities


def test_v3_trap_source_is_named_through_engine_sources(snmp: Snmp) -> None:
    text = mark()
    snmp.trap([*usm("u-SHA"), *engine(MAPPED_ENGINE)], "1", f"{ENTERPRISE}.0.8", MARK, "s", text)
    [event] = snmp.wait_marked(text)
    assert event["engine_id"] == MAPPED_ENGINE
    assert (event["source"], event["source_rule"]) == ("core-router-1", "engine_id")


def test_user_restricted_to_engine_ids_accepts_a_listed_one(snmp: Snmp) -> None:
    text = mark()
    snmp.trap([*usm("u-restricted"), *engine(LISTED_ENGINE)], "1", f"{ENTERPRISE}.0.9", MARK, "s", text)
    [event] = snmp.wait_marked(text)
    assert (event["user"], event["engine_id"]) == ("u-restricted", LISTED_ENGINE)


def test_users_sharing_a_name_are_told_apart_by_engine_id(snmp: Snmp) -> None:
    text = mark()
    for sender, passphrase in zip(SHARED_ENGINES, ("shared-one", "shared-two"), strict=True):
        snmp.trap(["-v3", "-l", "authNoPriv", "-u", "u-shared", "-a", "SHA", "-A", passphrase,
                   *engine(sender)], "1", f"{ENTERPRISE}.0.10", MARK, "s", text)
    events = snmp.wait_marked(text, 2)
    assert [e["engine_id"] for e in events] == list(SHARED_ENGINES)
    expect_rejected(snmp, "wrong_digest", lambda: snmp.trap(
        ["-v3", "-l", "authNoPriv", "-u", "u-shared", "-a", "SHA", "-A", "shared-two",
         *engine(SHARED_ENGINES[0])], "1", f"{ENTERPRISE}.0.10"))


def test_user_restricted_to_networks_accepts_a_listed_source(snmp: Snmp) -> None:
    text = mark()
    snmp.trap([*usm("u-local"), *engine(fresh_engine())], "1", f"{ENTERPRISE}.0.11", MARK, "s", text)
    [event] = snmp.wait_marked(text)
    assert event["user"] == "u-local"


# case -> (reason, snmptrap options); Net-SNMP lets a later option override an earlier one.
REJECTED_TRAPS = {
    "v2c unknown community": ("unknown_community", ["-v2c", "-c", "private"]),
    "v1 unknown community": ("unknown_community", ["-v1", "-c", "private"]),
    "unknown user": ("unknown_user_name", [*usm("u-SHA"), "-u", "nobody", *engine(fresh_engine())]),
    "wrong auth passphrase": ("wrong_digest", [*usm("u-SHA-256", auth="not-the-passphrase"),
                                               *engine(fresh_engine())]),
    "wrong priv passphrase": ("decryption_error", [*usm("u-SHA-AES", priv="not-the-passphrase"),
                                                   *engine(fresh_engine())]),
    "Blumenthal key for a Reeder user": ("decryption_error", [*usm("u-SHA-AES-256-C"), "-x", "AES-256",
                                                              *engine(fresh_engine())]),
    "Reeder key for a Blumenthal user": ("decryption_error", [*usm("u-MD5-AES-192"), "-x", "AES192C",
                                                              *engine(fresh_engine())]),
    "security level below the user's": ("unsupported_sec_level", [*usm("u-SHA-AES"), "-l", "authNoPriv",
                                                                  *engine(fresh_engine())]),
    "engine id not listed for the user": ("unknown_engine_id", [*usm("u-restricted"),
                                                                *engine(UNLISTED_ENGINE)]),
    "source outside the user's networks": ("unknown_user_name", [*usm("u-elsewhere"),
                                                                 *engine(fresh_engine())]),
}


@pytest.mark.parametrize("case", REJECTED_TRAPS)
def test_rejected_trap_is_counted_quarantined_and_the_next_one_served(snmp: Snmp, case: str) -> None:
    reason, options = REJECTED_TRAPS[case]
    if options[0] == "-v1":
        params = [f"{ENTERPRISE}.2.3", "192.0.2.7", "6", "1", "1"]
    else:
        params = ["1", f"{ENTERPRISE}.0.12"]
    expect_rejected(snmp, reason, lambda: snmp.trap(options, *params))


def test_v3_trap_older_than_the_senders_time_window_is_rejected(snmp: Snmp) -> None:
    text, sender = mark(), fresh_engine()
    snmp.trap([*usm("u-SHA"), *engine(sender), "-Z", "5,1000"], "1", f"{ENTERPRISE}.0.13", MARK, "s", text)
    snmp.wait_marked(text)
    # Same boots, 900 s earlier than the sender said a moment ago: a replay.
    expect_rejected(snmp, "not_in_time_window", lambda: snmp.trap(
        [*usm("u-SHA"), *engine(sender), "-Z", "5,100"], "1", f"{ENTERPRISE}.0.13"))


# informs --------------------------------------------------------------------

def test_v2c_inform_is_acknowledged_and_counted_as_a_reply(snmp: Snmp) -> None:
    text, replies = mark(), snmp.replies()
    proc = snmp.inform(["-v2c", "-c", "public"], "77", f"{ENTERPRISE}.0.14", MARK, "s", text,
                       f"{ENTERPRISE}.3.1", "C", "18446744073709551615")
    assert proc.returncode == 0, proc.stderr
    [event] = snmp.wait_marked(text)
    assert (event["version"], event["pdu"], event["community"]) == ("2c", "inform", "public")
    assert event["trap_oid"] == f"{ENTERPRISE}.0.14"
    assert event["uptime"] == 77
    assert event["varbinds"] == [[MARK, "OCTET STRING", text],
                                 [f"{ENTERPRISE}.3.1", "Counter64", 18446744073709551615]]
    assert snmp.replies() == replies + 1


def _dumped(stderr: str, heading: str) -> bytes:
    """The packet that `snmpinform -d` dumped under `heading`."""
    block = stderr.split(heading, 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\d{4}: ((?:[0-9A-F]{2} {1,2})+)", block, re.MULTILINE)
    return bytes.fromhex("".join(rows))


def test_v2c_inform_response_is_the_request_with_the_response_tag(snmp: Snmp) -> None:
    text = mark()
    proc = snmp.inform(["-d", "-v2c", "-c", "public"], "78", f"{ENTERPRISE}.0.14", MARK, "s", text,
                       f"{ENTERPRISE}.3.2", "i", "-1")
    assert proc.returncode == 0, proc.stderr
    sent, received = _dumped(proc.stderr, "Sending "), _dumped(proc.stderr, "Received ")
    at = sent.index(b"public") + len(b"public")
    assert sent[at] == 0xA6  # InformRequest
    assert received == sent[:at] + b"\xa2" + sent[at + 1 :]  # same request-id and varbinds
    snmp.wait_marked(text)


def test_large_v3_inform_with_a_context_name_is_acknowledged(snmp: Snmp) -> None:
    text = mark()
    varbinds = [x for i in range(50) for x in (f"{ENTERPRISE}.4.{i}", "s", f"{i:03d}" + "y" * 200)]
    proc = snmp.inform([*usm("u-SHA-256-AES-256"), "-n", "ctx1"], "1", f"{ENTERPRISE}.0.14",
                       MARK, "s", text, *varbinds)
    assert proc.returncode == 0, proc.stderr
    [event] = snmp.wait_marked(text)
    assert len(event["varbinds"]) == 51
    assert event["varbinds"][-1] == [f"{ENTERPRISE}.4.49", "OCTET STRING", "049" + "y" * 200]


INFORM_USERS = ["u-none", *(f"u-{a}" for a in AUTH), *(f"u-SHA-{p}" for p in PRIV), "u-SHA-512-AES-256-C",
                "u-MD5-DES", "u-SHA-224-AES-192"]


@pytest.mark.parametrize("user", INFORM_USERS)
def test_v3_inform_is_acknowledged_after_engine_discovery(snmp: Snmp, user: str) -> None:
    text, replies = mark(), snmp.replies()
    proc = snmp.inform(usm(user), "88", f"{ENTERPRISE}.0.15", MARK, "s", text)
    assert proc.returncode == 0, proc.stderr
    [event] = snmp.wait_marked(text)
    assert (event["version"], event["pdu"], event["user"]) == ("3", "inform", user)
    assert event["trap_oid"] == f"{ENTERPRISE}.0.15"
    assert event["uptime"] == 88
    # The device is named by contextEngineID: snmpinform's own engine id here.
    assert re.fullmatch(r"[0-9a-f]{10,64}", event["engine_id"])
    assert event["engine_id"] != ENGINE_ID
    assert (event["source"], event["source_rule"]) == (event["engine_id"], "engine_id")
    assert snmp.replies() == replies + 2  # the discovery Report, then the Response


# case -> (snmpinform options besides the user's, the reason of the Report it gets first)
DISCOVERY_REPORTS = {
    "engine id discovery": ([], "unknown_engine_id"),
    "stale boots and time": (["-e", ENGINE_ID, "-Z", "9,5000"], "not_in_time_window"),
}


@pytest.mark.parametrize("case", DISCOVERY_REPORTS)
def test_v3_inform_discovery_report_is_counted_as_an_error_by_reason_but_not_quarantined(
    snmp: Snmp, case: str
) -> None:
    options, reason = DISCOVERY_REPORTS[case]
    other = "not_in_time_window" if reason == "unknown_engine_id" else "unknown_engine_id"
    counted, not_counted, replies, quarantined = (
        snmp.errors(reason), snmp.errors(other), snmp.replies(), len(snmp.quarantined()))
    text = mark()
    proc = snmp.inform([*usm("u-SHA-AES"), *options], "1", f"{ENTERPRISE}.0.21", MARK, "s", text)
    assert proc.returncode == 0, proc.stderr
    snmp.wait_marked(text)
    assert snmp.errors(reason) == counted + 1
    assert snmp.errors(other) == not_counted
    assert snmp.replies() == replies + 2  # the Report, then the Response
    assert len(snmp.quarantined()) == quarantined


def test_v3_inform_to_the_configured_engine_id_is_acknowledged(snmp: Snmp) -> None:
    # A sender configured with trapgate's engine id skips discovery; with stale
    # boots and time it is told the right ones by a Report and sends again.
    text = mark()
    proc = snmp.inform([*usm("u-SHA-256-AES"), "-e", ENGINE_ID, "-Z", "9,5000"], "1", f"{ENTERPRISE}.0.16",
                       MARK, "s", text)
    assert proc.returncode == 0, proc.stderr
    snmp.wait_marked(text)


def test_v3_trap_and_inform_from_one_engine_share_a_fingerprint(snmp: Snmp) -> None:
    text, sender = mark(), fresh_engine()
    snmp.trap([*usm("u-SHA-AES"), *engine(sender)], "4242", f"{ENTERPRISE}.0.17", MARK, "s", text)
    proc = snmp.inform([*usm("u-SHA-AES"), "-E", sender], "4242", f"{ENTERPRISE}.0.17", MARK, "s", text)
    assert proc.returncode == 0, proc.stderr
    trap, inform = snmp.wait_marked(text, 2)
    assert (trap["engine_id"], inform["engine_id"]) == (sender, sender)
    assert trap["fingerprint"] == inform["fingerprint"]


def test_v3_inform_from_a_listed_engine_is_acknowledged_for_a_restricted_user(snmp: Snmp) -> None:
    text = mark()
    proc = snmp.inform([*usm("u-restricted"), "-E", LISTED_ENGINE], "1", f"{ENTERPRISE}.0.18",
                       MARK, "s", text)
    assert proc.returncode == 0, proc.stderr
    [event] = snmp.wait_marked(text)
    assert event["engine_id"] == LISTED_ENGINE


QUICK = ["-r", "0", "-t", "2"]
REJECTED_INFORMS = {  # case -> (reason, snmpinform options, client message, replies sent)
    "v2c unknown community": ("unknown_community", [*QUICK, "-v2c", "-c", "private"], "Timeout", 0),
    "unknown user": ("unknown_user_name", [*QUICK, *usm("u-SHA"), "-u", "nobody"], "Unknown user name", 2),
    "wrong auth passphrase": ("wrong_digest", [*QUICK, *usm("u-SHA-512", auth="not-the-passphrase")],
                              "Authentication failure", 2),
    "wrong priv passphrase": ("decryption_error", [*QUICK, *usm("u-SHA-DES", priv="not-the-passphrase")],
                              "Decryption error", 2),
    "engine id not listed for the user": ("unknown_engine_id",
                                          [*QUICK, *usm("u-restricted"), "-E", UNLISTED_ENGINE],
                                          "Unknown engine ID", 2),
}


@pytest.mark.parametrize("case", REJECTED_INFORMS)
def test_rejected_inform_fails_at_the_client_and_is_counted(snmp: Snmp, case: str) -> None:
    reason, options, message, replies = REJECTED_INFORMS[case]
    before = snmp.replies()

    def send() -> None:
        proc = snmp.inform(options, "1", f"{ENTERPRISE}.0.19")
        assert proc.returncode != 0
        assert message in proc.stderr

    # Each v3 case starts with engine discovery, itself counted as unknown_engine_id.
    expect_rejected(snmp, reason, send, count=2 if reason == "unknown_engine_id" else 1)
    assert snmp.replies() == before + replies


# restarts -------------------------------------------------------------------

def test_informs_keep_working_across_a_restart_with_engine_boots_incremented(tmp_path: Path) -> None:
    port = free_port()
    receiver = {"type": "snmp", "address": f"127.0.0.1:{port}",
                "engine_boots_file": str(tmp_path / "engine-boots"), "users": [USERS["u-SHA-AES"]]}
    node = Trapgate(tmp_path, {"receivers": {"snmp": receiver}})
    snmp = Snmp(node, port, tmp_path / "net-snmp")
    own = default_engine_id("test-node").hex()  # no engine_id configured: derived from the node name
    for boots in (1, 2):
        node.start()
        try:
            assert (tmp_path / "engine-boots").read_text().strip() == str(boots)
            text = mark()
            # The boots a sender remembers from the first run are stale in the second.
            proc = snmp.inform([*usm("u-SHA-AES"), "-e", own, "-Z", "1,10"], "1", f"{ENTERPRISE}.0.20",
                               MARK, "s", text)
            assert proc.returncode == 0, proc.stderr
            snmp.wait_marked(text)
        finally:
            code, err = node.stop()
        assert code == 0, err
        assert f"engine id {own}, boots {boots}" in err
