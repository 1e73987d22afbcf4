# mysocketd: the controller, its pinned runtime dependencies and the OpenSSH client. Nothing else:
# no compiler, no edge, no tests.
FROM python:3.11.11-slim-bookworm

# openssh-client runs the tunnels; tini is PID 1 so that SIGTERM reaches mysocketd and any orphan is reaped.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir --no-compile -r /app/requirements.txt

COPY mysocketd.py /app/mysocketd.py
COPY lib/ /app/lib/

# ssh refuses to run as a user missing from /etc/passwd, so the user is created, not just numbered.
RUN groupadd --gid 10001 mysocketd \
 && useradd --uid 10001 --gid 10001 --home-dir /run/mysocketd --no-create-home --shell /usr/sbin/nologin mysocketd
USER 10001:10001

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/run/mysocketd MYSOCKETD_STATE_DIR=/run/mysocketd
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "python", "/app/mysocketd.py"]
