"""The controller's supervisor (lib/tunnels.py) with the real OpenSSH client against the edge: several
forwards asked for at once in one `ssh -O forward` client of a shared session, each reachable through
the edge; one the edge refuses fails alone, named by its port."""

import time

import pytest
from edgetest_helpers import new_socket

from lib import sshargs, tunnels

pytestmark = pytest.mark.timeout(90)


def settings(edge, account):
    return sshargs.SshSettings(host=edge.ssh_host, port=edge.ssh_port, identity_file=str(account.key_path),
                               known_hosts_file=str(edge.known_hosts_file()), strict_host_keys=True)


def poll_until(sup, done, timeout=30):
    """Poll as the loop does; every transition seen until done() holds."""
    seen, deadline = [], time.monotonic() + timeout
    while not done(seen):
        assert time.monotonic() < deadline, f"not done after {timeout}s: {seen}"
        seen += sup.poll()
        time.sleep(0.02)
    return seen


def test_forwards_ready_together_go_in_one_client_and_each_answers_through_the_edge(edge, account, backend,
                                                                                      tmp_path, monkeypatch):
    assert tunnels.processes.become_subreaper()     # as mysocketd does: each master (ssh -f) stays our child
    spawned = []

    def spawn(argv, log_path):
        spawned.append(argv)
        return tunnels.processes.spawn(argv, log_path)

    sup = tunnels.Supervisor(settings(edge, account), str(tmp_path / "ssh"),
                             seams=tunnels.Seams(spawn=spawn), shard_size=20)
    try:
        sockets = [new_socket(edge, account, name=f"batch-{i}") for i in range(5)]
        backends = [backend(f"b{i}") for i in range(5)]
        for i, (sock, be) in enumerate(zip(sockets, backends)):
            # all five ensured while the session starts: they are ready together when it is up
            sup.ensure(("demo", f"s{i}"), sshargs.TunnelSpec(int(sock["tunnels"][0]["local_port"]), "127.0.0.1",
                                                             be.port, account.user_name))
        # (a session start is sometimes reported failed and retried: processes.find_background's race, there
        # before batching; what counts here is that the five are asked for together once it is up)
        keys = [("demo", f"s{i}") for i in range(5)]
        seen = poll_until(sup, lambda seen: all(sup.is_up(k) for k in keys))
        assert sorted(t.key for t in seen if t.kind == "up") == keys, seen
        clients = [argv for argv in spawned if "-O" in argv]
        assert len(clients) == 1 and clients[0].count("-R") == 5
        for sock, i in zip(sockets, range(5)):
            assert edge.get(sock["dnsname"], "/x") == (200, f"b{i} /x\n")

        refused = sshargs.TunnelSpec(1, "127.0.0.1", backends[0].port, account.user_name)   # no tunnel of ours
        late = new_socket(edge, account, name="batch-late")
        wanted = sshargs.TunnelSpec(int(late["tunnels"][0]["local_port"]), "127.0.0.1", backends[1].port,
                                    account.user_name)
        busy = ("demo", "busy")                     # a client on its way: the next two wait and go together
        sup.ensure(busy, sshargs.TunnelSpec(int(new_socket(edge, account, name="batch-busy")["tunnels"][0]
                                                ["local_port"]), "127.0.0.1", backends[2].port, account.user_name))
        sup.ensure(("demo", "refused"), refused)
        sup.ensure(("demo", "late"), wanted)
        seen = poll_until(sup, lambda seen: {t.key for t in seen} >= {busy, ("demo", "refused"), ("demo", "late")})
        kinds = {t.key: t.kind for t in seen}
        assert kinds == {busy: "up", ("demo", "refused"): "failed", ("demo", "late"): "up"}, seen
        assert "refused the forward" in next(t.detail for t in seen if t.kind == "failed")
        assert [argv.count("-R") for argv in spawned if "-O" in argv and "forward" in argv][1:3] == [1, 2]
        assert edge.get(late["dnsname"], "/y") == (200, "b1 /y\n")
        for sock, i in zip(sockets, range(5)):      # the neighbours never noticed
            assert edge.get(sock["dnsname"], "/z") == (200, f"b{i} /z\n")
        assert len(sup.sessions) == 1
    finally:
        sup.stop_all()
