# Developer and CI entry points. `make test` is exactly what CI (.ci/run) runs.
#
#   make test      the whole suite, inside private namespaces (see IN_NETNS);
#                  a subset: make test TESTS=tests/devcluster PYTEST_ARGS=-x
#                  (each test's time: .test-results.xml; the 15 slowest are printed at the end)
#   make cluster   a control plane in the foreground on host loopback; prints KUBECONFIG=...
#   make build     the binaries (devcluster/build.sh), the edge's Go data plane (edge/binary.py)
#                  and the node's images (devcluster/images.py); all cached: a second run does nothing
#   make venv      .venv with requirements-dev.txt (re-run only when requirements change)
#   make demo      the blog's demo end to end on one machine (devcluster/demo.py)
#   make demo-global  two clusters, three edge nodes on PostgreSQL, one pool name, a node killed
#                  mid-run (devcluster/demo_global.py)
#   make chaos     the chaos suite alone, with its recovery table (tests/chaos)
#   make bench     the benchmarks; writes bench/results/latest.json
#                  (BENCH_BEFORE=<git ref>: that ref's controller measured beside this one)
#   make push-image IMAGE=registry.example.com/team/mysocketd:0.1.0
#                  the controller's image, built as `make images` builds it, pushed to your registry

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
TESTS ?= tests/

# Run a command in fresh network + PID namespaces. The network namespace has
# only `lo` (brought up here): everything the tests start listens on loopback
# or on Service ClusterIPs added to that lo, and no packet reaches the host's
# network. The PID namespace makes the kernel kill every process the tests
# started once the command ends, however it ends (even SIGKILL); `sh` stays
# PID 1 -- the trailing `exit` stops it from exec'ing the command -- so that
# orphans are reaped instead of lingering as zombies. Then the cgroups of any
# real node (devcluster.nodecluster) whose owner died without its clean-up are
# removed: cgroups are the host's, processes are not. Needs root.
IN_NETNS := unshare --net --pid --fork --kill-child --mount-proc -- \
	sh -c 'ip link set lo up && "$$@"; rc=$$?; $(PY) -m devcluster.cgroups; exit $$rc' in-netns

.PHONY: test build binaries dataplane images push-image cluster venv mysocketctl demo demo-global bench chaos conformance

test: venv build mysocketctl
	$(IN_NETNS) $(PY) -m pytest -ra --timeout=300 --durations=15 --junitxml=.test-results.xml $(PYTEST_ARGS) $(TESTS)

build: binaries dataplane images

binaries:
	devcluster/build.sh

# The edge's data plane (Go, edge/dataplane/) into .cache/edge/; a second run does nothing.
dataplane:
	$(PYTHON) -m edge.binary

# Images for the local node, from Debian packages (debootstrap) and the Dockerfile, built by podman.
images: venv
	$(PY) -m devcluster.images

# The image your cluster pulls (README: On your cluster, step 3). `podman login <registry>` first.
push-image: venv
	@test -n "$(IMAGE)" || { echo "make push-image: set IMAGE=<registry>/<name>:<tag>, e.g. IMAGE=registry.example.com/team/mysocketd:0.1.0"; exit 2; }
	$(PY) -m devcluster.images --push "$(IMAGE)"

cluster: venv build
	$(PY) -m devcluster

demo: venv build
	$(IN_NETNS) $(PY) -m devcluster.demo

demo-global: venv build
	$(IN_NETNS) $(PY) -m devcluster.demo_global

bench: venv build
	bench/build_peer.sh
	$(IN_NETNS) $(PY) -m bench

# The chaos suite alone (make test runs it too), with its recovery table.
chaos: venv build
	$(IN_NETNS) $(PY) -m pytest -ra --timeout=600 $(PYTEST_ARGS) tests/chaos/

# The Gateway API conformance suite (GATEWAY-HTTP and GATEWAY-GRPC) against mysocketd and the edge on a real node alone
# (make test runs it too); it writes the report kept in conformance/. CONFORMANCE_RUN_TEST=<name> runs one test.
conformance: venv build
	MYSOCKETD_CONFORMANCE_REPORT=keep $(IN_NETNS) $(PY) -m pytest -ra --timeout=2400 $(PYTEST_ARGS) tests/conformance/

venv: $(VENV)/.requirements-installed

# The historical CLI, unmodified, in a venv of its own (its pins clash with ours):
# tests/edge/test_mysocketctl.py proves the edge still speaks its contract.
mysocketctl: .venv-mysocketctl/.installed

.venv-mysocketctl/.installed:
	$(PYTHON) -m venv .venv-mysocketctl
	.venv-mysocketctl/bin/pip install --quiet --disable-pip-version-check mysocketctl==0.15
	touch $@

$(VENV)/.requirements-installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@
