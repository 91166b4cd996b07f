"""API keys: how a key looks, how it is stored (hashed), and the key file -- shared by the CLI and the service.

A key is ``bsk_`` + 32 random bytes in URL-safe base64 (:func:`new_key`, ``secrets.token_urlsafe``).
Only its SHA-256 (hex, :func:`hash_key`) is ever stored. A plain, unsalted hash is enough here
because keys are 256-bit random tokens, not passwords: there is no dictionary to try, so salting or
a slow hash (bcrypt, scrypt) would add nothing but cost on every request. The service compares
hashes with :func:`hmac.compare_digest`.

The key file (``BACKSCORE_API_KEYS_FILE``; written by ``backscore keys new NAME --file F``) is JSON::

    {"version": 1, "keys": [
      {"name": "studio", "sha256": "<64 hex>", "created": "2025-01-31T12:00:00Z"},
      {"name": "ci", "sha256": "<64 hex>", "rpm": 600, "jobs": 4, "live_minutes": 0}
    ]}

``rpm`` (requests a minute), ``jobs`` (uploads and jobs in flight) and ``live_minutes`` (live-session
minutes a day) are the key's own quotas; a missing one is the service's default
(``BACKSCORE_KEY_RPM``, ``BACKSCORE_KEY_JOBS``, ``BACKSCORE_KEY_LIVE_MINUTES``). ``BACKSCORE_API_KEYS``
holds more entries as ``NAME:SHA256,NAME:SHA256`` (or the same JSON). :func:`add_key` writes the
file atomically (a temporary file in the same folder, mode 0600, renamed over the old one) under
an exclusive lock on the folder, so entries are never lost, not even to two ``keys new`` at once. Anything
malformed is a :class:`~pipelines.errors.DataError` naming the file (or variable) and the entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import DataError, OptionError

KEY_PREFIX = "bsk_"
FILE_VERSION = 1
#: Mode of the key file: it holds no keys, but who may use the service is nobody else's business.
FILE_MODE = 0o600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KeyQuotas:
    """A key's own quotas; None: the service's default."""

    rpm: int | None = None
    jobs: int | None = None
    live_minutes: float | None = None

    def or_defaults(self, defaults: KeyQuotas) -> KeyQuotas:
        return KeyQuotas(rpm=self.rpm if self.rpm is not None else defaults.rpm,
                         jobs=self.jobs if self.jobs is not None else defaults.jobs,
                         live_minutes=self.live_minutes if self.live_minutes is not None else defaults.live_minutes)


@dataclass(frozen=True)
class KeyEntry:
    """One key as stored: its name, the SHA-256 of the key, its quotas."""

    name: str
    sha256: str
    quotas: KeyQuotas = field(default_factory=KeyQuotas)
    created: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "sha256": self.sha256}
        if self.created:
            out["created"] = self.created
        for k in ("rpm", "jobs", "live_minutes"):
            v = getattr(self.quotas, k)
            if v is not None:
                out[k] = v
        return out


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ``::1``; brackets around IPv6 allowed): where a server
    with no API keys may listen, and where a page may call it from."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_key() -> str:
    """A fresh API key: ``bsk_`` + 256 random bits (URL-safe base64)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The SHA-256 (hex) of a key: what is stored and compared."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise OptionError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (not first)")
    return name


def check_quotas(rpm: int | None = None, jobs: int | None = None, live_minutes: float | None = None) -> KeyQuotas:
    """Quotas as given on the command line; :class:`OptionError` when out of range."""
    if rpm is not None and rpm < 1:
        raise OptionError(f"--rpm must be at least 1 (got {rpm})")
    if jobs is not None and jobs < 0:
        raise OptionError(f"--jobs must be 0 or more (got {jobs})")
    if live_minutes is not None and not live_minutes >= 0:
        raise OptionError(f"--live-minutes must be 0 or more (got {live_minutes})")
    return KeyQuotas(rpm=rpm, jobs=jobs, live_minutes=live_minutes)


# ----------------------------------------------------------------------------- parsing


def _number(obj: dict[str, Any], key: str, where: str, lo: float, integer: bool) -> Any:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)) or v < lo:
        kind = "an integer" if integer else "a number"
        raise DataError(f"{where}: {key!r} must be {kind} of at least {lo:g} (got {v!r})")
    return v


def _entry(obj: Any, where: str) -> KeyEntry:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object with 'name' and 'sha256'")
    name, digest = obj.get("name"), obj.get("sha256")
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataError(f"{where}: 'name' must be 1-64 letters, digits, '.', '_' or '-' (got {name!r})")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise DataError(f"{where}: 'sha256' must be 64 lowercase hex digits, the SHA-256 of the key (never the "
                        "key itself)")
    unknown = set(obj) - {"name", "sha256", "created", "rpm", "jobs", "live_minutes"}
    if unknown:
        raise DataError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    quotas = KeyQuotas(rpm=_number(obj, "rpm", where, 1, True), jobs=_number(obj, "jobs", where, 0, True),
                       live_minutes=_number(obj, "live_minutes", where, 0, False))
    created = obj.get("created")
    return KeyEntry(name, digest, quotas, created if isinstance(created, str) else None)


def check_unique(entries: Sequence[KeyEntry], where: str) -> list[KeyEntry]:
    """``entries``, or :class:`DataError` when two share a name or a hash."""
    names: set[str] = set()
    digests: set[str] = set()
    for e in entries:
        if e.name in names:
            raise DataError(f"{where}: the name {e.name!r} is used twice")
        if e.sha256 in digests:
            raise DataError(f"{where}: key {e.name!r} has the same hash as another key")
        names.add(e.name)
        digests.add(e.sha256)
    return list(entries)


def parse_keys(text: str, where: str) -> list[KeyEntry]:
    """The entries of a key file's text (``where`` names it in errors)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{where}: not a backscore key file (not JSON: {exc})") from None
    if isinstance(doc, dict):
        if doc.get("version", FILE_VERSION) != FILE_VERSION:
            raise DataError(f"{where}: key file version {doc.get('version')!r}; this backscore reads {FILE_VERSION}")
        items = doc.get("keys")
    else:
        items = doc  # a bare list of entries is accepted too
    if not isinstance(items, list):
        raise DataError(f"{where}: not a backscore key file (expected {{\"version\": 1, \"keys\": [...]}})")
    return check_unique([_entry(obj, f"{where}: keys[{i}]") for i, obj in enumerate(items)], where)


def parse_env_keys(value: str, where: str = "BACKSCORE_API_KEYS") -> list[KeyEntry]:
    """``NAME:SHA256,NAME:SHA256`` (or the key file's JSON) -> entries."""
    value = value.strip()
    if not value:
        return []
    if value[0] in "[{":
        return parse_keys(value, where)
    entries = []
    for i, item in enumerate(p.strip() for p in value.split(",")):
        if not item:
            continue
        name, sep, digest = item.partition(":")
        if not sep:
            raise DataError(f"{where}: entry {i + 1} is not NAME:SHA256")
        entries.append(_entry({"name": name.strip(), "sha256": digest.strip().lower()}, f"{where}: entry {i + 1}"))
    return check_unique(entries, where)


def load_key_file(path: str | os.PathLike[str]) -> list[KeyEntry]:
    """The entries of the key file at ``path``; :class:`DataError` naming it when missing or malformed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{p}: API key file not found (create it with `backscore keys new NAME --file {p}`)") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read the API key file ({exc.__class__.__name__}: {exc})") from None
    return parse_keys(text, str(p))


# ----------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for changing ``path``, held on its folder (the file itself is replaced by a rename,
    so a lock on it would not exclude a writer that opened the new one; a folder lock leaves nothing behind)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write(path: Path, entries: Sequence[KeyEntry]) -> None:
    """``entries`` into ``path`` atomically: a temporary file (mode 0600) in its folder, renamed over it."""
    doc = {"version": FILE_VERSION, "keys": [e.to_json() for e in entries]}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself durable too
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def add_key(path: str | os.PathLike[str], name: str, quotas: KeyQuotas | None = None) -> tuple[str, KeyEntry]:
    """A new key named ``name`` appended to the key file at ``path`` (created if missing); returns the key
    (shown once, never stored) and its entry. :class:`OptionError` if the name is taken; a malformed file
    is left as it is (:class:`DataError`)."""
    p = Path(path)
    check_name(name)
    if not p.parent.is_dir():
        raise OptionError(f"{p}: folder {p.parent} does not exist")
    with _locked(p):
        entries = load_key_file(p) if p.exists() else []
        if any(e.name == name for e in entries):
            raise OptionError(f"{p}: a key named {name!r} exists already (revoke it first, or pick another name)")
        key = new_key()
        entry = KeyEntry(name, hash_key(key), quotas or KeyQuotas(),
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        _write(p, [*entries, entry])
    return key, entry


def remove_key(path: str | os.PathLike[str], name: str) -> None:
    """Remove the key named ``name`` from the key file (:class:`OptionError` if there is none)."""
    p = Path(path)
    load_key_file(p)  # missing or malformed: said before anything is locked
    with _locked(p):
        entries = load_key_file(p)
        kept = [e for e in entries if e.name != name]
        if len(kept) == len(entries):
            raise OptionError(f"{p}: no key named {name!r}")
        _write(p, kept)
