"""backscore serving layer: thin Ray Serve deployments and the ingress (HTTP, gRPC, WebRTC). No model logic here.

* ``app`` -- the Serve application (``serve.app:build_app``) and its arguments.
* ``gateway`` -- the ingress replica: builds the live models and wires the transports together.
* ``core`` -- the gateway's state without Ray (models, job pool, libraries, limits, health).
* ``jobs`` -- blocking jobs off the event loop, live-session slots, per-request folders.
* ``deployments`` / ``handles`` -- the model deployments and the live models seam over their handles.
* ``http/``, ``webrtc/``, ``grpc/`` -- one package per transport (routes/router, protocol, serving).
* ``metrics``, ``loop_monitor`` -- Prometheus metrics; the watch on the event loop that paces live audio.

Note: this top-level package shares its name with ``ray.serve``; always import Ray's as
``from ray import serve as ray_serve`` and ours as ``import serve`` / ``from serve import ...``.
"""
