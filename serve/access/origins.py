"""Which browser origins may call ``/v1/*``: this server's own, and those of ``BACKSCORE_ALLOWED_ORIGINS``.

Browsers send ``Origin`` with every cross-origin request and with same-origin POSTs; other clients
(curl, servers, the gRPC client) usually send none and are not concerned. A request whose origin
is neither

* the same origin: the ``Origin``'s host and port are the request's ``Host`` (a ``Host`` without a
  port means the default port of the ``Origin``'s scheme, so a TLS-terminating proxy that keeps the
  ``Host`` header works), nor
* on the allow-list (``scheme://host[:port]``, compared after normalising case and default ports;
  no wildcards, and ``null`` -- sandboxed frames, ``file:`` pages -- is never allowed)

is :class:`~pipelines.errors.ForbiddenError` (403). That is what stops a page on another site from
making a visitor's browser open a live session or upload (a ``text/plain`` POST needs no CORS
preflight, so CORS alone would not stop it). Allowed cross origins get CORS headers
(:mod:`serve.http.access`).

In local mode (no API keys) a same-origin page must also be served from a loopback host
(``localhost``, 127.0.0.0/8, ``::1``): a DNS-rebinding page (``evil.example`` re-pointed at
127.0.0.1) is same-origin by ``Host``, but not loopback.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import NamedTuple

from engines.settings import Settings, SettingsError
from pipelines.access import is_loopback
from pipelines.errors import ForbiddenError

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str  # lowercase, IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}")


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` (http or https, nothing else) -> :class:`Origin`; None when it is not one."""
    try:
        u = urllib.parse.urlsplit(value.strip())
        port = u.port
    except ValueError:
        return None
    if u.scheme not in DEFAULT_PORTS or not u.hostname or u.path not in ("", "/") or u.query or u.fragment \
            or u.username is not None:
        return None
    return Origin(u.scheme, u.hostname.lower(), port or DEFAULT_PORTS[u.scheme])


def parse_host(value: str, default_port: int) -> tuple[str, int] | None:
    """A ``Host`` header (``name``, ``name:port``, ``[::1]:port``) -> ``(host, port)``; None when malformed."""
    try:
        u = urllib.parse.urlsplit("//" + value.strip())
        port = u.port
    except ValueError:
        return None
    if not u.hostname or u.path or u.username is not None:
        return None
    return u.hostname.lower(), port or default_port


class OriginPolicy:
    """See the module doc. ``loopback_same_origin``: local mode's extra rule."""

    def __init__(self, allowed: Sequence[str] = (), *, loopback_same_origin: bool = False,
                 setting: str = "BACKSCORE_ALLOWED_ORIGINS") -> None:
        origins = []
        for item in allowed:
            o = parse_origin(item)
            if o is None:
                raise SettingsError(f"{setting}: {item!r} is not an origin: write scheme://host[:port], e.g. "
                                    "https://studio.example.com (no path, no wildcard)")
            origins.append(o)
        self.allowed = frozenset(origins)
        self.loopback_same_origin = loopback_same_origin

    @classmethod
    def from_settings(cls, s: Settings, *, local_mode: bool) -> OriginPolicy:
        items = [p.strip() for p in (s.allowed_origins or "").split(",") if p.strip()]
        return cls(items, loopback_same_origin=local_mode)

    def check(self, origin: str, host: str | None) -> bool:
        """Whether ``origin`` may call the API from a page: False for the same origin (no CORS needed), True for
        an allowed cross origin (answer with CORS headers); :class:`ForbiddenError` for any other."""
        o = parse_origin(origin)
        if o is None:
            raise ForbiddenError(f"requests from origin {origin.strip()[:100]!r} are not allowed")
        if o in self.allowed:
            return True
        server = parse_host(host or "", DEFAULT_PORTS[o.scheme])
        if server == (o.host, o.port):
            if not self.loopback_same_origin or is_loopback(o.host):
                return False
            raise ForbiddenError(f"requests from the web page at {o} are not allowed: with no API keys (local mode) "
                                 "only pages served from localhost may call the API (configure API keys, or list "
                                 "the origin in BACKSCORE_ALLOWED_ORIGINS)")
        raise ForbiddenError(f"requests from the web page at {o} are not allowed (it is neither this server's origin "
                             "nor in BACKSCORE_ALLOWED_ORIGINS)")
