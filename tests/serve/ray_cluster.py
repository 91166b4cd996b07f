"""A fresh local Ray cluster for a test module (the Ray Serve tests each start their own)."""

from __future__ import annotations

import time


def start_local_ray(num_cpus: int, env: dict[str, str]) -> None:
    """``ray.init`` of a new local cluster with ``env`` in its workers. On a 2-core machine the previous
    module's cluster may still be shutting down and a new node can time out while it starts (Ray: "The current
    node timed out during startup"); that start is tried once more. Nothing the tests check happens here."""
    import ray

    for attempt in range(2):
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env})
            return
        except Exception as exc:
            if attempt or "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
            time.sleep(5.0)
