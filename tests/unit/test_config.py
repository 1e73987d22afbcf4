import pytest

from lib import config

EDGE = ["--api-url", "http://127.0.0.1:9/"]


def test_flags_env_and_secret_files(tmp_path, monkeypatch):
    (tmp_path / "email").write_text("ops@example.com\n")
    (tmp_path / "password").write_text("s3cret\n")
    monkeypatch.setenv("MYSOCKETD_CLUSTER_NAME", "prod")
    cfg = config.load(["--namespace", "demo", "--api-url", "http://127.0.0.1:1", "--secret-dir", str(tmp_path)])
    assert (cfg.email, cfg.password, cfg.cluster_name, cfg.namespace) == ("ops@example.com", "s3cret", "prod", "demo")
    assert cfg.api_url == "http://127.0.0.1:1/" and cfg.known_hosts == ""
    assert cfg.private_key == str(tmp_path / "privatekey")
    assert cfg.describe()["password"] == "***" and "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.describe())


def test_flag_beats_env_beats_file(tmp_path, monkeypatch):
    (tmp_path / "email").write_text("file@example.com")
    (tmp_path / "password").write_text("p")
    monkeypatch.setenv("MYSOCKETD_EMAIL", "env@example.com")
    assert config.load([*EDGE, "--secret-dir", str(tmp_path)]).email == "env@example.com"
    loaded = config.load([*EDGE, "--email", "flag@example.com", "--secret-dir", str(tmp_path)])
    assert loaded.email == "flag@example.com"


def test_known_hosts_from_the_secret_when_present(tmp_path):
    for name, text in (("email", "a@b.c"), ("password", "p"), ("known_hosts", "[edge]:22 ssh-ed25519 AAAA\n")):
        (tmp_path / name).write_text(text)
    assert config.load([*EDGE, "--secret-dir", str(tmp_path)]).known_hosts == str(tmp_path / "known_hosts")


@pytest.mark.parametrize("files, words", [({}, "no account e-mail"), ({"email": "a@b.c"}, "no account password"),
                                          ({"email": "a@b.c", "password": "  \n"}, "no account password")])
def test_missing_credentials_say_where_to_put_them(tmp_path, files, words):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(config.ConfigError, match=words):
        config.load([*EDGE, "--secret-dir", str(tmp_path)])


def test_bool_flag_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MYSOCKETD_DRY_RUN", "true")
    assert config.load([*EDGE, "--email", "a@b.c", "--password", "p", "--secret-dir", str(tmp_path)]).dry_run


def test_no_default_edge(tmp_path):
    """The hosted service is gone: no URL of it is a default; --api-url is required."""
    with pytest.raises(config.ConfigError, match="no edge configured"):
        config.load(["--email", "a@b.c", "--password", "p", "--secret-dir", str(tmp_path)])
    assert "mysocket.io" not in " ".join(str(a.default) for a in config.parser()._actions)


@pytest.mark.parametrize("args, ssh_host", [
    (["--api-url", "https://edge.example.com:8443"], "edge.example.com"),
    (["--api-url", "http://[fd00::1]:8080/"], "fd00::1"),
    (["--api-url", "https://api.example.com/", "--ssh-host", "ssh.example.com"], "ssh.example.com"),
])
def test_the_ssh_host_defaults_to_the_api_urls_host(tmp_path, args, ssh_host):
    cfg = config.load([*args, "--email", "a@b.c", "--password", "p", "--secret-dir", str(tmp_path)])
    assert cfg.ssh_host == ssh_host and cfg.api_url.endswith("/")



def test_uninstall_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("MYSOCKETD_UNINSTALL", "true")
    cfg = config.load([*EDGE, "--email", "a@b.c", "--password", "p", "--deployment", "prod-mysocketd"])
    assert cfg.uninstall and cfg.deployment == "prod-mysocketd"
