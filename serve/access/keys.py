"""The API keys a gateway knows: hashes only, verified in constant time, the key file re-read when it changes."""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from engines.settings import Settings
from pipelines.access import KeyEntry, check_unique, hash_key, load_key_file, parse_env_keys

log = logging.getLogger(__name__)


class KeyStore:
    """The entries of ``BACKSCORE_API_KEYS`` (``env_entries``) and of the key file (``path``).

    :meth:`verify` hashes the presented key and compares it with every stored hash using
    :func:`hmac.compare_digest` (no early exit: the time does not depend on which entry matches).
    The file is checked for changes at most every ``reload_s`` seconds (its size, mtime and inode:
    a Kubernetes Secret update swaps a symlink), so ``backscore keys new`` / ``revoke`` apply to a
    running service; a file that stops parsing is logged and the keys read before stay in force.
    """

    def __init__(self, env_entries: Sequence[KeyEntry] = (), path: str | None = None, *, reload_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = os.path.abspath(path) if path else None
        self._env = list(env_entries)
        self.reload_s = reload_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = clock()
        self._entries: list[KeyEntry] = self._merge(self._read()) if self.path else check_unique(self._env, "keys")

    @classmethod
    def from_settings(cls, s: Settings) -> KeyStore:
        """The keys ``s`` names (:class:`~pipelines.errors.DataError` for a missing or malformed file)."""
        return cls(parse_env_keys(s.api_keys or ""), s.api_keys_file or None)

    @property
    def enabled(self) -> bool:
        """Whether keys are required: a key file is configured (even an empty one) or entries are given."""
        return self.path is not None or bool(self._env)

    def entries(self) -> list[KeyEntry]:
        self._maybe_reload()
        return list(self._entries)

    def verify(self, key: str) -> KeyEntry | None:
        """The entry of ``key``, or None when this server does not know it."""
        digest = hash_key(key)
        found = None
        for e in self.entries():
            if hmac.compare_digest(digest, e.sha256):
                found = e
        return found

    # -- the file
    def _read(self) -> list[KeyEntry]:
        assert self.path is not None
        st = os.stat(self.path) if os.path.exists(self.path) else None
        entries = load_key_file(self.path)  # DataError naming the file
        self._stamp = (st.st_size, st.st_mtime_ns, st.st_ino) if st else None
        return entries

    def _merge(self, from_file: Sequence[KeyEntry]) -> list[KeyEntry]:
        return check_unique([*self._env, *from_file], f"{self.path} and BACKSCORE_API_KEYS")

    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        now = self._clock()
        if now - self._checked < self.reload_s:
            return
        with self._lock:
            if now - self._checked < self.reload_s:
                return
            self._checked = now
            try:
                st = os.stat(self.path)
                stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
                if stamp == self._stamp:
                    return
                self._stamp = stamp  # a broken file is reported once, not at every check
                self._entries = self._merge(self._read())
                log.info("API keys reloaded from %s: %d key(s)", self.path, len(self._entries))
            except Exception as exc:
                log.error("API key file %s not reloaded (the keys read before stay in force): %s", self.path, exc)
