"""A format that only an installed plugin knows, received end to end."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, Trapgate, free_port, run_cli

pytestmark = pytest.mark.integration

PLUGIN = ROOT / "tests" / "plugin_example"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed by pip into a directory of its own."""
    target = tmp_path_factory.mktemp("plugin-site")
    build = tmp_path_factory.mktemp("plugin-build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN)],
        check=True, timeout=300, cwd=build,
    )
    return target


def test_unknown_format_is_a_config_error_without_the_plugin(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[receivers.kv]\ntype = "udp"\nformat = "keyvalue"\naddress = "127.0.0.1:5999"\n')
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2 and "'receivers.kv.format': 'keyvalue' is not one of" in r.stderr


def test_plugin_format_is_received_dedup_keyed_and_forwarded(tmp_path: Path, plugin_site: Path) -> None:
    port = free_port()
    node = Trapgate(
        tmp_path,
        {"receivers": {"kv": {"type": "udp", "format": "keyvalue", "address": f"127.0.0.1:{port}"}}},
        env={"PYTHONPATH": f"{ROOT}:{plugin_site}"},
    ).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"host=web01 event=login user=alice", ("127.0.0.1", port))
            u.sendto(b"user=alice event=login host=web01", ("127.0.0.1", port))
            u.sendto(b"no pairs here", ("127.0.0.1", port))
        events = node.wait_events(2)
        assert [e["format"] for e in events] == ["keyvalue", "keyvalue"]
        assert events[0]["user"] == "alice" and events[0]["host"] == "web01"
        assert events[0]["fingerprint"] == events[1]["fingerprint"]
        assert node.metric("trapgate_errors_total", component="kv", reason="bad_pair") == 1
    finally:
        code, err = node.stop()
    assert code == 0, err
