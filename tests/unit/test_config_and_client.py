"""Pure parts of configuration, the local backend and the client."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from acjob.backends.local import parse_native_id, process_start_time
from acjob.client.connection import _query
from acjob.client.stdin import _chunks, _resume_at, _with_lookahead
from acjob.config import load_config, parse_endpoint
from acjob.errors import ConfigError, ConnectionFailed


@pytest.mark.parametrize(("text", "url", "loopback"), [
    ("unix:/run/acjob.sock", "unix:/run/acjob.sock", True),
    ("127.0.0.1:8750", "http://127.0.0.1:8750", True),
    ("http://localhost:80", "http://localhost:80", True),
    ("[::1]:9000", "http://[::1]:9000", True),
    ("0.0.0.0:8750", "http://0.0.0.0:8750", False),
    ("example.org:1", "http://example.org:1", False),
])
def test_endpoints(text: str, url: str, loopback: bool) -> None:
    endpoint = parse_endpoint(text)
    assert endpoint.url == url and endpoint.is_loopback is loopback


@pytest.mark.parametrize("text", ["unix:relative", "host", "host:0", "host:99999",
                                  "https://x:1", "unix:/" + "x" * 120])
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_endpoint(text)


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nidle_timeout = -1\n")
    with pytest.raises(ConfigError, match=r"\[server\] idle_timeout"):
        load_config(path)
    path.write_text("[server\n")
    with pytest.raises(ConfigError):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    path.write_text('[server]\nlisten = "unix:/run/x.sock"\n[backends.local]\nslots = 2\n')
    config = load_config(path)
    assert config.server.listen == "unix:/run/x.sock" and config.backends["local"]["slots"] == 2


def test_token_is_not_in_the_config_repr(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\ntoken = "very-secret"\n')
    assert "very-secret" not in repr(load_config(path))


def test_native_ids() -> None:
    assert parse_native_id("abc:12:345") == ("abc", 12, 345)
    for bad in ("", "1:2", "a:b:c", "a:1:2:3"):
        assert parse_native_id(bad) is None
    assert process_start_time(os.getpid()) is not None
    assert process_start_time(2**22 + 12345) is None


def test_chunks_and_lookahead(tmp_path: Path) -> None:
    assert list(_with_lookahead(iter([]))) == [(b"", True)]
    assert list(_with_lookahead(iter([b"a", b"", b"b"]))) == [(b"a", False), (b"b", True)]
    assert b"".join(_chunks(io.BytesIO(b"x" * 100))) == b"x" * 100
    assert list(_chunks("text")) == [b"text"]
    path = tmp_path / "stdin"
    path.write_bytes(b"from a file")
    assert list(_chunks(path)) == [b"from a file"]


@pytest.mark.parametrize("params", [
    {"wait": 59.5, "final": "true"},
    {"offset": 0, "final": "false"},
    {"wait": 1e-05, "since": -3},
    {"state": ["QUEUED", "RUNNING"], "limit": 50},
    {"name_prefix": "a b&c=d/é", "label": "k=v"},
    {"final": "maybe"},
])
def test_query_strings_are_those_urlencode_writes(params: dict[str, object]) -> None:
    from urllib.parse import urlencode

    assert _query(params) == urlencode(params, doseq=True)


def test_resume_points() -> None:
    assert _resume_at({"bytes": 15, "closed": False}, 10, 10) == 5
    assert _resume_at({"bytes": 10, "closed": False}, 10, 10) == 0
    assert _resume_at({"bytes": 20, "closed": True}, 10, 10) is None
    with pytest.raises(ConnectionFailed):
        _resume_at({"bytes": 3, "closed": False}, 10, 10)


def test_how_long_a_client_waits_for_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    from acjob.config import ClientConfig, retry_for_setting

    monkeypatch.delenv("ACJOB_RETRY_FOR", raising=False)
    assert retry_for_setting(ClientConfig()) == 60.0
    assert retry_for_setting(ClientConfig(retry_for=5)) == 5.0
    monkeypatch.setenv("ACJOB_RETRY_FOR", "0")
    assert retry_for_setting(ClientConfig(retry_for=5)) == 0.0
    for bad in ("soon", "-1", "inf", "nan"):
        monkeypatch.setenv("ACJOB_RETRY_FOR", bad)
        with pytest.raises(ConfigError, match="ACJOB_RETRY_FOR"):
            retry_for_setting(ClientConfig())


def test_a_failed_connection_is_said_in_words() -> None:
    import errno

    from acjob.client.reach import Reach, describe_failure

    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert describe_failure(refused) == "connection refused"
    assert describe_failure(wrapped) == "no such socket"
    said: list[str] = []
    reach = Reach("unix:/x.sock", said.append)
    first = reach.lost(refused, 30)
    reach.lost(refused, 30)
    assert str(first) == "unix:/x.sock: connection refused" and first.__cause__ is refused
    assert said == ["waiting up to 30 s for the acjob daemon at unix:/x.sock "
                    "(connection refused); ACJOB_RETRY_FOR sets the wait"]
    reach.answered()
    reach.lost(refused, 30)
    assert len(said) == 2  # a new outage is said again


def _config_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(path) in raised.value.message  # every error names the file
    return raised.value


def test_configuration_errors_say_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    toml = _config_error(tmp_path, "[server\n")
    assert "is not valid TOML" in toml.message and toml.hint and "[name]" in toml.hint
    typo = _config_error(tmp_path, '[server]\nlisten_on = "x"\n')
    assert typo.message.endswith("unknown key 'listen_on' in [server]")
    assert typo.hint is not None and typo.hint.startswith("did you mean 'listen'?")
    table = _config_error(tmp_path, "[servr]\n")
    assert table.message.endswith("unknown table [servr]")
    assert table.hint is not None and "'server'" in table.hint
    value = _config_error(tmp_path, "[server]\nretention_days = 0\n")
    assert "[server] retention_days: Input should be greater than 0" in value.message
    assert "Extra inputs" not in typo.message + table.message


def test_a_backends_option_error_names_the_file_and_the_fix(tmp_path: Path) -> None:
    from acjob.daemon import build_backends
    from acjob.spool import Spool

    path = tmp_path / "config.toml"
    path.write_text('[backends.local]\nslots = "x"\n')
    with pytest.raises(ConfigError) as raised:
        build_backends(load_config(path), Spool(tmp_path / "spool"))
    assert raised.value.message == f"{path}: [backends.local] slots = 'x': not a whole number" \
                                   " of slots"
    assert raised.value.hint is not None and raised.value.hint.startswith("write slots = 8")


def test_a_runtime_directory_open_to_others_asks_for_chmod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from acjob.config import runtime_dir

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "acjob").mkdir(mode=0o755)
    (tmp_path / "acjob").chmod(0o755)
    with pytest.raises(ConfigError) as raised:
        runtime_dir()
    assert "open to other users (mode 0755)" in raised.value.message
    assert raised.value.hint == f"chmod 700 {tmp_path / 'acjob'}"


def test_a_tes_organization_url_is_an_http_url(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[tes]\norganization_url = "https://example.org/lab"\n')
    assert load_config(path).tes.organization_url == "https://example.org/lab"
    assert load_config(path).source == path
    error = _config_error(tmp_path, '[tes]\norganization_url = "urn:acjob:local"\n')
    assert "[tes] organization_url: Value error, not an http:// or https:// URL" in error.message
