"""Fixtures for the edge's tests: one edge per module, accounts, ssh clients, backends.

Every process a test starts goes through a fixture that kills it at teardown;
``no_leftover_processes`` then checks (psutil) that nothing the module started
is still alive, so a leak fails the suite instead of passing silently.
"""

import time

import psutil
import pytest

from edgetest_helpers import make_account


@pytest.fixture(scope="module", autouse=True)
def no_leftover_processes():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, "processes left behind: {}".format(
        [(p.pid, p.cmdline()) for p in left])


@pytest.fixture
def account(edge, tmp_path):
    return make_account(edge, tmp_path)


@pytest.fixture
def new_account(edge, tmp_path):
    """Factory: new_account() -> another fresh Account on the module's edge."""
    return lambda key_type="ed25519": make_account(edge, tmp_path, key_type)
