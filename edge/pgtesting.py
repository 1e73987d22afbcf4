"""A real PostgreSQL for tests, benchmarks and the global demo (Debian's ``postgresql``).

    with PostgresServer() as pg:
        url = pg.new_database("edge_test")      # postgresql://postgres@127.0.0.1:PORT/edge_test
        ...
        pg.stop(); pg.start()                    # an outage, same data

Why it is shaped this way:
- PostgreSQL refuses to run as root, so initdb and the server run as the
  ``postgres`` user the package creates (``runuser``), in a directory of their
  own under /tmp that user can reach (a test's tmp_path is root's, mode 0700).
- The server listens on 127.0.0.1 and a unix socket in that directory only
  (``-h 127.0.0.1 -k DIR``), on a port chosen free at start and kept for
  restarts, so an outage (``stop()``) and a return (``start()``) look to the
  edge exactly like a database server going away and coming back.
- Trust authentication on loopback inside the test's private network
  namespace; fsync off (test data is disposable), unless ``durable``.
- ``close()`` stops the server (fast, then by PID with SIGKILL) and removes
  its directory, whatever happened.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

USER = "postgres"


def pg_bin(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (initdb, pg_ctl, ...)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError("{} not found: install Debian's postgresql package".format(name))
    return path


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, host: str = "127.0.0.1", durable: bool = False):
        self.host = host
        self.durable = durable
        self.port = 0
        self.dir: Optional[Path] = None
        self._pid: Optional[int] = None

    def __enter__(self) -> "PostgresServer":
        try:
            self.init()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _as_postgres(self, argv: list, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", USER, "--", *argv], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="edge-pg-"))
        user = pwd.getpwnam(USER)
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        os.chmod(self.dir, 0o700)
        result = self._as_postgres([pg_bin("initdb"), "-D", str(self.dir / "data"), "-U", USER,
                                    "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        if result.returncode != 0:
            raise RuntimeError("initdb failed: " + result.stderr[-2000:])
        self.port = _free_port(self.host)

    @property
    def log_path(self) -> Path:
        return self.dir / "postgres.log"

    def start(self) -> None:
        options = "-h {} -p {} -k {}".format(self.host, self.port, self.dir)
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._as_postgres([pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-l",
                                    str(self.log_path), "-w", "-t", "60", "-o", options, "start"])
        if result.returncode != 0:
            raise RuntimeError("pg_ctl start failed: {}\n{}".format(result.stderr[-2000:],
                                                                 self.log_tail()))
        self._pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (an outage); ``mode`` immediate is a crash."""
        if self._pid is None:
            return
        result = self._as_postgres([pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", mode,
                                    "-w", "-t", "30", "stop"], timeout=60)
        if result.returncode != 0:
            self._kill()
        self._pid = None

    def _kill(self) -> None:
        if self._pid is None:
            return
        try:
            os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self._pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._kill()
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    @property
    def running(self) -> bool:
        return self._pid is not None

    def url(self, database: str = "postgres") -> str:
        return "postgresql://{}@{}:{}/{}".format(USER, self.host, self.port, database)

    def new_database(self, name: str) -> str:
        """Create an empty database ``name``; its URL."""
        result = self._as_postgres([pg_bin("psql"), "-h", self.host, "-p", str(self.port), "-U", USER,
                                    "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                                    'CREATE DATABASE "{}"'.format(name)], timeout=60)
        if result.returncode != 0:
            raise RuntimeError("CREATE DATABASE failed: " + result.stderr[-2000:])
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, TypeError):
            return "(no log)"
