"""API keys, quotas and origins without a server: the key file format (pipelines/access.py), the key store,
the per-key quotas on a clock the test moves, and the origin rules (serve/access/)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from engines.settings import Settings, SettingsError
from pipelines.access import (
    KeyQuotas,
    add_key,
    hash_key,
    is_loopback,
    load_key_file,
    new_key,
    parse_env_keys,
    remove_key,
)
from pipelines.errors import AuthError, DataError, ForbiddenError, OptionError, QuotaError, error_status, retry_after_s
from serve.access import AccessPolicy, KeyStore, OriginPolicy
from serve.access.quotas import DAY_S, JobCounter, LiveMinutes, RateLimiter


class Clock:
    """Wall-clock seconds that move only when the test says."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


#: 01:00 UTC on some day.
T0 = 20_000 * DAY_S + 3600.0


# ----------------------------------------------------------------------------- the key file


def test_a_key_is_a_random_token_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100 and all(k.startswith("bsk_") and len(k) == 4 + 43 for k in keys)
    path = tmp_path / "keys.json"
    key, entry = add_key(path, "studio", KeyQuotas(rpm=5))
    assert entry.sha256 == hash_key(key) and len(entry.sha256) == 64
    text = path.read_text()
    assert key not in text and key[4:] not in text and hash_key(key) in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    [stored] = load_key_file(path)
    assert (stored.name, stored.quotas) == ("studio", KeyQuotas(rpm=5))


def test_adding_keeps_every_entry_and_refuses_a_taken_name(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    for name in ("a", "b", "c"):
        add_key(path, name)
    with pytest.raises(OptionError, match="'b' exists already"):
        add_key(path, "b")
    assert [e.name for e in load_key_file(path)] == ["a", "b", "c"]
    remove_key(path, "b")
    assert [e.name for e in load_key_file(path)] == ["a", "c"]
    with pytest.raises(OptionError, match="no key named 'b'"):
        remove_key(path, "b")
    assert sorted(os.listdir(tmp_path)) == ["keys.json"]  # no temporary or lock file left behind


@pytest.mark.parametrize(("text", "words"), [
    ("{", "not JSON"),
    ('{"keys": {}}', "not a backscore key file"),
    ('{"version": 9, "keys": []}', "version 9"),
    ('{"keys": [{"name": "a"}]}', "keys[0]: 'sha256' must be 64 lowercase hex digits"),
    ('{"keys": [{"name": "a", "sha256": "bsk_plaintext"}]}', "never the key itself"),
    ('{"keys": [{"name": "a b", "sha256": "' + "0" * 64 + '"}]}', "'name' must be"),
    ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "rpm": 0}]}', "'rpm' must be an integer of at least 1"),
    ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "key": "x"}]}', "unknown field(s) key"),
    ('[{"name": "a", "sha256": "' + "0" * 64 + '"}, {"name": "a", "sha256": "' + "1" * 64 + '"}]', "used twice"),
])
def test_a_malformed_key_file_is_one_error_naming_the_file(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_key_file(path)
    assert str(path) in str(info.value) and words in str(info.value)
    with pytest.raises(DataError):  # and it is never overwritten
        add_key(path, "new")
    assert path.read_text() == text


def test_a_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found .*backscore keys new NAME --file"):
        load_key_file(tmp_path / "nope.json")


def test_env_entries() -> None:
    a, b = hash_key("bsk_a"), hash_key("bsk_b")
    entries = parse_env_keys(f" studio:{a} , ci:{b.upper()} ")
    assert [(e.name, e.sha256) for e in entries] == [("studio", a), ("ci", b)]
    assert parse_env_keys(json.dumps([{"name": "j", "sha256": a, "jobs": 0}]))[0].quotas.jobs == 0
    for bad in ("studio", f"studio:{a}x", "studio:bsk_a"):
        with pytest.raises(DataError, match="BACKSCORE_API_KEYS"):
            parse_env_keys(bad)


# ----------------------------------------------------------------------------- the key store


def name_of(store: KeyStore, key: str) -> str | None:
    entry = store.verify(key)
    return entry.name if entry is not None else None


def test_the_store_verifies_keys_and_rereads_its_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key1, _ = add_key(path, "one")
    monotonic = Clock(0.0)
    store = KeyStore(parse_env_keys(f"env:{hash_key('bsk_env')}"), os.fspath(path), reload_s=5.0, clock=monotonic)
    assert store.enabled
    assert name_of(store, key1) == "one" and name_of(store, "bsk_env") == "env"
    assert store.verify("bsk_wrong") is None and store.verify("") is None
    key2, _ = add_key(path, "two")
    assert store.verify(key2) is None  # not re-read before reload_s
    monotonic.t = 5.0
    assert name_of(store, key2) == "two"
    remove_key(path, "one")
    monotonic.t = 10.0
    assert store.verify(key1) is None  # revoked
    path.write_text("{broken")
    monotonic.t = 15.0
    assert name_of(store, key2) == "two"  # a broken file: the keys read before stay in force


def test_no_keys_is_local_mode_and_an_empty_key_file_locks_everyone_out(tmp_path: Path) -> None:
    assert not KeyStore().enabled and not AccessPolicy().enabled
    assert AccessPolicy().authenticate(None) is None
    path = tmp_path / "keys.json"
    path.write_text('{"version": 1, "keys": []}')
    policy = AccessPolicy.from_settings(Settings.from_env({"BACKSCORE_API_KEYS_FILE": os.fspath(path)}))
    assert policy.enabled
    with pytest.raises(AuthError):
        policy.authenticate("Bearer bsk_anything")


def test_authentication_and_default_quotas() -> None:
    env = {"BACKSCORE_API_KEYS": f"a:{hash_key('bsk_a')}", "BACKSCORE_KEY_RPM": "7", "BACKSCORE_KEY_JOBS": "3",
           "BACKSCORE_KEY_LIVE_MINUTES": "9.5"}
    policy = AccessPolicy.from_settings(Settings.from_env(env))
    who = policy.authenticate("Bearer bsk_a")
    assert who is not None and (who.name, who.rpm, who.jobs, who.live_minutes) == ("a", 7, 3, 9.5)
    assert policy.authenticate("bearer   bsk_a ") == who  # the scheme is case-insensitive
    for header, words in ((None, "needs an API key"), ("", "needs an API key"), ("Basic YTpi", "malformed"),
                          ("Bearer", "malformed"), ("Bearer bsk_b", "not valid")):
        with pytest.raises(AuthError, match=words):
            policy.authenticate(header)


# ----------------------------------------------------------------------------- quotas


def test_requests_a_minute_is_a_token_bucket() -> None:
    clock = Clock(T0)
    limiter = RateLimiter(clock)
    for _ in range(3):
        limiter.take("k", 3)
    with pytest.raises(QuotaError) as info:
        limiter.take("k", 3)
    assert info.value.retry_after_s == 20 and "retry in 20 s" in str(info.value)  # 3 a minute: one every 20 s
    assert retry_after_s(info.value) == 20 and error_status(info.value).http_status == 429
    limiter.take("other", 3)  # keys do not share
    clock.t += 19.0
    with pytest.raises(QuotaError) as info:
        limiter.take("k", 3)
    assert info.value.retry_after_s == 1
    clock.t += 1.0
    limiter.take("k", 3)
    clock.t += 3600.0  # refills to a minute's worth, no more
    for _ in range(3):
        limiter.take("k", 3)
    with pytest.raises(QuotaError):
        limiter.take("k", 3)


def test_quota_errors_survive_pickling() -> None:
    """Ray carries errors between processes."""
    err = pickle.loads(pickle.dumps(QuotaError("used up; retry in 7 s", retry_after_s=7)))
    assert str(err) == "used up; retry in 7 s" and err.retry_after_s == 7


def test_jobs_in_flight() -> None:
    jobs = JobCounter()
    with jobs.slot("k", 2), jobs.slot("k", 2):
        assert jobs.in_flight("k") == 2
        with pytest.raises(QuotaError, match="2 jobs in flight") as info, jobs.slot("k", 2):
            pass
        assert info.value.retry_after_s == 5
        with jobs.slot("other", 2):
            pass
    assert jobs.in_flight("k") == 0
    with jobs.slot("k", 2):  # released also when the block fails
        with pytest.raises(RuntimeError), jobs.slot("k", 2):
            raise RuntimeError
        assert jobs.in_flight("k") == 1
    with pytest.raises(ForbiddenError, match="may not run jobs"), jobs.slot("k", 0):
        pass


def test_live_minutes_count_open_and_closed_sessions_per_utc_day() -> None:
    clock = Clock(T0)
    live = LiveMinutes(clock)
    a = live.open("k", 3.0)
    clock.t += 30
    b = live.open("k", 3.0)
    clock.t += 30
    assert live.used_s("k") == 90.0 and a.exhausted() is None
    a.release()
    a.release()  # idempotent
    clock.t += 30
    assert live.used_s("k") == 120.0  # a: 60 s closed, b: 60 s open
    assert live.used_s("other") == 0.0
    clock.t += 59
    assert b.exhausted() is None
    clock.t += 1
    assert "live minutes of API key 'k' for today (3) are used up" in (b.exhausted() or "")
    with pytest.raises(QuotaError) as info:
        live.open("k", 3.0)
    seconds_to_midnight = DAY_S - (clock.t % DAY_S)
    assert info.value.retry_after_s == int(seconds_to_midnight)
    b.release()
    assert live.used_s("k") == 180.0
    clock.t += seconds_to_midnight  # a new UTC day
    assert live.used_s("k") == 0.0
    c = live.open("k", 3.0)
    assert c.exhausted() is None
    with pytest.raises(ForbiddenError, match="may not open live sessions"):
        live.open("k", 0)


def test_a_session_open_at_midnight_counts_only_todays_part() -> None:
    clock = Clock(21_000 * DAY_S - 60)
    live = LiveMinutes(clock)
    lease = live.open("k", 10.0)
    clock.t += 120  # 60 s yesterday, 60 s today
    assert live.used_s("k") == 60.0
    lease.release()
    assert live.used_s("k") == 60.0


# ----------------------------------------------------------------------------- origins


def test_origins() -> None:
    policy = OriginPolicy(["https://Studio.Example.com", "http://localhost:5173"])
    assert policy.check("https://studio.example.com", "api.example.com") is True  # allowed cross origin
    assert policy.check("https://studio.example.com:443", None) is True
    assert policy.check("http://localhost:5173", "api.example.com") is True
    assert policy.check("http://api.example.com:8000", "api.example.com:8000") is False  # same origin
    assert policy.check("https://api.example.com", "api.example.com") is False  # TLS ends in front, Host kept
    assert policy.check("http://[::1]:8000", "[::1]:8000") is False
    for origin, host in (("https://evil.example", "api.example.com"), ("http://api.example.com:8001",
                         "api.example.com:8000"), ("http://studio.example.com", "api.example.com"),
                         ("null", "api.example.com"), ("https://api.example.com/path", "api.example.com"),
                         ("ftp://api.example.com", "api.example.com"), ("https://api.example.com", None)):
        with pytest.raises(ForbiddenError):
            policy.check(origin, host)


def test_local_mode_takes_same_origin_pages_from_loopback_only() -> None:
    local = OriginPolicy(loopback_same_origin=True)
    assert local.check("http://127.0.0.1:8000", "127.0.0.1:8000") is False
    assert local.check("http://localhost:8000", "localhost:8000") is False
    with pytest.raises(ForbiddenError, match="only pages served from localhost"):
        local.check("http://rebound.example:8000", "rebound.example:8000")  # DNS rebinding
    assert AccessPolicy().origins.loopback_same_origin  # local mode has the rule, a policy with keys not
    assert not AccessPolicy(KeyStore(parse_env_keys(f"a:{hash_key('bsk_a')}"))).origins.loopback_same_origin


def test_a_bad_allowed_origin_names_the_variable() -> None:
    env = {"BACKSCORE_ALLOWED_ORIGINS": "https://a.example, *.example.com"}
    with pytest.raises(SettingsError, match=r"BACKSCORE_ALLOWED_ORIGINS: '\*\.example\.com' is not an origin"):
        AccessPolicy.from_settings(Settings.from_env(env))


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "app.localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.2", "example.com", ""]))
