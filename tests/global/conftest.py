"""Fixtures of the many-node edge's tests: one real PostgreSQL per module, three nodes on it.

PostgreSQL is Debian's, started as the ``postgres`` user inside the test's
private network namespace (edge.pgtesting); the nodes listen on 127.0.1.1-3
with the same ports (edge.clustertesting). Every process a test starts is
stopped by its fixture, by PID.
"""

import pytest

from devcluster import assert_private_netns
from edge.clustertesting import EdgeCluster
from edge.pgtesting import PostgresServer



@pytest.fixture(scope="module")
def pg():
    assert_private_netns()         # fixed ports and a database server: only inside `make test`'s namespace
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(pg, tmp_path_factory):
    with EdgeCluster(tmp_path_factory.mktemp("cluster"), pg.new_database("edge"), 3) as nodes:
        nodes.wait_live(3)
        yield nodes
