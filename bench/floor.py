"""The floor: what exposing costs with nothing but the API and OpenSSH, done by hand.

One POST /connect (the token is already held, as the controller holds its
own), then one `ssh -N -R` with exactly the controller's options (the argv
comes from lib.sshargs, so keepalives, key and host-key checking are the
same), then fast probes until the first 200 through the edge. No Kubernetes,
no controller: whatever the controller adds on top of this is its overhead.
The tunnel and the socket are removed after each run (not timed).
"""

import time

from bench import probe
from bench.stack import spawn, ssh_settings, stop
from devcluster.controller import free_port
from lib import sshargs


class Floor:
    def __init__(self, stack, edge, account):
        self.edge = edge
        self.account = account
        self.settings = ssh_settings(edge, account)
        self.port = free_port()
        stack.backend.bind("127.0.0.1", self.port, "floor")
        self.log_path = stack.workdir / "floor-ssh.log"
        self.runs = 0

    def once(self):
        """One run: {"start": epoch, "end": epoch, "seconds": s, "dnsname": ...}."""
        self.runs += 1
        start = time.time()
        t0 = time.monotonic()
        resp = self.edge.api("POST", "/connect", {"name": f"floor-{self.runs}", "socket_type": "http"},
                             token=self.account.token)
        if resp.status != 200:
            raise RuntimeError(f"POST /connect: {resp.status} {resp.body}")
        sock = resp.body
        spec = sshargs.TunnelSpec(int(sock["tunnels"][0]["local_port"]), "127.0.0.1", self.port,
                                  self.account.user["user_name"])
        ssh = spawn(sshargs.ssh_argv(spec, self.settings, foreground=True), self.log_path)
        try:
            t1 = probe.wait_answer(self.edge.http_port, sock["dnsname"], 20, expect="floor")
        finally:
            stop([ssh])
            self.edge.api("DELETE", f"/socket/{sock['socket_id']}", token=self.account.token)
        return {"start": start, "end": start + (t1 - t0), "seconds": t1 - t0, "dnsname": sock["dnsname"]}
