"""coordination.k8s.io Leases, said once: read, create, replace, delete, list.

Three things use Leases: leader election (lib/leader.py), each replica's proof
of life and the leader's view of them (lib/replicas.py), and the uninstall,
which seizes the leader's Lease and deletes dead replicas' (lib/uninstall.py).
They share this one helper, so a Lease is written the same way everywhere:
every replace carries the resourceVersion it read (two writers racing get a
Conflict, never a lost update), times are RFC 3339 with microseconds as
client-go writes them, and a list is paged like every other list.
"""

import datetime

from lib.apierrors import NoNamespace, NotFound, missing_namespace

FLAG = "--lease-namespace (MYSOCKETD_LEASE_NAMESPACE)"

API = "/apis/coordination.k8s.io/v1"


def now_micro():
    """A Lease time (MicroTime) for now."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Leases:
    def __init__(self, rest, namespace):
        self.rest = rest                # lib.kube.Rest
        self.namespace = namespace

    def _path(self, name=""):
        return f"{API}/namespaces/{self.namespace}/leases" + (f"/{name}" if name else "")

    def get(self, name):
        """The Lease, or None if there is none."""
        try:
            return self.rest.json("GET", self._path(name))
        except NotFound:
            return None

    def create(self, name, spec, labels=None):
        """A new Lease; Conflict if another writer made it first."""
        metadata = {"name": name, "namespace": self.namespace, **({"labels": labels} if labels else {})}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        try:
            return self.rest.json("POST", self._path(), body=body)
        except NotFound as e:
            if missing_namespace(e):
                raise NoNamespace(self.namespace, FLAG) from None
            raise

    def replace(self, name, lease, spec):
        """Write `spec` over the Lease `name` as read (its resourceVersion makes a racing write a Conflict)."""
        return self.rest.json("PUT", self._path(name), body={**lease, "spec": spec})

    def delete(self, name):
        """True if deleted, False if it was already gone."""
        try:
            self.rest.json("DELETE", self._path(name))
            return True
        except NotFound:
            return False

    def list(self, labels):
        """The Leases with these labels (a dict), every page."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        items, _ = self.rest.items(self._path(), query={"labelSelector": selector})
        return items
