"""Table tests for the edge's route-table checks and digest (edge/routetables) and address pool (edge/addresses)."""

import pytest

from edge import addresses, routetables


def table(listeners=1, routes=1, actions=1, backends=1):
    return {"listeners": [{"name": f"l{i}", "port": 80, "protocol": "HTTP", "hostname": "",
                           "routes": [{"hostname": "", "match": {}, "action": 0}] * routes}
                          for i in range(listeners)],
            "actions": [{"filters": [], "backends": [{"backend": f"ns/svc{j}:80", "weight": 1, "filters": []}
                                                     for j in range(backends)]}] * actions}


def test_digest_is_of_the_canonical_json():
    a = {"listeners": [], "actions": [{"filters": [], "backends": []}]}
    b = {"actions": [{"backends": [], "filters": []}], "listeners": []}
    assert routetables.digest(a) == routetables.digest(b) != routetables.digest(table())
    assert routetables.digest(None) == ""
    assert len(routetables.digest(a)) == 64


@pytest.mark.parametrize("bad, words", [
    ([], "JSON object"),
    ({"listeners": {}, "actions": []}, "must be lists"),
    (table(listeners=65), "at most 64 listeners"),
    (table(actions=4097), "at most 4096 actions"),
    (table(listeners=2, routes=4097), "at most 8192 routes"),
    (table(backends=17), "at most 16 backends"),
    ({"listeners": ["x"], "actions": []}, "listener 0"),
    ({**table(), "upstream_protocols": {"ns/svc0:80": "h2"}}, "upstream_protocols"),
    ({**table(), "upstream_protocols": ["ns/svc0:80"]}, "upstream_protocols"),
])
def test_bounds_and_shape(bad, words):
    with pytest.raises(routetables.InvalidTable, match=words):
        routetables.check(bad)


def test_good_table_and_its_backends():
    routetables.check(table(backends=2))
    routetables.check({**table(backends=2), "upstream_protocols": {"ns/svc0:80": "h2c", "ns/svc1:80": "http/1.1"}})
    assert routetables.backends(table(backends=2)) == {"ns/svc0:80", "ns/svc1:80"}
    assert routetables.backends(None) == set()


def test_address_pool():
    pool = addresses.AddressPool("127.100.0.0/30, 127.100.0.9")
    assert pool.addresses == ["127.100.0.1", "127.100.0.2", "127.100.0.9"]
    assert pool.allocate(set()) == "127.100.0.1"
    assert pool.allocate({"127.100.0.1"}) == "127.100.0.2"
    assert pool.allocate(set(pool.addresses)) is None
    assert "127.100.0.9" in pool and "127.100.0.3" not in pool
    assert not addresses.AddressPool("")
    assert addresses.AddressPool("10.0.0.7/32").addresses == ["10.0.0.7"]


@pytest.mark.parametrize("spec, ok", [("", True), ("127.100.0.0/24", True), ("203.0.113.5,203.0.113.6", True),
                                      ("not-an-address", False), ("10.0.0.0/8", False), ("2001:db8::/64", False)])
def test_address_flag(spec, ok):
    assert (addresses.check_spec(spec) == "") is ok
