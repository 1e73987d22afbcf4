"""/metrics as Prometheus scrapes it: the documented families, and a restart counted when ssh dies.

Parsed with prometheus_client's own text parser, so a malformed line fails
here rather than in someone's Prometheus. The parser names a counter's family
without its `_total` suffix; the sample keeps it.
"""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster.stack import wait_for

pytestmark = pytest.mark.timeout(120)

FAMILIES = {"mysocketd_exposed_services", "mysocketd_tunnels_up", "mysocketd_ssh_restarts_total",
            "mysocketd_api_requests_total", "mysocketd_reconcile_duration_seconds",
            "mysocketd_watch_restarts_total"}


def scrape(controller):
    """{metric name as exposed: family}; counters under their `_total` name."""
    families = {}
    for family in text_string_to_metric_families(controller.metrics()):
        families[family.name + ("_total" if family.type == "counter" else "")] = family
    return families


def value(controller, sample_name):
    samples = [s.value for f in scrape(controller).values() for s in f.samples if s.name == sample_name]
    return sum(samples) if samples else None


def test_metrics_families_and_the_ssh_restart_counter(cluster, standins, controller, edge):
    cluster.service("web", annotations={"mysocket.io/enabled": "true"})
    standins.for_service(cluster.ns, "web")
    dnsname = wait_for("the dnsname annotation",
                       lambda: (cluster.get("web")["metadata"].get("annotations") or {}).get("mysocket.io/dnsname"))
    wait_for("a pod answering through the edge", lambda: edge.get(dnsname)[0] == 200)

    families = scrape(controller)
    assert FAMILIES <= set(families), sorted(FAMILIES - set(families))
    assert families["mysocketd_reconcile_duration_seconds"].type == "histogram"
    assert value(controller, "mysocketd_reconcile_duration_seconds_count") >= 1
    assert value(controller, "mysocketd_api_requests_total") >= 1
    wait_for("mysocketd_exposed_services 1", lambda: value(controller, "mysocketd_exposed_services") == 1)
    wait_for("mysocketd_tunnels_up 1", lambda: value(controller, "mysocketd_tunnels_up") == 1)

    before = value(controller, "mysocketd_ssh_restarts_total")
    [child] = wait_for("the ssh child", controller.ssh_children)
    child.kill()
    wait_for("mysocketd_ssh_restarts_total to grow",
             lambda: value(controller, "mysocketd_ssh_restarts_total") > before, timeout=30)
    wait_for("traffic again", lambda: edge.get(dnsname)[0] == 200)
