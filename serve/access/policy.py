"""The access policy of one gateway: who is calling (API key), whether they may (quotas), from where (origins).

:class:`AccessPolicy` is what the front ends ask:

* HTTP: the middleware of :mod:`serve.http.access` runs :meth:`AccessPolicy.check_origin` and
  :meth:`AccessPolicy.admit` on the request's headers before any route (so before any of the body is
  read), holds a :meth:`AccessPolicy.job` slot around the job routes, and leaves the
  :class:`Principal` in the ASGI scope under :data:`SCOPE_KEY` for the routes (the WebRTC offer takes
  a :meth:`AccessPolicy.live_lease`);
* gRPC: each ``backscore.v1.Backscore`` method starts with :meth:`AccessPolicy.admit_grpc` on its
  context's ``authorization`` metadata (:mod:`serve.grpc.servicer`).

A key is sent as ``Authorization: Bearer <key>`` (HTTP header, or gRPC metadata ``authorization``).
In local mode (no keys configured: :attr:`AccessPolicy.enabled` is False) every check lets the
request through with no principal, and no quota applies; only the origin check remains.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engines.settings import Settings, settings
from pipelines.access import KeyQuotas
from pipelines.errors import AuthError
from serve.access.keys import KeyStore
from serve.access.origins import OriginPolicy
from serve.access.quotas import LiveLease, Quotas, WallClock

#: Where the HTTP middleware leaves the request's :class:`Principal` (None in local mode) in the ASGI scope.
SCOPE_KEY = "backscore.principal"
HOW = "send it as 'authorization: Bearer <key>' (an HTTP header, or gRPC metadata)"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its key's name and quotas (the key's own, else the defaults)."""

    name: str
    rpm: int
    jobs: int
    live_minutes: float


def metadata_value(context: Any, name: str) -> str | None:
    """The first ``name`` entry of a gRPC call's invocation metadata (grpc.aio's context or Ray Serve's)."""
    getter = getattr(context, "invocation_metadata", None)
    for key, value in (getter() if getter is not None else None) or ():
        if str(key).lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


class AccessPolicy:
    """See the module doc. ``clock``: wall-clock seconds for the quotas (tests move their own)."""

    def __init__(self, keys: KeyStore | None = None, *, defaults: KeyQuotas | None = None,
                 origins: OriginPolicy | None = None, clock: WallClock = time.time,
                 live_check_s: float = 1.0) -> None:
        self.keys = keys or KeyStore()
        self.defaults = (defaults or KeyQuotas()).or_defaults(KeyQuotas(rpm=60, jobs=2, live_minutes=120.0))
        self.origins = origins or OriginPolicy(loopback_same_origin=not self.keys.enabled)
        self.quotas = Quotas(clock)
        #: How often an open live session asks its lease whether its key's minutes are used up (seconds).
        self.live_check_s = live_check_s

    @classmethod
    def from_settings(cls, s: Settings | None = None, *, clock: WallClock = time.time) -> AccessPolicy:
        """The policy the ``BACKSCORE_*`` variables describe (keys, default quotas, allowed origins)."""
        s = s or settings()
        keys = KeyStore.from_settings(s)
        return cls(keys, defaults=KeyQuotas(rpm=s.key_rpm, jobs=s.key_jobs, live_minutes=s.key_live_minutes),
                   origins=OriginPolicy.from_settings(s, local_mode=not keys.enabled), clock=clock)

    @property
    def enabled(self) -> bool:
        """Whether API keys are required (False: local mode)."""
        return self.keys.enabled

    # -- who
    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller an ``Authorization`` value names (None in local mode); :class:`AuthError` when it names
        none this server knows."""
        if not self.enabled:
            return None
        if not authorization or not authorization.strip():
            raise AuthError(f"this server needs an API key: {HOW}")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(f"malformed authorization: {HOW}")
        entry = self.keys.verify(token)
        if entry is None:
            raise AuthError("the API key is not valid (unknown or revoked)")
        q = entry.quotas.or_defaults(self.defaults)
        assert q.rpm is not None and q.jobs is not None and q.live_minutes is not None
        return Principal(entry.name, q.rpm, q.jobs, q.live_minutes)

    def admit(self, authorization: str | None) -> Principal | None:
        """:meth:`authenticate`, then one request off the caller's requests a minute (QuotaError when none is left)."""
        principal = self.authenticate(authorization)
        if principal is not None:
            self.quotas.requests.take(principal.name, principal.rpm)
        return principal

    def admit_grpc(self, context: Any) -> Principal | None:
        """:meth:`admit` for a gRPC call: its ``authorization`` metadata (``context`` may be None: no metadata)."""
        if not self.enabled:
            return None
        return self.admit(metadata_value(context, "authorization"))

    # -- from where
    def check_origin(self, origin: str, host: str | None) -> bool:
        """See :meth:`OriginPolicy.check`: False same origin, True allowed cross origin, else ForbiddenError."""
        return self.origins.check(origin, host)

    # -- how much
    @contextlib.contextmanager
    def job(self, principal: Principal | None) -> Iterator[None]:
        """One of the caller's job slots while the block runs (nothing to hold in local mode)."""
        if principal is None:
            yield
            return
        with self.quotas.jobs.slot(principal.name, principal.jobs):
            yield

    def live_lease(self, principal: Principal | None) -> LiveLease | None:
        """A claim on the caller's live minutes for a new session (None in local mode); QuotaError when they
        are used up for today."""
        if principal is None:
            return None
        return self.quotas.live.open(principal.name, principal.live_minutes)
