"""What the tests on a real node share besides fixtures (conftest.py cannot be imported by name)."""

import json
from dataclasses import dataclass

from devcluster import workloads
from devcluster.controller import Account
from devcluster.nodecluster import NodeCluster
from devcluster.stack import wait_for
from edge.testing import EdgeProcess

MYSOCKETD_PODS = "app.kubernetes.io/name=mysocketd"
ROLLOUT_TIMEOUT = 120.0


@dataclass
class Installed:
    cluster: NodeCluster
    edge: EdgeProcess
    account: Account

    @property
    def cp(self):
        return self.cluster.cp

    def mysocketd_pods(self):
        return workloads.pods(self.cp, "mysocket", MYSOCKETD_PODS)

    def dnsname(self, namespace, service):
        svc = json.loads(self.cp.kubectl("get", "service", service, "-n", namespace, "-o", "json").stdout)
        return (svc["metadata"].get("annotations") or {}).get("mysocket.io/dnsname")

    def wait_dnsname(self, namespace, service, timeout=60.0):
        return wait_for(f"the public name of {namespace}/{service}", lambda: self.dnsname(namespace, service),
                        timeout=timeout, interval=0.2)
