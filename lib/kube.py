"""Everything the controller says to the Kubernetes API.

Objects travel as the plain JSON dicts the API serves (`_preload_content=False`),
not as the client's generated models: the annotation parser, the tests and a
reader of `kubectl get -o json` then all see the same shape.

Writes are strategic-merge patches under the field manager `mysocketd`:
annotations merge key by key (null deletes one) and `metadata.finalizers`
merges as a set, so the controller never overwrites another writer's
annotations or finalizers, and a patch of a Service that no longer exists is
a 404 rather than the re-creation a server-side apply would attempt. Every
patch carries the Service's uid, so a Service deleted and re-created under the
same name is never written with the old one's state (the API answers 409).

The watch is done by hand (see `watch_services`) so that 410 Gone, a dropped
stream and a silent one are all visible to the caller, which lists again; the
client's own Watch retries a 410 once internally, which hides exactly that.
"""

import datetime
import json
import logging
import socket as pysocket

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

FIELD_MANAGER = "mysocketd"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"

log = logging.getLogger(__name__)


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def api_client(kubeconfig=None):
    """KUBECONFIG or ~/.kube/config when present, else the in-cluster ServiceAccount."""
    from kubernetes import config
    try:
        config.load_kube_config(config_file=kubeconfig)
        source = kubeconfig or "kubeconfig"
    except (config.ConfigException, FileNotFoundError, TypeError):
        config.load_incluster_config()
        source = "in-cluster ServiceAccount"
    return client.ApiClient(), source


def _json(resp):
    return json.loads(resp.data)


class Kube:
    def __init__(self, api, namespace=""):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self._events = {}   # (uid, reason, message) -> (event name, count), to count repeats like kubectl does
        self.instance = pysocket.gethostname()

    # -- reading -----------------------------------------------------------

    def list_services(self):
        """All Services in scope and the list's resourceVersion to watch from."""
        kwargs = {"_preload_content": False, "_request_timeout": (5, 60)}
        if self.namespace:
            body = _json(self.core.list_namespaced_service(self.namespace, **kwargs))
        else:
            body = _json(self.core.list_service_for_all_namespaces(**kwargs))
        return body["items"], body["metadata"]["resourceVersion"]

    def watch_services(self, resource_version, timeout_seconds=240, idle_timeout=90):
        """Yield (type, Service dict) from resource_version until the server ends the watch.

        BOOKMARK events are yielded too: they only advance the resourceVersion.
        The read timeout (idle_timeout) ends a stream that went silent without
        closing, which the server's bookmarks would otherwise have interrupted.
        """
        kwargs = {"watch": True, "resource_version": resource_version, "allow_watch_bookmarks": True,
                  "timeout_seconds": timeout_seconds, "_preload_content": False,
                  "_request_timeout": (5, idle_timeout)}
        if self.namespace:
            resp = self.core.list_namespaced_service(self.namespace, **kwargs)
        else:
            resp = self.core.list_service_for_all_namespaces(**kwargs)
        try:
            for line in iter_resp_lines(resp):
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise Gone(status.get("message", "resourceVersion too old"))
                    raise ApiException(status=status.get("code"), reason=status.get("message"))
                yield event["type"], event["object"]
        finally:
            resp.release_conn()

    def secret(self, namespace, name):
        """The Secret's data, decoded; None if it does not exist."""
        import base64
        try:
            body = _json(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (body.get("data") or {}).items()}

    # -- writing -----------------------------------------------------------

    def patch_metadata(self, service, annotations=None, add_finalizer=None, remove_finalizer=None):
        """Merge annotations (None values delete) and add or remove one finalizer."""
        meta = {"uid": service["metadata"]["uid"]}
        if annotations:
            meta["annotations"] = annotations
        if add_finalizer:
            meta["finalizers"] = [add_finalizer]
        if remove_finalizer:
            meta["$deleteFromPrimitiveList/finalizers"] = [remove_finalizer]
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        resp = self.core.patch_namespaced_service(name, ns, {"metadata": meta}, field_manager=FIELD_MANAGER,
                                                  _content_type=SMP, _preload_content=False)
        return _json(resp)

    def set_load_balancer_hostname(self, service, hostname):
        """status.loadBalancer.ingress, so `kubectl get svc` shows the public name under EXTERNAL-IP."""
        ingress = [{"hostname": hostname}] if hostname else None
        body = {"metadata": {"uid": service["metadata"]["uid"]}, "status": {"loadBalancer": {"ingress": ingress}}}
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        self.core.patch_namespaced_service_status(name, ns, body, field_manager=FIELD_MANAGER,
                                                  _content_type=MERGE, _preload_content=False)

    def event(self, service, kind, reason, message):
        """Post a core/v1 Event on the Service; a repeat bumps the count of the earlier one."""
        meta = service["metadata"]
        key = (meta["uid"], reason, message)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            if key in self._events:
                name, count = self._events[key]
                self.core.patch_namespaced_event(name, meta["namespace"],
                                                 {"count": count + 1, "lastTimestamp": now},
                                                 _content_type=MERGE, _preload_content=False)
                self._events[key] = (name, count + 1)
                return
            body = {
                "metadata": {"generateName": meta["name"] + ".", "namespace": meta["namespace"]},
                "involvedObject": {"kind": "Service", "apiVersion": "v1", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta["uid"]},
                "reason": reason, "message": message[:1024], "type": kind,
                "source": {"component": "mysocketd"}, "reportingComponent": "mysocketd",
                "reportingInstance": self.instance,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            }
            created = _json(self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False))
            self._events[key] = (created["metadata"]["name"], 1)
        except (ApiException, HTTPError) as e:
            # An Event is a courtesy: failing to post one must not fail the reconcile.
            self._events.pop(key, None)
            log.warning("could not post Event %s: %s", reason, getattr(e, "status", None) or e.__class__.__name__,
                        extra={"namespace": meta["namespace"], "service": meta["name"]})

    def forget_events(self, uid):
        for key in [k for k in self._events if k[0] == uid]:
            del self._events[key]

