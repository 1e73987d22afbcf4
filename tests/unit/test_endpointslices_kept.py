"""What the EndpointSlice watcher keeps of a slice: the addresses a headless Service's route forwards to."""

import pytest

from lib.watcher import EndpointSliceWatcher

MANAGED = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}


def endpoint_slice(labels):
    return {"metadata": {"namespace": "ns", "name": "s-1",
                         "labels": {"kubernetes.io/service-name": "svc", **labels}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 3000}],
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}}]}


@pytest.mark.parametrize("labels, addresses_kept", [
    (MANAGED, False),                                                   # a ClusterIP Service's: not needed
    ({**MANAGED, "service.kubernetes.io/headless": ""}, True),          # a headless Service's
    ({}, True),                                                         # made by hand: no headless label
])
def test_addresses_are_kept_for_headless_and_hand_made_slices(labels, addresses_kept):
    (service, ready, headless), _ = EndpointSliceWatcher(None, None).keep(endpoint_slice(labels))
    assert (service, ready) == (("ns", "svc"), 1)
    assert (headless is not None) == addresses_kept
    if addresses_kept:
        assert headless["endpoints"][0]["addresses"] == ["10.244.0.5"]
