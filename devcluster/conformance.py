"""The Gateway API conformance suite, run as the project's own test binary against a cluster.

    from devcluster import conformance
    conformance.install_crds(cp)                    # the pinned standard channel, server-side applied
    result = conformance.run(conformance.SuiteRun(kubeconfig=..., report=...))
    result.report.summary()                         # passed/failed/skipped per profile

Why it is shaped this way:
- The suite is the official one, unmodified: `go test -c` of
  sigs.k8s.io/gateway-api/conformance at the pinned version
  (devcluster/build.sh), run with its own flags. Its base manifests and
  test manifests are embedded in the binary; it finds the cluster through
  KUBECONFIG and the Gateways through their status addresses.
- What is claimed is said once, here (`CLAIMED_FEATURES`), and passed as
  `-supported-features`: the suite then runs the profile's core tests and the
  extended tests of exactly those features, and reports any other extended
  feature as unsupported (not skipped).
- Timing knobs stay at the suite's defaults, which the spec bounds
  (MaxTimeToConsistency at most 30 s); they are maxima, so a fast
  implementation never waits for them.
- The report the suite writes (YAML) is parsed here, so a test can fail on
  any failed or skipped test with their names, and `make conformance` keeps
  it in the repository.
"""

import dataclasses
import os
import subprocess
from pathlib import Path

import yaml

from .binaries import GATEWAY_API_VERSION, REPO_ROOT, gateway_api_crds, gateway_api_file

# One run of the suite for both profiles: the tests they share (the Gateway's own) run once.
PROFILES = ("GATEWAY-HTTP", "GATEWAY-GRPC")
# The extended features of GATEWAY-HTTP and GATEWAY-GRPC that mysocketd claims (lib/gatewayapi.SUPPORTED_FEATURES
# says the same in the GatewayClass's status; tests/unit/test_conformance_report.py keeps them equal).
CLAIMED_FEATURES = (
    "HTTPRouteHostRewrite", "HTTPRouteMethodMatching", "HTTPRoutePathRedirect", "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect", "HTTPRouteQueryParamMatching", "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect", "HTTPRoute303RedirectStatusCode", "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode", "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteNamedRouteRule", "GatewayHTTPListenerIsolation", "HTTPRouteBackendProtocolH2C",
    "GRPCRouteNamedRouteRule",
)
REPORT = REPO_ROOT / "conformance" / f"report-{GATEWAY_API_VERSION}.yaml"


@dataclasses.dataclass(frozen=True)
class SuiteRun:
    kubeconfig: Path
    report: Path
    gateway_class: str = "mysocket"
    profiles: tuple = PROFILES
    features: tuple = CLAIMED_FEATURES
    version: str = "dev"
    run_test: str = ""                  # one test by its short name (development only: not a conformance run)
    keep_base: bool = False             # leave the base manifests for the next run (development only)
    timeout_minutes: int = 30
    debug: bool = False


@dataclasses.dataclass(frozen=True)
class Status:
    result: str
    passed: int
    failed: int
    skipped: int
    failed_tests: tuple = ()
    skipped_tests: tuple = ()


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    core: Status
    extended: Status = None
    supported: tuple = ()
    unsupported: tuple = ()


@dataclasses.dataclass(frozen=True)
class Report:
    gateway_api_version: str
    channel: str
    profiles: tuple

    @classmethod
    def parse(cls, text):
        data = yaml.safe_load(text) or {}
        profiles = []
        for p in data.get("profiles") or []:
            ext = p.get("extended")
            profiles.append(Profile(p["name"], _status(p.get("core") or {}), _status(ext) if ext else None,
                                    tuple((ext or {}).get("supportedFeatures") or ()),
                                    tuple((ext or {}).get("unsupportedFeatures") or ())))
        return cls(data.get("gatewayAPIVersion", ""), data.get("gatewayAPIChannel", ""), tuple(profiles))

    def profile(self, name):
        return next((p for p in self.profiles if p.name == name), None)

    def summary(self):
        """One line per profile: what passed, failed and was skipped, core and extended."""
        lines = []
        for p in self.profiles:
            line = f"{p.name}: core {_counts(p.core)}"
            if p.extended:
                line += f"; extended {_counts(p.extended)} ({len(p.supported)} features claimed)"
            lines.append(line)
        return lines

    def problems(self):
        """Every failed or skipped test, by profile; empty when the run is clean."""
        out = []
        for p in self.profiles:
            for part, status in (("core", p.core), ("extended", p.extended)):
                if status is None:
                    continue
                out += [f"{p.name} {part}: {name} failed" for name in status.failed_tests]
                out += [f"{p.name} {part}: {name} skipped" for name in status.skipped_tests]
                if status.failed and not status.failed_tests:
                    out.append(f"{p.name} {part}: {status.failed} failed")
        return out


def _status(d):
    stats = d.get("statistics") or {}
    return Status(d.get("result", ""), stats.get("Passed", 0), stats.get("Failed", 0), stats.get("Skipped", 0),
                  tuple(d.get("failedTests") or ()), tuple(d.get("skippedTests") or ()))


def _counts(s):
    return f"{s.result}: {s.passed} passed, {s.failed} failed, {s.skipped} skipped"


@dataclasses.dataclass(frozen=True)
class Result:
    returncode: int
    report: Report
    log: Path


def install_crds(cp):
    """The Gateway API CRDs of the pinned version (standard channel); server-side: they are too large to
    carry kubectl's last-applied annotation."""
    for crd in gateway_api_crds():
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
               "crd/gateways.gateway.networking.k8s.io", "crd/httproutes.gateway.networking.k8s.io",
               "crd/gatewayclasses.gateway.networking.k8s.io", "crd/referencegrants.gateway.networking.k8s.io",
               "crd/grpcroutes.gateway.networking.k8s.io")


def argv(run: SuiteRun):
    args = [str(gateway_api_file("conformance.test")), "-test.run", "^TestConformance$", "-test.v",
            f"-test.timeout={run.timeout_minutes}m",
            f"-gateway-class={run.gateway_class}", f"-conformance-profiles={','.join(run.profiles)}",
            f"-supported-features={','.join(run.features)}",
            "-organization=mysocketd", "-project=mysocketd", "-url=https://github.com/mysocketd/mysocketd",
            f"-version={run.version}", "-contact=https://github.com/mysocketd/mysocketd/issues",
            f"-report-output={run.report}"]
    if run.run_test:
        args.append(f"-run-test={run.run_test}")
    if run.keep_base:
        args.append("-cleanup-base-resources=false")
    if run.debug:
        args.append("-debug")
    return args


def run(run: SuiteRun, log: Path) -> Result:
    """Run the suite to the end (it cleans up after itself); its output goes to `log`."""
    env = {**os.environ, "KUBECONFIG": str(run.kubeconfig)}
    run.report.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.run(argv(run), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              env=env, cwd=str(log.parent), timeout=run.timeout_minutes * 60 + 60)
    text = run.report.read_text() if run.report.exists() else ""
    return Result(proc.returncode, Report.parse(text), log)
