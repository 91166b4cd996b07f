"""The Serve configs in deploy/ are valid for the Ray Serve we pin, and name things that exist.

``serve run`` / KubeRay would refuse (or silently ignore) a mistyped field only on the cluster; here each
config is parsed by Ray's own ``ServeDeploySchema``, its import paths are imported, its app args are
checked by the app's own argument model, and every deployment it configures is one the app builds.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["deploy/local.yaml", "deploy/gpu.yaml", "deploy/rayservice.yaml"]


def _serve_config(path: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / path).read_text())
    if doc.get("kind") == "RayService":
        return yaml.safe_load(doc["spec"]["serveConfigV2"])
    return doc


def _load(dotted: str) -> Any:
    module, _, attr = dotted.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("path", CONFIGS)
def test_deploy_config_is_valid(path: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    from serve.app import AppArgs
    from serve.autoscaling import MusicStreamsPolicy

    config = _serve_config(path)
    schema = ServeDeploySchema.model_validate(config)
    for fn in config.get("grpc_options", {}).get("grpc_servicer_functions", []):
        assert callable(_load(fn)), fn
    for app in schema.applications:
        assert callable(_load(app.import_path))
        AppArgs.model_validate(app.args)  # the app's own argument model
        names = {d.name for d in app.deployments}
        assert names <= {"Gateway", "FrameEncoder", "AudioEncoder", "AffectFusion", "MusicGenerator"}, names
        music = next(d for d in app.deployments if d.name == "MusicGenerator")
        policy = music.autoscaling_config["policy"]
        assert _load(policy["policy_function"]) is MusicStreamsPolicy
        MusicStreamsPolicy(**policy.get("policy_kwargs", {}))
