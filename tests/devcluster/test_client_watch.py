"""The Python kubernetes client can list, then watch from the list's resourceVersion."""

from kubernetes import client, watch


def test_list_then_watch_sees_added_modified_deleted(api_client, namespace):
    v1 = client.CoreV1Api(api_client)
    listed = v1.list_namespaced_service(namespace)
    assert listed.items == []

    # Created before the watch starts: the watch must replay it from the list's version.
    v1.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="watched"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))

    events = []
    w = watch.Watch()
    for event in w.stream(v1.list_namespaced_service, namespace,
                          resource_version=listed.metadata.resource_version,
                          timeout_seconds=20, _request_timeout=30):
        events.append((event["type"], event["object"].metadata.name))
        if event["type"] == "ADDED":
            v1.patch_namespaced_service("watched", namespace,
                                        {"metadata": {"labels": {"changed": "yes"}}})
        elif event["type"] == "MODIFIED":
            v1.delete_namespaced_service("watched", namespace)
        elif event["type"] == "DELETED":
            w.stop()

    assert events == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]
