"""/metrics as Prometheus scrapes it: the documented families, and a restart counted when ssh dies;
then every query of the Grafana dashboards names a metric that this mysocketd or this edge exports.

Parsed with prometheus_client's own text parser, so a malformed line fails
here rather than in someone's Prometheus. The parser names a counter's family
without its `_total` suffix; the sample keeps it.
"""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster import grafana
from devcluster.stack import wait_for
from edge.testing import EdgeProcess

pytestmark = pytest.mark.timeout(120)

FAMILIES = {"mysocketd_exposed_services", "mysocketd_tunnels_up", "mysocketd_ssh_restarts_total",
            "mysocketd_api_requests_total", "mysocketd_reconcile_duration_seconds",
            "mysocketd_watch_restarts_total", "mysocketd_api_request_duration_seconds"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "info": ("_info",)}


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """The module's edge, with its operators' metrics listener (--metrics-listen)."""
    with EdgeProcess(tmp_path_factory.mktemp("edge"), admin=True,
                     extra_args=("--metrics-listen", "127.0.0.1:0")) as proc:
        yield proc


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
    assert families["mysocketd_api_request_duration_seconds"].type == "histogram"
    assert value(controller, "mysocketd_api_request_duration_seconds_count") >= 1
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

    # The Grafana dashboards (charts/mysocketd/dashboards/): every metric a query names is exported by
    # one of the two real processes that just served traffic, dropped a tunnel and got it back.
    with urllib.request.urlopen(edge.metrics_url, timeout=10) as resp:
        exported = exported_names(resp.read().decode()) | exported_names(controller.metrics())
    used = grafana.used_metrics()
    assert len(used) >= 30
    missing = {name: where[0] for name, where in used.items() if name not in exported}
    assert not missing, missing


def exported_names(text):
    """Every sample name a scrape has, and those its families declare (a labelled counter with no
    child yet has no sample, but its name is exported)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names
