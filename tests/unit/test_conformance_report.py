"""The conformance report kept in the repository says what the README says, and claims what mysocketd claims."""

from devcluster import conformance
from lib import gatewayapi


def test_the_claimed_features_are_the_gateway_class_s():
    core = {"Gateway", "HTTPRoute", "ReferenceGrant", "TLSRoute", "GRPCRoute"}
    assert set(conformance.CLAIMED_FEATURES) == set(gatewayapi.SUPPORTED_FEATURES) - core


def test_the_kept_report_is_a_clean_run_of_the_claimed_features():
    report = conformance.Report.parse(conformance.REPORT.read_text())
    assert report.gateway_api_version == conformance.GATEWAY_API_VERSION
    assert report.problems() == []
    http, grpc = report.profile("GATEWAY-HTTP"), report.profile("GATEWAY-GRPC")
    assert (http.core.passed, http.core.failed, http.core.skipped) == (36, 0, 0)
    assert (http.extended.passed, http.extended.failed, http.extended.skipped) == (16, 0, 0)
    assert (grpc.core.passed, grpc.core.failed, grpc.core.skipped) == (14, 0, 0)
    # GRPCRouteNamedRouteRule belongs to no profile's extended set: the suite runs its test (claimed) but
    # lists it nowhere in the report.
    assert set(http.supported) | set(grpc.supported) == set(conformance.CLAIMED_FEATURES) - {"GRPCRouteNamedRouteRule"}
