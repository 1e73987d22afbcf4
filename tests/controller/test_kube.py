"""lib.kube's writes against the real apiserver, as the manifest's ServiceAccount.

What the apiserver really answers is the point: these answers decide whether
the controller looks again at once (409) or backs off (anything else).
"""

import pytest
from kubernetes import config as kube_config
from lib.apierrors import Conflict, Invalid, NotFound

from lib import kube as kube_mod


@pytest.fixture
def kube(controller_kubeconfig, namespace):
    api = kube_config.new_client_from_config(config_file=str(controller_kubeconfig))
    yield kube_mod.Kube(api, namespace)
    api.close()


def recreated(cluster, name, **spec):
    """(the old Service's dict, the new one's): deleted and created again under the same name."""
    old = cluster.service(name, **spec)
    cluster.delete(name, wait=True)
    new = cluster.service(name, **spec)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    return old, new


@pytest.mark.parametrize("write", [
    lambda kube, svc: kube.patch_metadata(svc, annotations={"mysocket.io/dnsname": "x.example"}),
    lambda kube, svc: kube.patch_metadata(svc, add_finalizer="mysocket.io/cleanup"),
    lambda kube, svc: kube.set_load_balancer_hostname(svc, "x.example"),
], ids=["annotations", "finalizer", "status"])
def test_a_write_with_a_stale_uid_is_a_conflict(cluster, kube, write):
    """The apiserver answers 422 Invalid ("metadata.uid: field is immutable"), not 409."""
    old, new = recreated(cluster, "again", type="LoadBalancer", loadBalancerClass="mysocket.io/tunnel")
    with pytest.raises(Conflict) as raised:
        write(kube, old)
    assert raised.value.status == 409 and isinstance(raised.value, kube_mod.ChangedMeanwhile)
    assert "re-created" in raised.value.reason
    fresh = cluster.get("again")
    assert fresh["metadata"].get("annotations", {}).get("mysocket.io/dnsname") is None
    assert not fresh["metadata"].get("finalizers") and not fresh["status"]["loadBalancer"].get("ingress")
    write(kube, new)                                        # the current uid is written as before


def test_other_invalid_writes_stay_invalid(cluster, kube):
    """Only the uid answer is a conflict: an ingress on a ClusterIP Service is the caller's mistake."""
    svc = cluster.service("plain")
    with pytest.raises(Invalid) as raised:
        kube.set_load_balancer_hostname(svc, "x.example")
    assert raised.value.status == 422


def test_a_write_to_a_deleted_service_is_not_found(cluster, kube):
    svc = cluster.service("gone")
    cluster.delete("gone", wait=True)
    with pytest.raises(NotFound) as raised:
        kube.patch_metadata(svc, annotations={"a": "b"})
    assert raised.value.status == 404
