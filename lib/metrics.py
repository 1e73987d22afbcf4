"""The Prometheus metrics, in one place so their names and labels are the documented ones.

prometheus-client's default registry also exports process_resident_memory_bytes
and process_cpu_seconds_total, which is what an operator compares across
replicas and what the benchmarks read.
"""

from prometheus_client import Counter, Gauge, Histogram

EXPOSED_SERVICES = Gauge("mysocketd_exposed_services", "Services this controller currently exposes")
TUNNELS_UP = Gauge("mysocketd_tunnels_up", "ssh children that are connected and forwarding")
SSH_RESTARTS = Counter("mysocketd_ssh_restarts_total", "ssh children restarted after they ended")
API_REQUESTS = Counter("mysocketd_api_requests_total", "Mysocket API calls by call and HTTP status "
                       "(status 'error' when no answer came)", ["call", "status"])
# How long each call to the Mysocket API took, answered or not: the edge is the one remote
# dependency every reconcile waits on, so its latency is what explains a slow reconcile.
API_SECONDS = Histogram("mysocketd_api_request_duration_seconds", "Mysocket API calls by call, "
                        "from sending to the answer or the failure", ["call"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RECONCILE_SECONDS = Histogram("mysocketd_reconcile_duration_seconds", "time to reconcile one Service",
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RECONCILE_ERRORS = Counter("mysocketd_reconcile_errors_total", "reconciles that failed and were requeued",
                           ["reason"])
WATCH_RESTARTS = Counter("mysocketd_watch_restarts_total", "times the Service watch was started again",
                         ["reason"])
CLUSTER = Gauge("mysocketd_cluster_info", "1, labelled with this cluster's identity (the <cluster> in socket "
                "names)", ["cluster"])
LEADER = Gauge("mysocketd_leader", "1 while this replica holds the lease (or runs without election)")
