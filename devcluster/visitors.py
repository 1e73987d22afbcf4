"""curl as a visitor given several A records for one public name: the global demo's client and its tables.

Why it is shaped this way:
- curl itself does the failover that several A records allow: `--resolve
  name:port:a,b,c` gives it the addresses in that order, and it connects to the
  next one when one refuses (a killed edge node's address answers with a reset).
  The order turns with every request, as resolvers rotate A records, so the
  edge nodes share the visitors.
- `-w` appends the address that answered and the status, so a table can say
  through which edge node each answer came.
- What counts is said once, here. A request *failed* when it got no 200 from a
  demo pod. A request that was running at the instant a node was killed and
  failed was *in flight*: the client retries it once, at once, as browsers
  retry an idempotent GET whose connection broke; it is counted apart from the
  failures (and its retry's answer is in the table), never hidden.
"""

import collections
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
_SEP = "\n@@curl "


@dataclass
class Answer:
    started: float          # monotonic
    ended: float
    edge: str               # the address curl last connected to ("" if none)
    status: int             # HTTP status, 0 without a response
    body: str
    curl_exit: int
    order: tuple = ()       # the addresses curl was given, in that order

    @property
    def ok(self) -> bool:
        return self.curl_exit == 0 and self.status == 200 and self.body.startswith("Server: ")

    @property
    def pod(self) -> str:
        return self.body.strip().removeprefix("Server: ") if self.ok else ""

    def why(self) -> str:
        return f"curl exit {self.curl_exit}, HTTP {self.status or '-'} via {self.edge or 'no address'}"


@dataclass
class Run:
    """The answers of one run of requests, and the instant its action (a node's kill) happened."""

    answers: list = field(default_factory=list)      # the final Answer of each request
    in_flight: list = field(default_factory=list)    # (failed Answer, its retry) for requests spanning the action
    action_at: Optional[float] = None

    @property
    def failed(self) -> list:
        return [a for a in self.answers if not a.ok]

    def pods(self) -> collections.Counter:
        return collections.Counter(a.pod for a in self.answers if a.ok)

    def edges(self) -> collections.Counter:
        return collections.Counter(a.edge for a in self.answers if a.ok)


class Visitor:
    """GETs of http://<dnsname>:<port>/ with curl, given `addresses` for the name."""

    def __init__(self, dnsname: str, port: int, addresses: list):
        self.curl = shutil.which("curl")
        if self.curl is None:
            raise RuntimeError("the global demo's client is curl: apt-get install curl")
        self.dnsname, self.port, self.addresses = dnsname, port, list(addresses)
        self.url = f"http://{dnsname}:{port}/"
        self._env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}

    def order(self, turn: int) -> list:
        n = len(self.addresses)
        return [self.addresses[(turn + i) % n] for i in range(n)]

    def argv(self, turn: int) -> list:
        return [self.curl, "-s", "--connect-timeout", "3", "--max-time", "10",
                "--resolve", f"{self.dnsname}:{self.port}:{','.join(self.order(turn))}",
                "-w", _SEP + "%{remote_ip} %{http_code}", self.url]

    def shown(self) -> str:
        """The loop as a user would type it."""
        return (f"for i in $(seq N); do curl -s --resolve {self.dnsname}:{self.port}:<the "
                f"{len(self.addresses)} addresses, turned by $i> {self.url}; done")

    def get(self, turn: int) -> Answer:
        started = time.monotonic()
        try:
            r = subprocess.run(self.argv(turn), capture_output=True, text=True, timeout=20, env=self._env)
            out, code = r.stdout, r.returncode
        except subprocess.TimeoutExpired:
            out, code = "", 28
        body, _, tail = out.rpartition(_SEP)
        edge, _, status = tail.partition(" ")
        return Answer(started, time.monotonic(), edge.strip(), int(status) if status.strip().isdigit() else 0,
                      body, code, tuple(self.order(turn)))

    def run(self, count: int, interval: float = 0.0, action: Optional[Callable[[], float]] = None,
            action_after: float = 0.0) -> Run:
        """`count` requests, one every `interval` seconds (the next at once after a slower one);
        `action()` (returning the monotonic instant it acted) runs `action_after` seconds in."""
        result, timer = Run(), None
        started = time.monotonic()
        if action is not None:
            timer = threading.Timer(action_after, lambda: setattr(result, "action_at", action()))
            timer.start()
        try:
            for turn in range(count):
                time.sleep(max(0.0, started + turn * interval - time.monotonic()))
                answer = self.get(turn)
                at = result.action_at
                if not answer.ok and at is not None and answer.started <= at <= answer.ended:
                    retry = self.get(turn + 1)
                    result.in_flight.append((answer, retry))
                    answer = retry
                result.answers.append(answer)
        finally:
            if timer is not None:
                timer.join(30)
        return result


def table(run: Run, cluster_of: dict) -> str:
    """`sort | uniq -c` of the answers, each pod named with its cluster; failures last."""
    lines = [f"{n:7d} {cluster_of.get(pod, '?'):<10} Server: {pod}" for pod, n in
             sorted(run.pods().items(), key=lambda item: (cluster_of.get(item[0], "?"), item[0]))]
    for why, n in sorted(collections.Counter(a.why() for a in run.failed).items()):
        lines.append(f"{n:7d} FAILED     {why}")
    return "\n".join(lines)


def per_edge(run: Run) -> str:
    return ", ".join(f"{edge} {n}" for edge, n in sorted(run.edges().items()))
