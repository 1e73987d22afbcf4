"""The sharding rule and where the control sockets of the shared ssh sessions live."""
import os
import tempfile

from lib import shards


def test_keys_fill_the_lowest_shard_with_room_then_open_a_new_one(tmp_path):
    sessions = {}
    placed = [shards.place(sessions, f"k{i}", ("edge", 22), size=2, control_dir=str(tmp_path),
                           log_dir=str(tmp_path)) for i in range(5)]
    assert [s.shard for s in placed] == [0, 0, 1, 1, 2]
    assert sessions[(("edge", 22), 0)].keys == {"k0", "k1"}


def _longest_control_path(directory):
    """What ssh binds first: the longest name place() makes, plus ssh's own temporary suffix."""
    return os.path.join(directory, "0123abcd-999") + ".0123456789abcdef"


def test_a_control_socket_always_fits_in_sun_path_even_under_a_deep_state_directory(tmp_path):
    # up to 100 characters of state directory: the old rule (len + 20 > 100) let 80 through, and ssh
    # then failed with "ControlPath too long" for a state directory of 74..80 characters.
    for length in range(len(str(tmp_path)) + 2, 101):
        state = os.path.join(str(tmp_path), "s" * (length - len(str(tmp_path)) - 1))
        log_dir = os.path.join(state, "logs")
        made = shards.control_dir(log_dir)
        try:
            assert len(_longest_control_path(made).encode()) < 108, (length, made)
        finally:
            shards.remove_private(made)


def test_a_private_control_directory_is_removed_with_the_last_session_and_a_shared_one_stays(tmp_path):
    private = shards.control_dir(os.path.join("/" + "d" * 90, "logs"))
    assert private.startswith(tempfile.gettempdir())
    shards.remove_private(private)
    assert not os.path.exists(private)
    shared = shards.control_dir(str(tmp_path / "logs"))
    shards.remove_private(shared)
    assert os.path.isdir(shared)


def test_stopping_with_a_shared_control_directory_needs_no_temporary_directory(tmp_path, monkeypatch):
    # A pod with readOnlyRootFilesystem has no usable /tmp: tempfile.gettempdir() raises there, and
    # the shared directory under --state-dir never needed it (mysocketd exited 1 on SIGTERM in a pod).
    shared = shards.control_dir(str(tmp_path / "logs"))

    def no_tempdir():
        raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp', '/var/tmp', '/usr/tmp', '/app']")
    monkeypatch.setattr(tempfile, "gettempdir", no_tempdir)
    shards.remove_private(shared)
    assert os.path.isdir(shared)
