"""Every BACKSCORE_* variable goes through engines/settings.py, and the README's table says them all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engines.settings import PREFIX, Settings, SettingsError, markdown_table, setting, settings, variables

ROOT = Path(__file__).resolve().parents[2]


def _code_files() -> list[Path]:
    return [p for pkg in ("engines", "pipelines", "serve", "loadtest") for p in (ROOT / pkg).rglob("*.py")]


def test_every_variable_the_code_names_is_a_setting() -> None:
    fields = set(variables())
    named = {m for p in _code_files() for m in re.findall(r"BACKSCORE_[A-Z0-9_]+", p.read_text(encoding="utf-8"))}
    named.discard("BACKSCORE_")
    assert named <= fields, f"read outside engines/settings.py: {sorted(named - fields)}"


def test_only_settings_reads_the_environment_for_them() -> None:
    offenders = []
    for p in _code_files():
        if p.name == "settings.py" and p.parent.name == "engines":
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"environ(\.get)?\W+[\"']?BACKSCORE_|getenv\([\"']BACKSCORE_", line):
                offenders.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_readme_table_is_the_settings_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, "README's environment table is stale: python -m engines.settings prints it"


def test_values_are_read_at_call_time_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_MAX_UPLOAD_MB", "12.5")
    monkeypatch.setenv("BACKSCORE_CACHE", "/tmp/somewhere")
    s = settings()
    assert s.max_upload_mb == 12.5 and str(s.cache_root()) == "/tmp/somewhere"
    assert setting("BACKSCORE_MAX_UPLOAD_MB") == 12.5
    monkeypatch.delenv("BACKSCORE_CACHE")
    assert settings().cache_root() == Path.home() / ".cache" / "backscore"
    monkeypatch.setenv("BACKSCORE_MAX_UPLOAD_MB", "lots")
    with pytest.raises(SettingsError, match="BACKSCORE_MAX_UPLOAD_MB"):
        settings()
    monkeypatch.setenv("BACKSCORE_MAX_UPLOAD_MB", "-1")
    with pytest.raises(SettingsError, match=r"BACKSCORE_MAX_UPLOAD_MB: must be at least"):
        settings()
    monkeypatch.setenv("BACKSCORE_MAX_UPLOAD_MB", "1")
    monkeypatch.setenv("BACKSCORE_MODEL_NICENESS", "20")
    with pytest.raises(SettingsError, match=r"BACKSCORE_MODEL_NICENESS: must be between 0 and 19"):
        settings()
    assert Settings.from_env({"BACKSCORE_MODEL_NICENESS": "0"}).model_niceness == 0


def test_a_bad_variable_is_one_clear_cli_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "catalog", "list"], capture_output=True, text=True,
                         env={**env, "BACKSCORE_MAX_UPLOAD_MB": "lots", "BACKSCORE_CACHE": str(tmp_path)},
                         timeout=120, cwd=ROOT)
    assert res.returncode == 4, res.stderr
    assert res.stderr.startswith("backscore: error: BACKSCORE_MAX_UPLOAD_MB:") and res.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())  # it stopped before building anything
