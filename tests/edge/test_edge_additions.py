"""The edge's additions to the contract that mysocketd's replicas and pools stand on (edge/README.md):
tunnel owners and their connected state, one socket per name, a delete that spares others' members,
and a socket's basic auth changed in place."""

import base64
import concurrent.futures

import pytest

from edgetest_helpers import forward_argv

pytestmark = pytest.mark.timeout(60)


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_tunnel_keeps_its_owner_and_says_whether_it_is_connected(edge, account, ssh, backend):
    sock = edge.api("POST", "/socket", {"name": "web"}, token=account.token).body
    base = f"/socket/{sock['socket_id']}"
    mine = edge.api("POST", base + "/tunnel", {"owner": "cluster-a/replica-1"}, token=account.token).body
    plain = edge.api("POST", base + "/tunnel", {}, token=account.token).body
    assert (mine["owner"], plain["owner"]) == ("cluster-a/replica-1", "")
    listed = {t["tunnel_id"]: t for t in edge.api("GET", base + "/tunnel", token=account.token).body}
    assert listed[mine["tunnel_id"]] == {**mine, "connected": False}

    server = backend("app")
    ssh.start(forward_argv(edge, account, mine["local_port"], server.port))
    edge.wait_forward(mine["local_port"])
    [listed] = [s for s in edge.api("GET", "/connect", token=account.token).body if s["socket_id"] == sock["socket_id"]]
    assert {t["owner"]: t["connected"] for t in listed["tunnels"]} == {"cluster-a/replica-1": True, "": False}
    one = edge.api("GET", base + "/tunnel/" + mine["tunnel_id"], token=account.token).body
    assert one["connected"] is True


def test_one_socket_per_name_however_many_ask_at_once(edge, account):
    for round_ in range(10):
        body = {"name": f"pool/shared-{round_}", "unique_name": True}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: edge.api("POST", "/socket", body, token=account.token), range(4)))
        assert {a.status for a in answers} == {200}
        assert len({a.body["socket_id"] for a in answers}) == 1
    names = [s["name"] for s in edge.api("GET", "/connect", token=account.token).body]
    assert sorted(n for n in names if n.startswith("pool/")) == sorted(f"pool/shared-{i}" for i in range(10))


def test_one_socket_per_name_refuses_other_options(edge, account):
    assert edge.api("POST", "/socket", {"name": "p", "unique_name": True}, token=account.token).status == 200
    other = edge.api("POST", "/socket", {"name": "p", "unique_name": True, "socket_type": "tcp"}, token=account.token)
    assert other.status == 409 and "other options" in other.body["error_message"]
    plain = edge.api("POST", "/socket", {"name": "p"}, token=account.token)       # without the flag: as ever
    assert plain.status == 200


def test_a_delete_spares_a_socket_that_others_still_use(edge, account):
    sock = edge.api("POST", "/socket", {"name": "pool"}, token=account.token).body
    base = f"/socket/{sock['socket_id']}"
    edge.api("POST", base + "/tunnel", {"owner": "cluster-a/r1"}, token=account.token)
    theirs = edge.api("POST", base + "/tunnel", {"owner": "cluster-b/r1"}, token=account.token).body
    refused = edge.api("DELETE", base + "?unless_used_by_others=cluster-a/", token=account.token)
    assert refused.status == 409 and "other owners" in refused.body["error_message"]
    assert edge.api("GET", base, token=account.token).status == 200
    edge.api("DELETE", base + "/tunnel/" + theirs["tunnel_id"], token=account.token)
    assert edge.api("DELETE", base + "?unless_used_by_others=cluster-a/", token=account.token).status == 204
    assert edge.api("GET", base, token=account.token).status == 404


def test_basic_auth_changed_in_place_keeps_the_name(edge, account, ssh, backend):
    sock = edge.api("POST", "/connect", {"name": "web", "protected_socket": True, "protected_username": "alice",
                                         "protected_password": "old-secret"}, token=account.token).body
    server = backend("app")
    ssh.start(forward_argv(edge, account, sock["tunnels"][0]["local_port"], server.port))
    edge.wait_forward(sock["tunnels"][0]["local_port"])
    assert edge.get(sock["dnsname"], headers=basic("alice", "old-secret"))[0] == 200
    changed = edge.api("PATCH", f"/socket/{sock['socket_id']}", {
        "protected_socket": True, "protected_username": "alice", "protected_password": "new-secret"},
        token=account.token)
    assert changed.status == 200 and changed.body["dnsname"] == sock["dnsname"]
    assert edge.get(sock["dnsname"], headers=basic("alice", "old-secret"))[0] == 401
    assert edge.get(sock["dnsname"], headers=basic("alice", "new-secret"))[0] == 200
    bad = edge.api("PATCH", f"/socket/{sock['socket_id']}", {"protected_socket": True}, token=account.token)
    assert bad.status == 400


def test_another_accounts_socket_cannot_be_changed_or_deleted(edge, account, new_account):
    sock = edge.api("POST", "/socket", {"name": "mine"}, token=account.token).body
    other = new_account()
    base = f"/socket/{sock['socket_id']}"
    assert edge.api("PATCH", base, {"protected_socket": False}, token=other.token).status == 404
    assert edge.api("DELETE", base + "?unless_used_by_others=x", token=other.token).status == 404


def test_connect_tags_the_tunnel_it_makes(edge, account):
    sock = edge.api("POST", "/connect", {"name": "web", "tunnel_owner": "cluster-a/ns/web/r1"},
                    token=account.token).body
    assert [(t["owner"], t["connected"]) for t in sock["tunnels"]] == [("cluster-a/ns/web/r1", False)]
    plain = edge.api("POST", "/connect", {"name": "old-client"}, token=account.token).body
    assert plain["tunnels"][0]["owner"] == ""
