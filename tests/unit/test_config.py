import pytest

from lib import config


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
    assert config.load(["--secret-dir", str(tmp_path)]).email == "env@example.com"
    assert config.load(["--email", "flag@example.com", "--secret-dir", str(tmp_path)]).email == "flag@example.com"


def test_known_hosts_from_the_secret_when_present(tmp_path):
    for name, text in (("email", "a@b.c"), ("password", "p"), ("known_hosts", "[edge]:22 ssh-ed25519 AAAA\n")):
        (tmp_path / name).write_text(text)
    assert config.load(["--secret-dir", str(tmp_path)]).known_hosts == str(tmp_path / "known_hosts")


@pytest.mark.parametrize("files, words", [({}, "no account e-mail"), ({"email": "a@b.c"}, "no account password"),
                                          ({"email": "a@b.c", "password": "  \n"}, "no account password")])
def test_missing_credentials_say_where_to_put_them(tmp_path, files, words):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(config.ConfigError, match=words):
        config.load(["--secret-dir", str(tmp_path)])


def test_bool_flag_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MYSOCKETD_DRY_RUN", "true")
    assert config.load(["--email", "a@b.c", "--password", "p", "--secret-dir", str(tmp_path)]).dry_run
