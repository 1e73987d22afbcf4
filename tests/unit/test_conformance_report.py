"""The conformance report kept in the repository says what the README says, and claims what mysocketd claims."""

from devcluster import conformance
from lib import gatewayapi


def test_the_claimed_features_are_the_gateway_class_s():
    core = {"Gateway", "HTTPRoute", "ReferenceGrant", "TLSRoute"}
    assert set(conformance.CLAIMED_FEATURES) == set(gatewayapi.SUPPORTED_FEATURES) - core


def test_the_kept_report_is_a_clean_run_of_the_claimed_features():
    report = conformance.Report.parse(conformance.REPORT.read_text())
    assert report.gateway_api_version == conformance.GATEWAY_API_VERSION
    profile = report.profile("GATEWAY-HTTP")
    assert report.problems() == []
    assert (profile.core.passed, profile.core.failed, profile.core.skipped) == (36, 0, 0)
    assert (profile.extended.passed, profile.extended.failed, profile.extended.skipped) == (15, 0, 0)
    assert set(profile.supported) == set(conformance.CLAIMED_FEATURES)
