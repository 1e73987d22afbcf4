"""lib.replicas: a replica is gone only when provably so, by the leader's own clock (fake here)."""

from lib.replicas import Liveness, TunnelOwner


class Leases:
    """The Lease list the apiserver would answer: holder -> renewTime."""

    def __init__(self):
        self.renewed = {}
        self.calls = 0

    def json(self, method, path, query=None, **_):
        assert method == "GET" and "labelSelector" in (query or {})
        self.calls += 1
        return {"items": [{"metadata": {"name": f"lease-{h}"}, "spec": {"holderIdentity": h, "renewTime": t}}
                          for h, t in self.renewed.items()]}

    def items(self, path, query=None, **_):
        return self.json("GET", path, query=query)["items"], "1"


def test_a_replica_is_gone_when_its_lease_is_deleted_or_unchanged_for_a_whole_lease():
    now = [100.0]
    leases = Leases()
    live = Liveness(leases, "mysocket", lease_seconds=30, clock=lambda: now[0])
    assert not live.gone("c1", "pod-a")                 # nothing listed yet: nothing is called gone
    leases.renewed = {"c1/pod-a": "t0", "c1/pod-b": "t0"}
    live.refresh()
    assert not live.gone("c1", "pod-a") and live.gone("c1", "pod-c")   # pod-c has no Lease at all
    for t in range(1, 4):                               # pod-a renews, pod-b froze
        now[0] += 10
        leases.renewed["c1/pod-a"] = f"t{t}"
        live.refresh()
    assert not live.gone("c1", "pod-a") and live.gone("c1", "pod-b")
    leases.renewed["c2/pod-z"] = "t0"                   # another cluster's replica: never this cluster's
    live.refresh()
    assert live.leases("c1") == {"pod-a": "lease-c1/pod-a", "pod-b": "lease-c1/pod-b"}
    del leases.renewed["c1/pod-a"]                      # a clean stop deletes the Lease
    live.refresh()
    assert live.gone("c1", "pod-a")


def test_a_new_leader_watches_a_whole_lease_before_it_calls_anyone_stale():
    now = [100.0]
    leases = Leases()
    leases.renewed = {"c1/pod-b": "t0"}                 # frozen long before this leader took over
    live = Liveness(leases, "mysocket", lease_seconds=30, clock=lambda: now[0])
    live.refresh()
    now[0] += 29
    live.refresh()
    assert not live.gone("c1", "pod-b")
    now[0] += 2
    live.refresh()
    assert live.gone("c1", "pod-b")
    live.forget()
    assert not live.gone("c1", "pod-b")


def test_owner_tags_round_trip_and_strangers_are_not_parsed():
    owner = TunnelOwner("c1", "shop", "web", "pod-a-1b2c3d")
    assert owner.tag == "c1/shop/web/pod-a-1b2c3d" and TunnelOwner.parse(owner.tag) == owner
    assert owner.key == ("shop", "web")
    for stranger in ("", "laptop", "c1/shop/web", "c1//web/r", "a/b/c/d/e"):
        assert TunnelOwner.parse(stranger) is None
