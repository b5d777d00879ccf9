"""The controller's interfaces check inside a network namespace of the test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration

_CHECK = "import asyncio; from gateway.failover._health import interfaces; " \
         "print(asyncio.run(interfaces(['lo'])()))"


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    name = f"tg-health-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("ip netns add failed")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def check_in(namespace: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", _CHECK],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=30, check=True)
    return done.stdout.strip() == "True"


def test_the_interfaces_check_wants_the_interface_up_and_with_an_address(namespace: str) -> None:
    assert not check_in(namespace)  # a new namespace's lo is down
    subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
    assert check_in(namespace)  # up, with 127.0.0.1 and ::1
    subprocess.run(["ip", "-n", namespace, "addr", "flush", "dev", "lo"], check=True)
    assert not check_in(namespace)  # up, but no address left
