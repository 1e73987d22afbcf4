"""Which socket option changes replace a socket and which the edge takes in place (lib/sockets.py)."""

import pytest

from lib.sockets import differences, lists_differ

ON = {"socket_type": "http", "protected_socket": False, "protected_username": "",
      "cloud_authentication_enabled": True,
      "cloud_authentication_email_allowed_addressses": ["a@x.io"],
      "cloud_authentication_email_allowed_domains": ["x.io"]}


@pytest.mark.parametrize("wanted, replace, in_place", [
    ({}, [], []),
    ({"cloud_authentication_email_allowed_addressses": ["b@x.io", "a@x.io"]}, [],
     ["cloud_authentication_email_allowed_addressses"]),
    ({"cloud_authentication_email_allowed_domains": []}, [], ["cloud_authentication_email_allowed_domains"]),
    ({"cloud_authentication_enabled": False, "cloud_authentication_email_allowed_addressses": [],
      "cloud_authentication_email_allowed_domains": []}, ["cloud_authentication_enabled"], []),
    ({"socket_type": "tcp"}, ["socket_type"], []),
])
def test_lists_change_in_place_and_switching_sign_in_replaces(wanted, replace, in_place):
    fields = {**ON, **wanted}
    assert differences(ON, fields) == replace
    assert lists_differ(ON, fields) == in_place


def test_order_of_a_list_is_no_change():
    fields = {**ON, "cloud_authentication_email_allowed_addressses": ["a@x.io"]}
    socket = {**ON, "cloud_authentication_email_allowed_addressses": ["a@x.io"]}
    assert lists_differ(socket, fields) == []
