"""Table tests for the annotation parser: every rule, every message a user may see."""

import pytest

from lib.services import InvalidAnnotation, desired_exposure, enabled_is_invalid, last_valid_exposure


def svc(annotations=None, ports=None, **spec):
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("clusterIP", "10.96.0.10")
    spec["ports"] = [{"name": "http", "port": 8000, "protocol": "TCP"},
                     {"name": "metrics", "port": 9090, "protocol": "TCP"}] if ports is None else ports
    return {"metadata": {"namespace": "demo", "name": "web", "uid": "u1", "annotations": annotations},
            "spec": spec}


ON = {"mysocket.io/enabled": "true"}


def test_not_annotated_is_left_alone():
    assert desired_exposure(svc()) is None
    assert desired_exposure(svc({"mysocket.io/enabled": "false"})) is None
    assert desired_exposure(svc({"other": "x"})) is None


def test_defaults():
    e = desired_exposure(svc(ON))
    assert (e.namespace, e.name, e.cluster_ip, e.port, e.socket_type) == ("demo", "web", "10.96.0.10", 8000, "http")
    assert (e.cloud_auth_emails, e.cloud_auth_domains, e.protected_secret, e.retain, e.load_balancer) == \
        ((), (), "", False, False)


def test_enabled_is_case_and_space_tolerant():
    assert desired_exposure(svc({"mysocket.io/enabled": " True "})) is not None


def test_load_balancer_class_opts_in_without_annotation():
    e = desired_exposure(svc(None, type="LoadBalancer", loadBalancerClass="mysocket.io/tunnel"))
    assert e.load_balancer and e.port == 8000
    assert desired_exposure(svc(None, type="LoadBalancer")) is None
    assert desired_exposure(svc(None, type="LoadBalancer", loadBalancerClass="other.io/lb")) is None


@pytest.mark.parametrize("value, port", [("metrics", 9090), ("9090", 9090), ("http", 8000), (" 8000 ", 8000)])
def test_port_by_name_or_number(value, port):
    assert desired_exposure(svc({**ON, "mysocket.io/port": value})).port == port


def test_options():
    e = desired_exposure(svc({**ON, "mysocket.io/type": "TCP",
                              "mysocket.io/cloud-auth-emails": "b@x.io, a@x.io,,",
                              "mysocket.io/cloud-auth-domains": "example.com",
                              "mysocket.io/protected-secret": "web-auth",
                              "mysocket.io/retain": "true"}))
    assert e.socket_type == "tcp"
    assert e.cloud_auth_emails == ("a@x.io", "b@x.io")
    assert e.cloud_auth_domains == ("example.com",)
    assert e.protected_secret == "web-auth" and e.retain


H2C_PORT = [{"name": "grpc", "port": 50051, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
            {"name": "web", "port": 8000, "protocol": "TCP", "appProtocol": "http"}]


@pytest.mark.parametrize("annotations, ports, protocol", [
    (ON, None, "http/1.1"),                                                     # no appProtocol
    (ON, H2C_PORT, "h2c"),                                                      # the exposed port's
    ({**ON, "mysocket.io/port": "web"}, H2C_PORT, "http/1.1"),                  # ... not another port's
    ({**ON, "mysocket.io/upstream-protocol": " H2C "}, None, "h2c"),            # the annotation, where the
    ({**ON, "mysocket.io/upstream-protocol": "http/1.1"}, H2C_PORT, "http/1.1"),  # port cannot be changed
])
def test_upstream_protocol_from_app_protocol_or_the_annotation(annotations, ports, protocol):
    assert desired_exposure(svc(annotations, ports=ports)).upstream_protocol == protocol


@pytest.mark.parametrize("value, names", [
    (None, ()), ("", ()), ("Shop.Example.org.", ("shop.example.org",)),
    ("b.example.org, a.example.org,,a.example.org", ("a.example.org", "b.example.org")),
])
def test_hostnames_annotation(value, names):
    annotations = {**ON, "mysocket.io/hostnames": value} if value is not None else ON
    assert desired_exposure(svc(annotations)).hostnames == names


@pytest.mark.parametrize("annotations, spec, annotation, words", [
    ({"mysocket.io/enabled": "yes"}, {}, "mysocket.io/enabled", 'must be "true" or "false"'),
    ({**ON, "mysocket.io/port": "grpc"}, {}, "mysocket.io/port", "it has: http, metrics"),
    ({**ON, "mysocket.io/port": "70000"}, {}, "mysocket.io/port", "neither the name nor the number"),
    ({**ON, "mysocket.io/type": "udp"}, {}, "mysocket.io/type", "must be one of http, https, tcp, tls"),
    ({**ON, "mysocket.io/cloud-auth-emails": "not-an-email"}, {}, "mysocket.io/cloud-auth-emails",
     "is not an e-mail address"),
    ({**ON, "mysocket.io/cloud-auth-domains": "bad_domain"}, {}, "mysocket.io/cloud-auth-domains",
     "is not a domain name"),
    ({**ON, "mysocket.io/protected-secret": "Not/A/Name"}, {}, "mysocket.io/protected-secret",
     "not a valid Secret name"),
    ({**ON, "mysocket.io/retain": "sometimes"}, {}, "mysocket.io/retain", 'must be "true" or "false"'),
    ({**ON, "mysocket.io/hostnames": "shop.example.org, *.example.org"}, {}, "mysocket.io/hostnames",
     "'*.example.org' is a wildcard: name each host"),
    ({**ON, "mysocket.io/hostnames": "shop.example.org;www.example.org"}, {}, "mysocket.io/hostnames",
     "is not a host name such as app.example.org (expected a comma-separated list)"),
    ({**ON, "mysocket.io/hostnames": "localhost"}, {}, "mysocket.io/hostnames", "is not a host name"),
    ({**ON, "mysocket.io/upstream-protocol": "grpc"}, {}, "mysocket.io/upstream-protocol",
     'must be "h2c" (HTTP/2 without TLS, e.g. gRPC) or "http/1.1"'),
    (ON, {"clusterIP": "None"}, "mysocket.io/enabled", "headless"),
    (ON, {"type": "ExternalName", "clusterIP": None}, "mysocket.io/enabled", "ExternalName"),
])
def test_invalid_values_name_the_annotation(annotations, spec, annotation, words):
    with pytest.raises(InvalidAnnotation) as err:
        desired_exposure(svc(annotations, **spec))
    assert err.value.annotation == annotation
    assert words in str(err.value)


def test_no_ports():
    with pytest.raises(InvalidAnnotation, match="has no ports"):
        desired_exposure(svc(ON, ports=[]))


def test_udp_port_is_refused():
    with pytest.raises(InvalidAnnotation, match="only forward TCP"):
        desired_exposure(svc(ON, ports=[{"port": 53, "protocol": "UDP"}]))


def test_noise_is_quoted_short():
    noise = "\x00\xff" * 500
    with pytest.raises(InvalidAnnotation) as err:
        desired_exposure(svc({**ON, "mysocket.io/type": noise}))
    assert len(str(err.value)) < 200 and "(1000 characters)" in str(err.value)


LAST = "mysocket.io/last-valid"


@pytest.mark.parametrize("annotations, spec, port, ip", [
    # a typo in the port: the last valid port, on the Service's current ClusterIP
    ({**ON, "mysocket.io/port": "grpc", LAST: '{"mysocket.io/port":"metrics"}'}, {}, 9090, "10.96.0.10"),
    ({**ON, "mysocket.io/port": "grpc", LAST: '{"mysocket.io/port":"metrics"}'}, {"clusterIP": "10.96.7.7"},
     9090, "10.96.7.7"),
    # the last valid port is gone from the Service: nothing fits
    ({**ON, "mysocket.io/port": "grpc", LAST: '{"mysocket.io/port":"admin"}'}, {}, None, None),
    # the Service released its ClusterIP: nothing to forward to
    ({**ON, "mysocket.io/type": "htp", LAST: "{}"}, {"type": "ExternalName", "clusterIP": None}, None, None),
    ({**ON, "mysocket.io/type": "htp", LAST: "{}"}, {"clusterIP": "None"}, None, None),
    # nothing recorded, or garbage recorded
    ({**ON, "mysocket.io/type": "htp"}, {}, None, None),
    ({**ON, "mysocket.io/type": "htp", LAST: "not json"}, {}, None, None),
    ({**ON, "mysocket.io/type": "htp", LAST: '["x"]'}, {}, None, None),
])
def test_last_valid_options_are_resolved_against_the_service_as_it_is_now(annotations, spec, port, ip):
    e = last_valid_exposure(svc(annotations, **spec))
    assert (e.port, e.cluster_ip) == (port, ip) if port else e is None


@pytest.mark.parametrize("value, invalid", [("true", False), (" FALSE ", False), ("no", True), ("yes", True),
                                            ("", True), ("1", True), (None, False)])
def test_only_true_or_false_is_an_enabled_value(value, invalid):
    annotations = {} if value is None else {"mysocket.io/enabled": value}
    assert enabled_is_invalid(svc(annotations)) is invalid
    if invalid:
        with pytest.raises(InvalidAnnotation) as raised:
            desired_exposure(svc(annotations))
        assert raised.value.keeps_tunnel is False and "not exposed" in str(raised.value)


def test_a_typo_in_an_option_may_keep_the_tunnel_but_a_missing_clusterip_may_not():
    with pytest.raises(InvalidAnnotation) as raised:
        desired_exposure(svc({**ON, "mysocket.io/port": "grpc"}))
    assert raised.value.keeps_tunnel is True
    with pytest.raises(InvalidAnnotation) as raised:
        desired_exposure(svc(ON, type="ExternalName", clusterIP=None))
    assert raised.value.keeps_tunnel is False
