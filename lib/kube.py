"""Everything the controller says to the Kubernetes API.

Objects travel as the plain JSON dicts the API serves, through the official
client's ApiClient (its kubeconfig and in-cluster auth, token refresh and
connection pool) but not its generated API classes: those would import the
whole model tree, measured at 23 MB of RSS and a second of start-up, to
produce objects this controller never uses. The annotation parser, the
tests and a reader of `kubectl get -o json` all see the same shape.

Writes are strategic-merge patches under the field manager `mysocketd`:
annotations merge key by key (null deletes one) and `metadata.finalizers`
merges as a set, so the controller never overwrites another writer's
annotations or finalizers, and a patch of a Service that no longer exists is
a 404 rather than the re-creation a server-side apply would attempt. Every
patch carries the Service's uid, so a Service deleted and re-created under the
same name is never written with the old one's state. The apiserver refuses
such a patch with 422 Invalid ("metadata.uid: field is immutable"), not 409;
it is raised as ChangedMeanwhile, a 409, so that every caller sees one
"changed meanwhile, look again" answer.

The watch is done by hand (see `watch_services`) so that 410 Gone, a dropped
stream and a silent one are all visible to the caller, which lists again; the
client's own Watch retries a 410 once internally, which hides exactly that.

Events are posted by a thread of their own: they are a courtesy to the user,
and at ~10 ms each they would otherwise sit on the path from annotation to
public name.
"""

import base64
import collections
import datetime
import json
import logging
import os
import queue
import socket as pysocket
import threading

from kubernetes.watch.watch import iter_resp_lines

from lib.apierrors import (
    Conflict,
    Gone,
    Invalid,
    KubeError,
    NoNamespace,
    NotFound,
    from_status,
    mapped,
    missing_namespace,
    response_error,
)

FIELD_MANAGER = "mysocketd"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"

log = logging.getLogger(__name__)


__all__ = ["ERRORS", "ChangedMeanwhile", "Gone", "Kube", "Rest", "describe_error"]


class ChangedMeanwhile(Conflict):
    """A 409: the Service written was deleted and re-created under its name since it was read."""

    def __init__(self, service):
        meta = service["metadata"]
        super().__init__(f"Conflict: Service {meta['namespace']}/{meta['name']} was deleted and "
                         f"re-created meanwhile (uid {meta['uid']} is gone)", status=409)


# What a call to the apiserver can raise (lib/apierrors.py): an answer, or no answer at all.
ERRORS = (KubeError,)


def describe_error(error):
    """A short, secret-free description of an apiserver error for a log line."""
    return str(error)[:300]


class NoCluster(Exception):
    """No usable way to reach a Kubernetes apiserver; the message says what to set (start-up only)."""


def api_client(kubeconfig=None):
    """An ApiClient and where its settings came from: a kubeconfig when there is one (KUBECONFIG, else
    ~/.kube/config), else the in-cluster ServiceAccount. NoCluster, in one line, when neither works.

    A kubeconfig that exists but cannot be used is reported, not skipped for the in-cluster
    settings: the user who wrote it meant it. The client's own exceptions stop here.
    """
    from kubernetes import client, config
    paths = _kubeconfig_paths(kubeconfig)
    configuration = client.Configuration()
    if paths:
        shown = kubeconfig or ":".join(paths)
        existing = [p for p in paths if os.path.exists(p)]     # kubectl too skips the missing ones of a list
        if not existing:
            raise NoCluster(f"the kubeconfig {shown} does not exist: fix KUBECONFIG, or unset it to use "
                            "~/.kube/config or, in a pod, its ServiceAccount")
        try:
            config.load_kube_config(config_file=":".join(existing), client_configuration=configuration)
        except Exception as e:  # noqa: BLE001 -- ConfigException, YAML, OSError, and KeyErrors of odd files
            raise NoCluster(f"cannot use the kubeconfig {shown}: {_first_line(e)}: fix it, or point KUBECONFIG "
                            "at one that `kubectl get namespaces` accepts") from None
        source = shown
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except Exception as e:  # noqa: BLE001 -- ConfigException, OSError
            raise NoCluster(f"cannot use this pod's ServiceAccount: {_first_line(e)}: mount its token "
                            "(automountServiceAccountToken must not be false)") from None
        source = "in-cluster ServiceAccount"
    else:
        raise NoCluster("no Kubernetes cluster to talk to: no kubeconfig (KUBECONFIG is unset and ~/.kube/config "
                        "does not exist) and not in a pod (KUBERNETES_SERVICE_HOST is not set): set KUBECONFIG, "
                        "or run mysocketd in the cluster (README: On your cluster)")
    configuration.retries = 0       # one attempt per backoff step of ours, not four with urllib3's warnings
    return client.ApiClient(configuration), source


def _kubeconfig_paths(explicit):
    """The kubeconfig files to read, as kubectl would choose them; [] when there are none."""
    if explicit:
        return [explicit]
    value = os.environ.get("KUBECONFIG")
    if value is not None and value.strip(":"):
        return [p for p in value.split(":") if p]
    default = os.path.expanduser("~/.kube/config")
    return [default] if os.path.exists(default) else []


def _first_line(error):
    text = (str(error) or error.__class__.__name__).strip().splitlines()
    return (text[0] if text else error.__class__.__name__)[:300]


class Rest:
    """Raw JSON calls over an ApiClient: its auth and pool, none of its models."""

    def __init__(self, api):
        self.api = api

    def call(self, method, path, *, query=None, body=None, content_type="application/json", timeout=(5, 30)):
        """The urllib3 response of a 2xx answer (not yet read); a lib.apierrors error otherwise."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        with mapped():
            request = self.api.param_serialize(method, path, query_params=list((query or {}).items()),
                                               header_params=headers, body=body, auth_settings=["BearerToken"])
            resp = self.api.call_api(*request, _request_timeout=timeout)
            if not 200 <= resp.status <= 299:
                resp.read()
                raise response_error(resp)
        return resp.response

    def json(self, method, path, **kwargs):
        resp = self.call(method, path, **kwargs)
        with mapped():
            return json.loads(resp.data)

    def items(self, path, query=None, page=500, timeout=(5, 60)):
        """Every item of a collection, a page at a time (`limit`/`continue`), and the list's resourceVersion.

        Pages keep each answer (and the apiserver's work per request) bounded however large the
        cluster; a continue token that expired meanwhile (410) is the caller's cue to list again.
        """
        items, token = [], None
        while True:
            body = self.json("GET", path, query={**(query or {}), "limit": str(page),
                                                 **({"continue": token} if token else {})}, timeout=timeout)
            items += body.get("items") or []
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return items, (body.get("metadata") or {}).get("resourceVersion")


SERVICES = ("/api/v1", "services")
ENDPOINT_SLICES = ("/apis/discovery.k8s.io/v1", "endpointslices")


def _collection_path(kind, namespace):
    prefix, plural = kind
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def _services_path(namespace):
    return _collection_path(SERVICES, namespace)


class Kube:
    def __init__(self, api, namespace=""):
        self.rest = Rest(api)
        self.namespace = namespace
        self.events = EventRecorder(self.rest)

    # -- reading -----------------------------------------------------------

    def list_services(self):
        return self.list(SERVICES)

    def watch_services(self, resource_version, timeout_seconds=240, idle_timeout=90):
        return self.watch(SERVICES, resource_version, timeout_seconds, idle_timeout)

    def list(self, kind, selector=None):
        """All objects of a kind (SERVICES, ENDPOINT_SLICES) in scope, and the resourceVersion to watch from."""
        return self.rest.items(_collection_path(kind, self.namespace),
                               query={"labelSelector": selector} if selector else None)

    def watch(self, kind, resource_version, timeout_seconds=240, idle_timeout=90, selector=None):
        """Yield (type, object dict) from resource_version until the server ends the watch.

        BOOKMARK events are yielded too: they only advance the resourceVersion
        (the apiserver sends one only when its resourceVersion moved past the
        watch's, so a healthy stream on a quiet cluster can say nothing until
        timeout_seconds). The read timeout (idle_timeout) ends a stream that
        said nothing for that long, whether quiet or silently dropped on the
        way: lib.apierrors.Silent, which the caller treats as routine.
        """
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds)}
        if selector:
            query["labelSelector"] = selector
        resp = self.rest.call("GET", _collection_path(kind, self.namespace), query=query,
                              timeout=(5, idle_timeout))
        try:
            with mapped():
                for line in iter_resp_lines(resp):
                    if not line:
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event.get("object") or {}
                        raise from_status(status.get("code"), status.get("message", ""))
                    yield event["type"], event["object"]
        finally:
            resp.release_conn()

    def secret(self, namespace, name):
        """{"data" (decoded), "labels", "version"} of a Secret; None if it does not exist.

        `version` (uid/resourceVersion) changes with every write, so a rotated password is noticed
        without keeping the password itself anywhere but in memory.
        """
        try:
            body = self.rest.json("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except NotFound:
            return None
        meta = body.get("metadata") or {}
        data = body.get("data") or {}
        return {"data": {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()},
                "labels": meta.get("labels") or {},
                "version": f"{meta.get('uid')}/{meta.get('resourceVersion')}"}

    def namespace_uid(self, name):
        """The UID of a namespace: kube-system's is the cluster's identity (see lib/identity.py)."""
        return self.rest.json("GET", f"/api/v1/namespaces/{name}")["metadata"]["uid"]

    def configmap(self, namespace, name):
        """A ConfigMap's data, or None if it does not exist."""
        try:
            body = self.rest.json("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        except NotFound:
            return None
        return body.get("data") or {}

    def create_configmap(self, namespace, name, data):
        """Create a ConfigMap; if another writer created it first, theirs is returned."""
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                "data": data}
        try:
            return self.rest.json("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body,
                                  query={"fieldManager": FIELD_MANAGER}).get("data") or {}
        except Conflict:
            pass
        except NotFound as e:
            if missing_namespace(e):
                raise NoNamespace(namespace, "--lease-namespace (MYSOCKETD_LEASE_NAMESPACE)") from None
            raise
        return self.configmap(namespace, name)

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
        return self._patch(service, "", {"metadata": meta}, SMP)

    def set_load_balancer_hostname(self, service, hostname):
        """status.loadBalancer.ingress, so `kubectl get svc` shows the public name under EXTERNAL-IP."""
        ingress = [{"hostname": hostname}] if hostname else None
        body = {"metadata": {"uid": service["metadata"]["uid"]}, "status": {"loadBalancer": {"ingress": ingress}}}
        self._patch(service, "/status", body, MERGE)

    def _patch(self, service, subresource, body, content_type):
        try:
            return self.rest.json("PATCH", _service_path(service) + subresource, body=body,
                                  content_type=content_type, query={"fieldManager": FIELD_MANAGER})
        except Invalid as e:
            if _stale_uid(e):
                raise ChangedMeanwhile(service) from None
            raise

    def set_condition(self, service, kind, ok, reason, message):
        """One condition of status.conditions (strategic merge by type: others' conditions stay)."""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"type": kind, "status": "True" if ok else "False", "reason": reason,
                     "message": message[:1024], "lastTransitionTime": now}
        body = {"metadata": {"uid": service["metadata"]["uid"]}, "status": {"conditions": [condition]}}
        self._patch(service, "/status", body, SMP)

    def remove_condition(self, service, kind):
        """Take one condition of ours out of status.conditions (others' conditions stay)."""
        body = {"metadata": {"uid": service["metadata"]["uid"]},
                "status": {"conditions": [{"type": kind, "$patch": "delete"}]}}
        self._patch(service, "/status", body, SMP)

    def event(self, service, kind, reason, message):
        self.events.post(service, kind, reason, message)

    def forget_events(self, uid):
        self.events.forget(uid)


def _stale_uid(error):
    """True for the apiserver's answer to a patch whose metadata.uid is not the object's."""
    try:
        causes = json.loads(error.body or "{}").get("details", {}).get("causes") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("field") == "metadata.uid" for c in causes)


def _service_path(service):
    meta = service["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/services/{meta['name']}"


class EventRecorder(threading.Thread):
    """Posts core/v1 Events in order, off the controller's loop; a repeat bumps the earlier one's count.

    The queue is bounded: while the apiserver is away, the oldest news is
    what matters least, so new Events beyond the bound are dropped. What was
    posted is remembered per Service and reason, not per text: a message that
    changes (a retry delay, a count) replaces the record instead of adding one,
    and the least recently used records beyond `remembered` are forgotten, so
    the memory is bounded by what is exposed, never by how long it ran.
    """

    def __init__(self, rest, size=1000, remembered=10000):
        super().__init__(name="events", daemon=True)
        self.rest = rest
        self.queue = queue.Queue(size)
        self.instance = pysocket.gethostname()
        self.remembered = remembered
        # (uid, reason) -> (message, Event name, count), least recently used first; only this thread touches it
        self._posted = collections.OrderedDict()
        self.start()

    def post(self, service, kind, reason, message):
        meta = service["metadata"]
        try:
            self.queue.put_nowait(({k: meta[k] for k in ("namespace", "name", "uid")}, kind, reason, message))
        except queue.Full:
            pass

    def forget(self, uid):
        try:
            self.queue.put_nowait(uid)
        except queue.Full:
            pass

    def flush(self, timeout=5.0):
        """Wait until every queued Event is posted (for tests and a clean stop)."""
        done = threading.Event()
        self.queue.put(done)
        done.wait(timeout)

    def run(self):
        while True:
            item = self.queue.get()
            if isinstance(item, threading.Event):
                item.set()
            elif isinstance(item, str):
                for key in [k for k in self._posted if k[0] == item]:
                    del self._posted[key]
            else:
                self._post(*item)

    def _post(self, meta, kind, reason, message):
        key = (meta["uid"], reason)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        events = f"/api/v1/namespaces/{meta['namespace']}/events"
        try:
            said, name, count = self._posted.get(key, (None, None, 0))
            if said == message:
                self.rest.json("PATCH", f"{events}/{name}", body={"count": count + 1, "lastTimestamp": now},
                               content_type=MERGE)
                self._remember(key, (message, name, count + 1))
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
            created = self.rest.json("POST", events, body=body)
            self._remember(key, (message, created["metadata"]["name"], 1))
        except KubeError as e:
            self._posted.pop(key, None)
            log.warning("could not post Event %s: %s", reason, getattr(e, "status", None) or e.__class__.__name__,
                        extra={"namespace": meta["namespace"], "service": meta["name"]})

    def _remember(self, key, value):
        self._posted[key] = value
        self._posted.move_to_end(key)
        while len(self._posted) > self.remembered:
            self._posted.popitem(last=False)
