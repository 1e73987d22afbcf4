# mysocketd: the controller, its pinned runtime dependencies and the OpenSSH client. Nothing else:
# no compiler, no edge, no tests.
#
# Debian's own slim image and Debian's python3, with the pinned requirements in a venv: every layer
# comes from Debian packages and PyPI, so CI rebuilds it without any registry (devcluster/images.py
# makes the base with debootstrap and points this FROM at it).
FROM debian:bookworm-slim

# python3 runs mysocketd; openssh-client the tunnels; tini is PID 1 so that SIGTERM reaches mysocketd
# and any orphan is reaped. (Debian byte-compiles its python3 stdlib when the package is installed.)
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv openssh-client tini \
 && rm -rf /var/lib/apt/lists/*

# The root filesystem is read-only in the pod, so bytecode not compiled here would be compiled again
# at every start: ~2,500 files, 10-14 s to a healthy /healthz under a 50m CPU limit.
WORKDIR /app
COPY requirements.txt /app/requirements.txt
# Behind a TLS-intercepting proxy, pass its CA bundle for pip alone (mounted with -v, so it stays out
# of the image): --build-arg PIP_CERT=<path inside the build>. Unset, pip uses its own bundle.
ARG PIP_CERT
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /app/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes --disable-pip-version-check pip setuptools \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

COPY VERSION /app/VERSION
COPY mysocketd.py /app/mysocketd.py
COPY lib/ /app/lib/
RUN /opt/venv/bin/python -m compileall -q /app

# ssh refuses to run as a user missing from /etc/passwd, so the user is created, not just numbered.
RUN groupadd --gid 10001 mysocketd \
 && useradd --uid 10001 --gid 10001 --home-dir /run/mysocketd --no-create-home --shell /usr/sbin/nologin mysocketd
USER 10001:10001

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/run/mysocketd MYSOCKETD_STATE_DIR=/run/mysocketd
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/python", "/app/mysocketd.py"]
