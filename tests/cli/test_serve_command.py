"""``backscore serve`` and API keys: no keys means loopback only (a reachable host is refused before anything is
started), gRPC only when asked for, and the keys are checked before Ray is. The command's launch of ``serve
run`` is watched by replacing ``subprocess.call`` in the command's module: what it would start, not a fake
of what is tested."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.access import add_key
from pipelines.cli import main as backscore
from pipelines.cli import serve as serve_cmd

ROOT = Path(__file__).resolve().parents[2]
LOCAL = os.fspath(ROOT / "deploy" / "local.yaml")


@pytest.fixture()
def launches(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``backscore serve`` hands to ``serve run`` (the config it wrote, the environment), instead of running it."""
    seen: list[dict[str, Any]] = []

    def call(cmd: list[str], env: dict[str, str] | None = None) -> int:
        assert cmd[1:4] == ["run", "-a", "local"], cmd
        seen.append({"config": yaml.safe_load(Path(cmd[-1]).read_text()), "env": env or {}})
        return 0

    monkeypatch.setattr(serve_cmd.subprocess, "call", call)
    for var in ("BACKSCORE_API_KEYS_FILE", "BACKSCORE_API_KEYS", "BACKSCORE_HOST"):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_a_reachable_host_without_keys_is_refused_before_anything_starts() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKSCORE_API_KEY", "BACKSCORE_HOST"))}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "--host", "0.0.0.0", "--config", LOCAL],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("backscore: error: refusing to listen on 0.0.0.0 with no API keys")
    assert "backscore keys new NAME --file keys.json" in lines[0] and "BACKSCORE_API_KEYS_FILE" in lines[0]
    assert time.monotonic() - t0 < 30  # no Ray cluster came up and went


def test_refused_in_process_too_and_nothing_launched(launches: list[dict[str, Any]], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert backscore(["serve", "--host", "0.0.0.0", "--config", LOCAL]) == 2
    assert backscore(["serve", "--host", "192.168.1.10", "--config", LOCAL]) == 2
    no_host = tmp_path / "nohost.yaml"
    config = yaml.safe_load(Path(LOCAL).read_text())
    del config["http_options"]["host"]
    no_host.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("BACKSCORE_HOST", "0.0.0.0")  # the default host, when neither flag nor config names one
    assert backscore(["serve", "--config", os.fspath(no_host)]) == 2
    assert launches == []


def test_local_mode_serves_loopback_and_leaves_grpc_off(launches: list[dict[str, Any]],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert backscore(["serve", "--config", LOCAL]) == 0
    config = launches[-1]["config"]
    assert config["http_options"]["host"] == "127.0.0.1" and "grpc_options" not in config
    assert "gRPC is off" in capsys.readouterr().err
    assert backscore(["serve", "--config", LOCAL, "--grpc-port", "9123"]) == 0  # asked for: on, with a warning
    assert launches[-1]["config"]["grpc_options"]["port"] == 9123
    assert "listens on every interface" in capsys.readouterr().err


def test_with_keys_any_host_and_grpc(launches: list[dict[str, Any]], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    add_key(tmp_path / "keys.json", "studio")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BACKSCORE_API_KEYS_FILE", "keys.json")  # relative: made absolute for the replicas
    assert backscore(["serve", "--host", "0.0.0.0", "--config", LOCAL]) == 0
    config, env = launches[-1]["config"], launches[-1]["env"]
    assert config["http_options"]["host"] == "0.0.0.0" and config["grpc_options"]["port"] == 9000
    assert env["BACKSCORE_API_KEYS_FILE"] == os.fspath(tmp_path / "keys.json")


def test_keys_named_in_the_config_count_and_are_checked_first(launches: list[dict[str, Any]], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = yaml.safe_load(Path(LOCAL).read_text())
    env_vars = config["applications"][0]["runtime_env"]["env_vars"]
    env_vars["BACKSCORE_API_KEYS_FILE"] = os.fspath(tmp_path / "keys.json")
    with_keys = tmp_path / "with-keys.yaml"
    with_keys.write_text(yaml.safe_dump(config))
    assert backscore(["serve", "--host", "0.0.0.0", "--config", os.fspath(with_keys)]) == 2  # no such file yet
    err = capsys.readouterr().err
    assert "keys.json: API key file not found" in err
    (tmp_path / "keys.json").write_text("{not json")
    assert backscore(["serve", "--host", "0.0.0.0", "--config", os.fspath(with_keys)]) == 2
    assert "keys.json: not a backscore key file" in capsys.readouterr().err
    (tmp_path / "keys.json").unlink()
    add_key(tmp_path / "keys.json", "studio")
    assert backscore(["serve", "--host", "0.0.0.0", "--config", os.fspath(with_keys)]) == 0
    assert launches[-1]["config"]["http_options"]["host"] == "0.0.0.0"
    assert len(launches) == 1


def test_the_webrtc_dev_server_refuses_a_reachable_host_without_keys_too() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKSCORE_API_KEY", "BACKSCORE_HOST"))}
    res = subprocess.run([sys.executable, "-m", "serve.webrtc", "--host", "0.0.0.0"], capture_output=True, text=True,
                         timeout=60, env=env, cwd=ROOT)
    assert res.returncode == 2 and "refusing to listen on 0.0.0.0 with no API keys" in res.stderr
    res = subprocess.run([sys.executable, "-m", "serve.webrtc"], capture_output=True, text=True, timeout=60,
                         env={**env, "BACKSCORE_HOST": "0.0.0.0"}, cwd=ROOT)
    assert res.returncode == 2 and "refusing to listen on 0.0.0.0" in res.stderr
