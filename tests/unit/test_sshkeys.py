"""Key preparation with the real ssh-keygen."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lib import sshkeys

REPO_ROOT = Path(__file__).resolve().parents[2]


def keygen(path, kind="ed25519", passphrase=""):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-f", str(path)], check=True)
    return path


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_copies_the_key_private_and_derives_the_public_line(tmp_path, kind):
    src = keygen(tmp_path / "key", kind)
    os.chmod(src, 0o644)                           # as a Secret volume would mount it
    path, public = sshkeys.install_private_key(str(src), str(tmp_path / "state"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sshkeys.same_key(public, (tmp_path / "key.pub").read_text())


@pytest.mark.parametrize("setup, words", [
    (lambda p: None, "no private key at"),
    (lambda p: p.write_text(""), "is empty"),
    (lambda p: p.write_text("not a key\n"), "OpenSSH cannot use"),
    (lambda p: keygen(p, passphrase="pass phrase"), "passphrase"),
])
def test_unusable_keys_say_why(tmp_path, setup, words):
    setup(tmp_path / "key")
    with pytest.raises(sshkeys.KeyProblem, match=words):
        sshkeys.install_private_key(str(tmp_path / "key"), str(tmp_path / "state"))


def test_fingerprints_match_ssh_keygen(tmp_path):
    keygen(tmp_path / "host")
    line = "[127.0.0.1]:2222 " + " ".join((tmp_path / "host.pub").read_text().split()[:2])
    (tmp_path / "kh").write_text(line + "\n")
    expected = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "host.pub")], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    assert sshkeys.fingerprints(str(tmp_path / "kh")) == [f"ssh-ed25519 {expected}"]


def test_tofu_file_is_created_private(tmp_path):
    path, strict = sshkeys.prepare_known_hosts("", str(tmp_path))
    assert not strict and os.path.exists(path) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    given = tmp_path / "given"
    given.write_text("")
    assert sshkeys.prepare_known_hosts(str(given), str(tmp_path)) == (str(given), True)


# -- what an attacker who can write the state directory could plant --------------------------------

def test_a_planted_tmp_symlink_is_not_followed(tmp_path):
    """The key is written to a fresh file of its own, never through a name someone prepared."""
    src = keygen(tmp_path / "key")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    (state / "id_mysocket.tmp").symlink_to(target)
    path, _ = sshkeys.install_private_key(str(src), str(state))
    assert not target.exists()
    assert not os.path.islink(path) and stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert open(path).read() == src.read_text()
    assert sorted(os.listdir(state)) == ["id_mysocket", "id_mysocket.tmp"]     # no temporary file left behind


@pytest.mark.parametrize("plant", ["dangling", "to a file"])
def test_a_known_hosts_symlink_is_refused(tmp_path, plant):
    """Trust on first use must record into our own file, not into one someone pointed us at."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "their_known_hosts"
    if plant == "to a file":
        target.write_text("")
    (state / "known_hosts").symlink_to(target)
    with pytest.raises(sshkeys.KeyProblem, match="known_hosts is a symbolic link"):
        sshkeys.prepare_known_hosts("", str(state))
    assert target.exists() == (plant == "to a file")
    if target.exists():
        assert target.read_text() == ""


def test_an_existing_known_hosts_of_our_own_is_kept(tmp_path):
    """After a container restart the emptyDir still holds the key trusted on first use."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "known_hosts").write_text("[edge]:22 ssh-ed25519 AAAA\n")
    os.chmod(state / "known_hosts", 0o666)
    path, strict = sshkeys.prepare_known_hosts("", str(state))
    assert not strict and open(path).read() == "[edge]:22 ssh-ed25519 AAAA\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_known_hosts_of_another_user_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "known_hosts").write_text("")
    os.chown(state / "known_hosts", 12345, 12345)
    with pytest.raises(sshkeys.KeyProblem, match="owned by uid 12345"):
        sshkeys.prepare_known_hosts("", str(state))


# -- the state directory itself -------------------------------------------------------------------------

def test_our_own_state_dir_is_tightened_to_0700(tmp_path):
    src = keygen(tmp_path / "key")
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    sshkeys.install_private_key(str(src), str(state))
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700


def test_a_state_dir_of_another_user_is_refused(tmp_path):
    src = keygen(tmp_path / "key")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 12345, 12345)
    with pytest.raises(sshkeys.StateDirUnsafe, match=f"{state} is owned by uid 12345, not by this process"):
        sshkeys.install_private_key(str(src), str(state))
    assert os.listdir(state) == []


ME, ROOT, OTHER = 10001, 0, 4242


@pytest.mark.parametrize("owner, mode, verdict", [
    (ME, 0o700, None),
    (ME, 0o755, "tighten"),
    (ME, 0o2777, "tighten"),
    (OTHER, 0o700, "owned by uid 4242"),
    (OTHER, 0o1777, "owned by uid 4242"),
    (ROOT, 0o755, None),                        # root's and closed: nobody else writes it (nor may we)
    (ROOT, 0o3777, None),                       # an emptyDir with medium Memory and fsGroup: a sticky tmpfs
    (ROOT, 0o1777, None),                       # /tmp-like: others cannot rename or delete what we create
    (ROOT, 0o2777, "without the sticky bit"),   # an emptyDir on disk with fsGroup
    (ROOT, 0o770, "without the sticky bit"),
])
def test_which_state_dirs_are_safe(owner, mode, verdict):
    got = sshkeys.judge_state_dir(owner, stat.S_IFDIR | mode, ME)
    assert got == verdict if verdict in (None, "tighten") else verdict in got


def test_mysocketd_exits_2_with_one_line_on_an_unsafe_state_dir(tmp_path):
    src = keygen(tmp_path / "key")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 12345, 12345)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSOCKETD_")}
    env["KUBECONFIG"] = str(tmp_path / "no-kubeconfig")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "mysocketd.py"), "--api-url", "http://127.0.0.1:9/",
                             "--email", "a@example.com",
                             "--password", "pw", "--private-key", str(src), "--state-dir", str(state),
                             "--log-format", "text", "--health-port", "0"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO_ROOT))
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(errors) == 1 and f"state directory {state} is owned by uid 12345" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_planted_ssh_logs_directory_is_refused(tmp_path):
    """ssh writes its logs itself (-E) and follows symlinks: ssh-logs must be ours, and a real directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "ssh-logs").symlink_to(elsewhere)
    with pytest.raises(sshkeys.StateDirUnsafe, match="is a symbolic link"):
        sshkeys.secure_state_dir(str(state / "ssh-logs"))
    planted = tmp_path / "state2" / "ssh-logs"
    planted.mkdir(parents=True)
    os.chown(planted, 12345, 12345)
    with pytest.raises(sshkeys.StateDirUnsafe, match="owned by uid 12345"):
        sshkeys.secure_state_dir(str(planted))
