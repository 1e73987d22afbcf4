"""The Grafana dashboards: the query reader (devcluster.grafana) and the dashboards' shape.

Whether each metric a query names is really exported is tests/controller/test_metrics.py's
question (a real mysocketd and a real edge are scraped there).
"""

import pytest

from devcluster import grafana


@pytest.mark.parametrize("expr, names", [
    ("up", {"up"}),
    ('sum by (code_class) (rate(mysocket_edge_requests_total{socket_id=~"$socket"}[$__rate_interval]))',
     {"mysocket_edge_requests_total"}),
    ("histogram_quantile(0.95, sum by (le, route) (rate(x_bucket[5m])))", {"x_bucket"}),
    ("a / ignoring(answered_by) group_left sum(rate(b[1m]))", {"a", "b"}),
    ("(mysocket_edge_certificate_expiry_timestamp_seconds - time()) / 86400", {
        "mysocket_edge_certificate_expiry_timestamp_seconds"}),
    ("max(x and on(instance) y == 1)", {"x", "y"}),
    ('z{name="by (not) a metric", le="1e3"} * 1e3 > bool 2.5', {"z"}),
    ("label_values(mysocket_edge_info, instance)", {"mysocket_edge_info"}),
    ('label_values(m{instance=~"$instance"}, socket_id)', {"m"}),
    ("label_values(instance)", set()),
    ("topk(10, sum without (pod) (w offset 5m))", {"w"}),
])
def test_metric_names(expr, names):
    assert grafana.metric_names(expr) == names


def test_the_dashboards_are_grafana_dashboards_with_a_prometheus_datasource():
    boards = grafana.dashboards()
    assert set(boards) == {"edge.json", "mysocketd.json"}
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert panels, name
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), name
        for p in panels:
            assert p["datasource"]["uid"] == "${datasource}", (name, p["title"])
            assert p["targets"] and all(t["expr"] and grafana.metric_names(t["expr"]) for t in p["targets"]), \
                (name, p["title"])
            pos = p["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, (name, p["title"])
