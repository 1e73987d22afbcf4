"""RBAC is really enforced: a ServiceAccount can do exactly what its ClusterRole allows."""

import json
import time

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException


def _list_status(v1: client.CoreV1Api, namespace: str) -> int:
    try:
        return v1.list_namespaced_service_with_http_info(namespace)[1]
    except ApiException as e:
        return e.status


def _read_only_role(name: str, namespace: str, service_account: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name},
         "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": service_account,
                       "namespace": namespace}]},
    ]})


def test_service_account_may_list_services_but_not_patch(
        control_plane, namespace, service_account_kubeconfig):
    control_plane.kubectl("create", "service", "clusterip", "target", "--tcp=80:8080",
                          "-n", namespace)
    sa_client = config.new_client_from_config(
        config_file=str(service_account_kubeconfig(namespace, "reader")))
    role = f"{namespace}-service-reader"
    try:
        v1 = client.CoreV1Api(sa_client)
        assert _list_status(v1, namespace) == 403, "no binding yet: list must be forbidden"

        control_plane.kubectl("apply", "-f", "-", input=_read_only_role(role, namespace, "reader"))
        # The authorizer reads bindings from an informer cache: allow it a moment.
        deadline = time.monotonic() + 15
        while (status := _list_status(v1, namespace)) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200

        with pytest.raises(ApiException) as denied:
            v1.patch_namespaced_service("target", namespace,
                                        {"metadata": {"labels": {"touched": "yes"}}})
        assert denied.value.status == 403
    finally:
        sa_client.close()
        control_plane.kubectl("delete", "clusterrolebinding,clusterrole", role,
                              "--ignore-not-found", check=False)
