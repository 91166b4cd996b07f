"""backscore serving layer (Ray Serve deployments and ingress). Thin: no model logic here.

Note: this top-level package shares its name with ``ray.serve``; always import Ray's as
``from ray import serve as ray_serve`` and ours as ``import serve`` / ``from serve import ...``.
"""
