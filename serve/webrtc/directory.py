"""Which gateway replica holds which WebRTC session, so a hang-up that reaches another replica still ends it.

A WebRTC session lives in the gateway replica whose peer connection carries its media, but Ray
Serve routes ``DELETE /v1/webrtc/{id}`` to any replica. Every :class:`~serve.webrtc.manager.WebRtcManager`
given a directory keeps its sessions listed there under its own owner id (:meth:`sync`, about
twice a second, which also collects the hang-ups filed for it). A replica asked to end a session
it does not hold files the request with :meth:`request_end` and answers 202; the owner ends the
session at its next sync.

:class:`LocalDirectory` keeps the table in this process (tests, several managers in one process);
:class:`RayDirectory` in a named Ray actor shared by all replicas. That actor belongs to the
replica that created it: if it goes away with that replica, the next call creates a new one and
every owner re-lists its sessions at its next sync, so the table heals itself within a sync.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

ACTOR_NAME = "backscore-webrtc-sessions"
ACTOR_NAMESPACE = "backscore"


class SessionDirectory(Protocol):
    async def sync(self, owner: str, held: list[str]) -> list[str]:
        """List ``held`` as ``owner``'s sessions (and only those); return the hang-ups filed for them."""
        ...

    async def request_end(self, session_id: str) -> bool:
        """File a hang-up for ``session_id`` with its owner; False when no replica holds it."""
        ...


class DirectoryTable:
    """The table itself (plain Python; what both directories keep)."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}
        self.pending: dict[str, set[str]] = {}

    def sync(self, owner: str, held: list[str]) -> list[str]:
        keep = set(held)
        for sid in [s for s, o in self.owners.items() if o == owner and s not in keep]:
            del self.owners[sid]
        for sid in keep:
            self.owners[sid] = owner
        return sorted(self.pending.pop(owner, set()) & keep)

    def request_end(self, session_id: str) -> bool:
        owner = self.owners.get(session_id)
        if owner is None:
            return False
        self.pending.setdefault(owner, set()).add(session_id)
        return True


class LocalDirectory:
    """A :class:`SessionDirectory` in this process."""

    def __init__(self) -> None:
        self.table = DirectoryTable()

    async def sync(self, owner: str, held: list[str]) -> list[str]:
        return self.table.sync(owner, held)

    async def request_end(self, session_id: str) -> bool:
        return self.table.request_end(session_id)


class RayDirectory:
    """A :class:`SessionDirectory` in the named Ray actor ``backscore-webrtc-sessions`` (created on first use)."""

    def __init__(self) -> None:
        self._actor: Any = None

    def _get(self) -> Any:
        if self._actor is None:
            import ray

            cls: Any = ray.remote(DirectoryTable)  # a plain (one call at a time) actor: the table needs no lock
            self._actor = cls.options(name=ACTOR_NAME, namespace=ACTOR_NAMESPACE, get_if_exists=True,
                                      num_cpus=0).remote()
        return self._actor

    async def _call(self, method: str, *args: Any) -> Any:
        from ray.exceptions import RayActorError

        try:
            return await getattr(self._get(), method).remote(*args)
        except RayActorError:
            self._actor = None  # its replica went away: make (or find) a new one, once
            return await getattr(self._get(), method).remote(*args)

    async def sync(self, owner: str, held: list[str]) -> list[str]:
        result: list[str] = await self._call("sync", owner, held)
        return result

    async def request_end(self, session_id: str) -> bool:
        return bool(await self._call("request_end", session_id))


async def end_elsewhere(directory: SessionDirectory | None, session_id: str) -> str | None:
    """A hang-up for a session this replica does not hold: ``"closing"`` when the directory filed it with
    its owner, None when no replica holds it (or there is no directory, or it is unavailable)."""
    if directory is None:
        return None
    try:
        if await directory.request_end(session_id):
            return "closing"
    except Exception as exc:
        log.warning("session directory unavailable: %r", exc)
    return None


async def hang_ups(directory: SessionDirectory, owner: str, held: list[str]) -> list[str]:
    """:meth:`SessionDirectory.sync`, or none when the directory is unavailable (logged): it is a convenience,
    the sessions go on without it."""
    try:
        return await directory.sync(owner, held)
    except Exception as exc:
        log.warning("session directory unavailable: %r", exc)
        return []

