"""``backscore keys new|list|revoke`` as a user runs them (subprocesses): the key is printed once, the file holds
hashes only (mode 0600), existing entries are never lost, and a malformed file is one error naming it."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from pipelines.access import load_key_file

ROOT = Path(__file__).resolve().parents[2]


def keys(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BACKSCORE_API_KEY")}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "keys", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**base, **(env or {})})


def test_new_prints_the_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    res = keys("new", "studio", "--file", os.fspath(path), "--rpm", "120", "--jobs", "4", "--live-minutes", "30")
    assert res.returncode == 0, res.stderr
    key = res.stdout.strip()
    assert key.startswith("bsk_") and "\n" not in key  # stdout is the key alone: KEY=$(backscore keys new ...)
    assert "only time the key is shown" in res.stderr and key not in res.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    [entry] = doc["keys"]
    assert entry["name"] == "studio" and entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert (entry["rpm"], entry["jobs"], entry["live_minutes"]) == (120, 4, 30.0)
    assert key not in path.read_text()


def test_an_existing_file_keeps_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = keys("new", "a", "--file", os.fspath(path)).stdout.strip()
    before = json.loads(path.read_text())["keys"]
    second = keys("new", "b", "--file", os.fspath(path)).stdout.strip()
    after = json.loads(path.read_text())["keys"]
    assert after[0] == before[0] and [e["name"] for e in after] == ["a", "b"] and first != second
    res = keys("new", "a", "--file", os.fspath(path))  # a taken name: refused, nothing changed
    assert res.returncode == 2 and "exists already" in res.stderr and res.stdout == ""
    assert json.loads(path.read_text())["keys"] == after


def test_keys_made_at_once_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: keys("new", f"k{i}", "--file", os.fspath(path)), range(8)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert sorted(e.name for e in load_key_file(path)) == [f"k{i}" for i in range(8)]
    assert sorted(os.listdir(tmp_path)) == ["keys.json"]


def test_list_shows_names_and_quotas_never_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys("new", "studio", "--file", os.fspath(path), "--rpm", "5")
    keys("new", "ci", "--file", os.fspath(path))
    digests = [e.sha256 for e in load_key_file(path)]
    res = keys("list", "--file", os.fspath(path), env={"BACKSCORE_KEY_JOBS": "3"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "requests/min"]
    studio = next(ln for ln in lines if ln.startswith("studio"))
    assert studio.split()[:3] == ["studio", "5", "3"] and "(default)" in studio  # own rpm, default jobs
    ci = next(ln for ln in lines if ln.startswith("ci "))
    assert ci.split()[:2] == ["ci", "60"]
    as_json = json.loads(keys("list", "--json", env={"BACKSCORE_API_KEYS_FILE": os.fspath(path)}).stdout)
    assert [(r["name"], r["rpm"], r["defaults"]) for r in as_json] == [
        ("studio", 5, ["jobs", "live_minutes"]), ("ci", 60, ["rpm", "jobs", "live_minutes"])]
    for d in digests:
        assert d not in res.stdout and d[:16] not in json.dumps(as_json)


def test_revoke(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys("new", "a", "--file", os.fspath(path))
    keys("new", "b", "--file", os.fspath(path))
    assert keys("revoke", "a", "--file", os.fspath(path)).returncode == 0
    assert [e.name for e in load_key_file(path)] == ["b"]
    res = keys("revoke", "a", "--file", os.fspath(path))
    assert res.returncode == 2 and "no key named 'a'" in res.stderr


def test_a_malformed_file_is_one_error_naming_it_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"version": 1, "keys": [{"name": "a", "sha256": "bsk_oops_a_plain_key"}]}')
    for args in (("new", "b", "--file", os.fspath(path)), ("list", "--file", os.fspath(path))):
        res = keys(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("backscore: error: ")
        assert os.fspath(path) in lines[0] and "sha256" in lines[0] and "Traceback" not in res.stderr
    assert "bsk_oops" in path.read_text()


def test_without_a_file_new_prints_the_variable_entry_and_writes_nothing(tmp_path: Path) -> None:
    res = keys("new", "studio")
    assert res.returncode == 0
    key = res.stdout.strip()
    assert f"studio:{hashlib.sha256(key.encode()).hexdigest()}" in res.stderr
    assert "BACKSCORE_API_KEYS" in res.stderr
    res = keys("new", "studio", "--rpm", "5")
    assert res.returncode == 2 and "quotas need a key file" in res.stderr
    res = keys("new", "no spaces", "--file", os.fspath(tmp_path / "k.json"))
    assert res.returncode == 2 and "key name" in res.stderr and not (tmp_path / "k.json").exists()
    assert keys("list").returncode == 2
