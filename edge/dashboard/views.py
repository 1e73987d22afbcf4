"""What one signed-in account may see, as HTML pieces: its accounts, sockets, tunnels, quotas and
certificates (an operator: every account's).

Why it is shaped this way: one place decides visibility (``visible_users``,
``socket_for``), and every piece is built from records reduced here to what a
page may show: names, ports, nodes, owners and figures; never a password
hash, an SSH key, a token or a protected socket's password (only whether it
is protected, and its user name, as the API shows it).
"""

import time
from dataclasses import dataclass
from typing import Callable, Optional

from ..cache import State
from ..config import Limits
from ..membership import Membership
from ..store import Socket, User
from ..views import SOCKET_PORTS
from . import render
from .render import esc
from .sampler import Sampler


@dataclass
class Viewer:
    user: User
    operator: bool


@dataclass
class Sources:
    state: State
    membership: Membership
    sampler: Sampler
    limits: Limits
    clock: Callable[[], float] = time.time


def visible_users(src: Sources, viewer: Viewer) -> list:
    if not viewer.operator:
        return [viewer.user]
    return sorted(src.state.users.values(), key=lambda u: u.email)


def socket_for(src: Sources, viewer: Viewer, socket_id: str) -> Optional[Socket]:
    """The socket if this viewer may see it (its own; any for an operator), else None."""
    sock = src.state.sockets.get(socket_id)
    if sock is None or not (viewer.operator or sock.user_id == viewer.user.user_id):
        return None
    return sock


def live_ports(held: list, me: str) -> dict:
    """local_port -> [(node, since, peer)] from the data plane's forwards (``tunnels(everywhere)``)."""
    out: dict = {}
    for f in held:
        out.setdefault(f["local_port"], []).append(
            (f.get("node", me), f.get("since", ""), f.get("peer", "")))
    return out


def _quota(used: float, quota: float) -> str:
    return "{:g} of {:g}".format(used, quota) if quota else "{:g} (no limit)".format(used)


def quotas(src: Sources, user: User) -> str:
    lim, st, latest = src.limits, src.state, src.sampler.latest

    def now_here(held: dict, quota: float) -> str:
        # A level the data plane reports only while it is above zero.
        if src.sampler.status != "ok":
            return "unknown"
        return _quota(held.get(user.user_id, 0), quota)

    rows = [("sockets", _quota(st.count_sockets_of_user(user.user_id), lim.sockets_per_account)),
            ("tunnels", _quota(st.count_tunnels_of_user(user.user_id), lim.tunnels_per_account)),
            ("tcp sockets (public ports)",
             _quota(st.count_tcp_ports_of_user(user.user_id), lim.tcp_ports_per_account)),
            ("public connections now, this node",
             now_here(latest.accounts, lim.connections_per_account)),
            ("SSH sessions now, this node", now_here(latest.sessions, lim.sessions_per_account)),
            ("tunnel creations per hour", _quota_limit(lim.tunnel_creates_per_hour))]
    return render.table(("quota", "used"), [(esc(a), esc(b)) for a, b in rows], "quotas")


def _quota_limit(limit: float) -> str:
    return "at most {:g}".format(limit) if limit else "no limit"


def socket_rows(src: Sources, user: User, live: dict) -> list:
    now = src.clock()
    rows = []
    for sock in src.state.sockets_of(user.user_id):
        tunnels = src.state.tunnels_of(sock.socket_id)
        connected = [t for t in tunnels if t.local_port in live]
        nodes = sorted({n for t in connected for n, _, _ in live[t.local_port]})
        points = src.sampler.series(sock.socket_id)
        rows.append((
            '<a href="/dashboard/socket/{}">{}</a>'.format(esc(sock.socket_id), esc(sock.name)),
            esc(sock.dnsname), esc(sock.socket_type),
            '<span class="tunnels">{} of {} connected</span>'.format(len(connected), len(tunnels)),
            esc(", ".join(nodes) or "-"),
            render.chart(sock.socket_id, points, "small", now)))
    return rows


def account_section(src: Sources, user: User, live: dict) -> str:
    rows = socket_rows(src, user, live)
    sockets = render.table(("socket", "public name", "type", "tunnels", "served by node", "traffic"),
                           rows, "sockets") if rows else '<p class="empty">no sockets</p>'
    return ('<section class="account" data-account="{email}"><h2>{name} <small>{email}</small></h2>'
            '{sockets}<h3>Quotas</h3>{quotas}<h3>Certificates</h3>{certs}</section>').format(
                name=esc(user.name), email=esc(user.email), sockets=sockets,
                quotas=quotas(src, user), certs=certificates(src, [user]))


INTERNAL_CA = "internal-ca"     # the name the data plane gives its internal CA's expiry


def _covers(cert_name: str, dnsname: str) -> bool:
    if cert_name.startswith("*."):
        return dnsname.split(".", 1)[-1] == cert_name[2:]
    return cert_name == dnsname


def certificates(src: Sources, users: list) -> str:
    """Which certificate serves each TLS name of these accounts, and when it expires: a given or
    ACME certificate that covers the name, else the edge's internal CA, whose certificates it
    signs on demand (the data plane exports the CA's expiry, not each of those)."""
    held = src.sampler.latest.certificates
    now = src.clock()
    rows = []
    for u in users:
        for sock in src.state.sockets_of(u.user_id):
            if sock.socket_type == "tcp":
                continue
            cert = next((c for c in sorted(held) if _covers(c, sock.dnsname)), None)
            label = cert
            if cert is None and INTERNAL_CA in held:
                cert, label = INTERNAL_CA, "signed by the edge's internal CA (the CA's expiry)"
            if cert is None:
                rows.append((esc(sock.dnsname), "none known yet", "", ""))
                continue
            rows.append((esc(sock.dnsname), esc(label), esc(render.when(held[cert])),
                         esc("{:.0f} days".format((held[cert] - now) / 86400))))
    if not rows:
        return '<p class="empty">no TLS names</p>'
    return render.table(("name", "certificate", "expires", "left"), rows, "certificates")


def all_certificates(src: Sources) -> str:
    held = src.sampler.latest.certificates
    now = src.clock()
    rows = [(esc(c), esc(render.when(held[c])), esc("{:.0f} days".format((held[c] - now) / 86400)))
            for c in sorted(held)]
    if not rows:
        return '<p class="empty">none known (the data plane exports no certificate metrics yet)</p>'
    return render.table(("certificate", "expires", "left"), rows, "certificates")


def _level(src: Sources, levels: dict, socket_id: str) -> str:
    """A gauge of the last read ("unknown" while the data plane's metrics cannot be read)."""
    if src.sampler.status != "ok":
        return "unknown"
    return esc("{:g}".format(levels.get(socket_id, 0)))


def tunnel_rows(src: Sources, sock: Socket, live: dict) -> list:
    rows = []
    for t in src.state.tunnels_of(sock.socket_id):
        held = live.get(t.local_port, [])
        rows.append((esc(t.tunnel_id), esc(t.local_port), esc(t.owner or "-"),
                     esc(t.node or src.membership.me.name),
                     esc(src.membership.tunnel_server(t)),
                     '<span class="connected">yes</span>' if held else '<span class="down">no</span>',
                     esc("; ".join("{} since {} from {}".format(n, s or "?", p or "?")
                                   for n, s, p in held) or "-")))
    return rows


def socket_detail(src: Sources, sock: Socket, owner: Optional[User], live: dict) -> str:
    ports = SOCKET_PORTS.get(sock.socket_type, [sock.tcp_port])
    latest = src.sampler.latest
    facts = [("public name", esc(sock.dnsname)), ("type", esc(sock.socket_type)),
             ("public ports", esc(", ".join(str(p) for p in ports))),
             ("account", esc(owner.email if owner else "?")),
             ("protected", esc("basic auth as {}".format(sock.protected_username)
                               if sock.protected_socket else "no")),
             ("sign-in (OIDC)", esc("on" if sock.cloud_authentication_enabled else "off")),
             ("open connections now, this node", _level(src, latest.active, sock.socket_id)),
             ("live forwards on this node", _level(src, latest.tunnels, sock.socket_id))]
    tunnels = render.table(("tunnel", "local_port", "owner (cluster/replica)", "placed on node",
                            "tunnel_server", "connected", "held by"),
                           tunnel_rows(src, sock, live), "tunnels")
    return ('<h1>{name}</h1>{chart}{facts}<h2>Tunnels</h2>{tunnels}'
            '<h2>Certificates</h2>{certs}').format(
                name=esc(sock.name),
                chart=render.chart(sock.socket_id, src.sampler.series(sock.socket_id), "large",
                                   src.clock()),
                facts=render.table(("", ""), facts, "facts"), tunnels=tunnels,
                certs=certificates(src, [owner] if owner else []))
