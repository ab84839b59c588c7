"""The test services .ci/run provides: where to find them, and the one rule for their absence.

Locally a missing service skips its tests; under CI (``CI`` set) it fails them, since CI must
run every backend.
"""

from __future__ import annotations

import os
import shutil

import pytest


def _missing(what: str, how: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}: CI must run these tests ({how})")
    pytest.skip(f"{what} ({how} to run these tests)")


def redis_url() -> str:
    """The shared test Redis (``KANSOKU_TEST_REDIS_URL``)."""
    url = os.environ.get("KANSOKU_TEST_REDIS_URL")
    if not url:
        _missing("KANSOKU_TEST_REDIS_URL is not set", "source .ci/services.sh")
    return str(url)


def redis_server() -> str:
    """The ``redis-server`` executable, for tests that start (and kill) a server of their own."""
    path = shutil.which("redis-server")
    if path is None:
        _missing("redis-server is not installed", "apt-get install redis-server, as .ci/services.sh does")
    return str(path)
