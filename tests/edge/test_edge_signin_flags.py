"""python -m edge's sign-in flags (edge/signin.py): what reaches the data plane, and the client
secret never on its command line."""

import stat

import pytest

from edge.config import parse_args

BASE = ["--data-dir"]


def args(tmp_path, *extra, env=None):
    return parse_args([*BASE, str(tmp_path / "data"), *extra], env or {})


def test_no_issuer_no_signin_arguments(tmp_path):
    assert not any(a.startswith("--oidc") for a in args(tmp_path).plane_args)


@pytest.mark.parametrize("how", ["file", "env"])
def test_the_secret_reaches_the_data_plane_as_a_private_file(tmp_path, how):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret-value\n")
    extra = ["--oidc-client-secret-file", str(secret_file)] if how == "file" else []
    cfg = args(tmp_path, "--oidc-issuer", "https://idp.example", "--oidc-client-id", "edge", *extra,
               env={"EDGE_OIDC_CLIENT_SECRET": "s3cret-value"} if how == "env" else {})
    argv = cfg.plane_args
    assert "s3cret-value" not in " ".join(argv)
    handed = argv[argv.index("--oidc-client-secret-file") + 1]
    assert open(handed).read().strip() == "s3cret-value"
    assert stat.S_IMODE((tmp_path / "data" / "oidc-client-secret").stat().st_mode) == 0o600
    assert argv[argv.index("--oidc-issuer") + 1] == "https://idp.example"
    assert argv[argv.index("--signin-session") + 1] == "43200.0s"


@pytest.mark.parametrize("extra, env, message", [
    (["--oidc-issuer", "idp.example", "--oidc-client-id", "e"], {"EDGE_OIDC_CLIENT_SECRET": "x"}, "issuer's URL"),
    (["--oidc-issuer", "https://idp.example"], {"EDGE_OIDC_CLIENT_SECRET": "x"}, "--oidc-client-id"),
    (["--oidc-issuer", "https://idp.example", "--oidc-client-id", "e"], {}, "client secret"),
    (["--oidc-issuer", "https://idp.example", "--oidc-client-id", "e", "--oidc-client-secret-file", "/nonexistent"],
     {}, "--oidc-client-secret-file"),
])
def test_bad_flags_are_one_line(tmp_path, capsys, extra, env, message):
    with pytest.raises(SystemExit) as exc:
        args(tmp_path, *extra, env=env)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
