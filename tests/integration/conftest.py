"""Fixtures of the integration tests; the harness itself is `tests.integration.harness`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Trapgate
from tests.redis_servers import RedisServer, require_redis_server


@pytest.fixture
def trapgate(tmp_path: Path) -> Iterator[Trapgate]:
    node = Trapgate(tmp_path).start()
    yield node
    code, err = node.stop()
    assert "Traceback" not in err, err
    assert code == 0, err


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own."""
    require_redis_server()
    with RedisServer(tmp_path / "r") as server:
        yield server
