"""Access control of the gateway: API keys, per-key quotas and the browser-origin allow-list.

* :mod:`~serve.access.keys` -- :class:`KeyStore`: the keys this server knows (hashes from
  ``BACKSCORE_API_KEYS_FILE`` and ``BACKSCORE_API_KEYS``, the format of :mod:`pipelines.access`),
  verified with :func:`hmac.compare_digest`; the file is re-read when it changes.
* :mod:`~serve.access.quotas` -- per key: requests a minute (token bucket), jobs in flight, live-session
  minutes a day (:class:`LiveLease`), on an injectable clock.
* :mod:`~serve.access.origins` -- which browser origins may call ``/v1/*`` (same origin, the allow-list).
* :mod:`~serve.access.policy` -- :class:`AccessPolicy`: what the HTTP middleware
  (:mod:`serve.http.access`), the WebRTC routes and the gRPC methods ask.

No key configured is *local mode*: nothing is asked for and no quota applies (``backscore serve``
then listens on loopback only). Quota state lives in each gateway replica (no shared store): with
N replicas a key may get up to N times its quotas.
"""

from serve.access.keys import KeyStore
from serve.access.origins import OriginPolicy
from serve.access.policy import SCOPE_KEY, AccessPolicy, Principal
from serve.access.quotas import LiveLease, Quotas

__all__ = ["SCOPE_KEY", "AccessPolicy", "KeyStore", "LiveLease", "OriginPolicy", "Principal", "Quotas"]
