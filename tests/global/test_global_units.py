"""Pure parts of the many-node edge: placement, the node's picture, migrations, store URLs."""

import asyncio
import re
import sqlite3

import pytest

from edge.cache import State
from edge.placement import choose
from edge.store import Change, Socket, Tunnel, User, masked
from edge.store.migrations import MIGRATIONS, pending
from edge.store.model import to_json
from edge.store.sql import SqlStore
from edge.store.sqlite import SqliteBackend


@pytest.mark.parametrize("live, taken, load, expected", [
    ([], [], {}, None),                                          # nobody to place on
    (["a"], [], {}, "a"),
    (["a", "b", "c"], [], {}, "a"),                              # ties by name
    (["a", "b", "c"], [], {"a": 5, "b": 1, "c": 3}, "b"),        # least loaded
    (["a", "b", "c"], ["b"], {"a": 5, "b": 1, "c": 3}, "c"),     # distinct before load
    (["a", "b", "c"], ["a", "b", "c"], {"a": 5, "b": 1}, "c"),   # all used: fewest of its own, then load
    (["a", "b"], ["a", "a", "b"], {}, "b"),
    (["a", "b"], ["x"], {"a": 1}, "b"),                          # a dead node's name counts for nothing
])
def test_placement(live, taken, load, expected):
    assert choose(live, taken, load) == expected


def _change(seq, kind, key, record):
    return Change(seq, kind, key, to_json(record) if record is not None else None)


def test_the_picture_applies_changes_and_says_what_the_data_plane_must_learn():
    s = State()
    u = User("u1", "u1name", "U", "u@example.com", "hash", "ssh-ed25519 AAAA")
    sock = Socket("s1", "u1", "web", "Blue-1.edge.localhost", "http", created=1.0)
    t1 = Tunnel("t1", "s1", 10000, "own", "node1")
    t2 = Tunnel("t2", "s1", 10001, "", "node2")
    deltas = [s.apply(_change(i + 1, kind, key, rec)) for i, (kind, key, rec) in enumerate([
        ("user", "u1", u), ("socket", "s1", sock), ("tunnel", "t1", t1), ("tunnel", "t2", t2)])]
    assert s.seq == 4 and s.user_by_email("u@example.com") == u
    assert deltas[0].users == {"u1": u} and deltas[1].sockets == {"s1": sock}
    assert deltas[2].sockets == {"s1": sock} and not deltas[2].users    # a tunnel changes its socket
    assert s.dnsname_taken("blue-1.edge.localhost") and s.socket("s1", "u1") == sock
    assert s.socket("s1", "someone-else") is None
    assert [t.local_port for t in s.tunnels_of("s1")] == [10000, 10001]
    assert s.node_load() == {"node1": 1, "node2": 1} and s.count_tunnels_of_user("u1") == 2
    moved = s.apply(_change(5, "tunnel", "t2", Tunnel("t2", "s1", 10001, "", "node1")))
    assert s.node_load() == {"node1": 2} and moved.sockets == {"s1": sock}
    gone = [s.apply(_change(6, "tunnel", "t1", None)), s.apply(_change(7, "tunnel", "t2", None)),
            s.apply(_change(8, "socket", "s1", None))]
    assert gone[2].sockets == {"s1": None} and s.sockets_of("u1") == [] and s.tunnels == {}
    assert not s.dnsname_taken("blue-1.edge.localhost") and s.seq == 8


def test_migrations_are_numbered_in_order_and_pending_is_what_is_missing():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert pending(0) == list(MIGRATIONS) and pending(len(MIGRATIONS)) == []
    made = re.compile(r"(CREATE TABLE|CREATE INDEX|ADD COLUMN)(?: IF NOT EXISTS)? (\w+)")
    for m in MIGRATIONS:      # one statement list per dialect: the same tables, indexes, columns
        sqlite, postgres = ({made.match(re.sub(r"^ALTER TABLE \w+ ", "", s)).groups()
                             for s in m.statements(d)} for d in ("sqlite", "postgres"))
        assert sqlite == postgres and sqlite


def test_a_database_from_before_migrations_and_owners_is_adopted_as_it_is(tmp_path):
    path = tmp_path / "edge.sqlite3"
    db = sqlite3.connect(str(path))
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE users (user_id TEXT PRIMARY KEY, user_name TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
            sshkey TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE sockets (socket_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
            dnsname TEXT NOT NULL UNIQUE, socket_type TEXT NOT NULL, tcp_port INTEGER UNIQUE,
            protected_socket INTEGER NOT NULL, protected_username TEXT NOT NULL,
            protected_password_hash TEXT NOT NULL, cloud_authentication_enabled INTEGER NOT NULL,
            allowed_addresses TEXT NOT NULL, allowed_domains TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE tunnels (tunnel_id TEXT PRIMARY KEY, socket_id TEXT NOT NULL,
            local_port INTEGER NOT NULL UNIQUE, created REAL NOT NULL);
        INSERT INTO users VALUES ('u1', 'u1n', 'U', 'u@example.com', 'h', 'k', 1);
        INSERT INTO sockets VALUES ('s1', 'u1', 'web', 'a.edge', 'http', NULL, 0, '', '', 0,
            '[]', '[]', 2);
        INSERT INTO tunnels VALUES ('t1', 's1', 10000, 3);
        INSERT INTO meta VALUES ('next_local_port', '10001');
    """)
    db.close()

    async def load():
        store = SqlStore(SqliteBackend(path))
        await store.open()
        try:
            loaded = await store.load_all()
            tunnel, seq = await store.add_tunnel(
                loaded[2][0] and Socket("s1", "u1", "web", "a.edge", "http"),
                Tunnel("t2", "s1", 0))
            return loaded, tunnel, seq
        finally:
            await store.close()

    (seq, users, sockets, tunnels), tunnel, new_seq = asyncio.run(load())
    assert [u.email for u in users] == ["u@example.com"] and sockets[0].dnsname == "a.edge"
    assert sockets[0].upstream_protocol == "http/1.1"       # migration 3's default
    assert tunnels == [Tunnel("t1", "s1", 10000, "", "")] and seq == 0
    assert tunnel.local_port == 10001 and new_seq == 1
    db = sqlite3.connect(str(path))
    assert [r[0] for r in db.execute("SELECT version FROM schema_version")] == [m.version for m in MIGRATIONS]
    db.close()


@pytest.mark.parametrize("url, shown", [
    ("postgresql://edge:s3cret@db.example.com/edge", "postgresql://edge:***@db.example.com/edge"),
    ("postgresql://edge@db/edge", "postgresql://edge@db/edge"),
    ("host=db password=s3cret dbname=edge", "host=db password=*** dbname=edge"),
    ("", "sqlite (in the data dir)"),
])
def test_store_urls_are_logged_without_passwords(url, shown):
    assert masked(url) == shown


def test_a_tunnel_on_a_dead_node_not_moved_yet_stays_there_until_the_move_says_where():
    """Not the answering node: a client that asks in that instant and connects there would put the
    socket's two tunnels on one node for good (being served somewhere is where a tunnel is)."""
    from edge.membership import Membership
    from edge.store import Node

    s = State()
    dead = Tunnel("t1", "s1", 10000, "own", "node2")
    me = Node("node3", "10.0.0.3")
    m = Membership(None, s, me)
    m._live = [Node("node1", "10.0.0.1"), me]                  # node2 just declared dead
    m._known = {n.name: n for n in (*m._live, Node("node2", "10.0.0.2"))}
    assert m.tunnel_server(dead) == "10.0.0.2"                 # where it was, not the answering node
    assert m.tunnel_server(Tunnel("t2", "s1", 10001, "own", "node1")) == "10.0.0.1"
    assert m.tunnel_server(Tunnel("t3", "s1", 10002, "own", "gone")) == "10.0.0.3"   # unknown: this node
