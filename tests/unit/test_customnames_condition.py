"""What the mysocket.io/HostnamesVerified condition says for the names a socket carries."""

from lib.customnames import verdict


def test_no_custom_name_means_no_condition():
    assert verdict({"hostnames": []}) is None and verdict({}) is None


def test_every_name_proven_is_true():
    socket = {"hostnames": [{"hostname": "b.example.org", "verified": True},
                            {"hostname": "a.example.org", "verified": True}]}
    assert verdict(socket) == (True, "Verified", "served: a.example.org, b.example.org")


def test_an_unproven_name_is_false_with_what_to_create():
    socket = {"hostnames": [{"hostname": "a.example.org", "verified": True},
                            {"hostname": "c.example.org", "verified": False, "message": "create a CNAME"},
                            {"hostname": "b.example.org", "verified": False}]}
    assert verdict(socket) == (False, "Unverified", "b.example.org: not verified; c.example.org: create a CNAME")
