"""``make bench-gpu`` runs on GPU machines whose Python has torch, transformers and numpy only (no PyAV,
pretty_midi, scipy, tinysoundfont, aiortc or Ray, and no registry to install them from). The engine and
the benchmark must not import any of the CPU pipeline's dependencies on their way: this runs the
benchmark's check and one short measurement in a fresh interpreter and lists which of those packages
our own modules asked for (transformers probes for some of them itself, and does without)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
ABSENT_ON_GPU_HOSTS = ("av", "pretty_midi", "scipy", "tinysoundfont", "aiortc", "ray", "sklearn", "pydantic_settings")

SCRIPT = """
import json, sys
ROOT, ABSENT = sys.argv[1], set(sys.argv[2].split(","))
hits = set()

class Watch:  # which of the absent packages our own code asks for (transformers probes some itself)
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ABSENT:
            f = sys._getframe(1)
            while f is not None and ("importlib" in f.f_code.co_filename or f.f_code.co_filename.startswith("<")):
                f = f.f_back
            if f is not None and f.f_code.co_filename.startswith(ROOT) and "/.venv/" not in f.f_code.co_filename:
                hits.add(f"{name} from {f.f_code.co_filename[len(ROOT) + 1:]}:{f.f_lineno}")
        return None

sys.meta_path.insert(0, Watch())
from pipelines.devtools import bench_musicgen as b
lines, _ = b.check("cpu")
sch = b._engine("tiny", 2 + 5, "cpu", None, False, 0.2, 10.0)  # as main(): room for the joiners
row = b.measure(sch, 2, 0.4, ["calm piano", "epic drums"])
sch.stop()
print(json.dumps({"check": lines, "kept_up": row["kept_up"], "ours": sorted(hits)}))
"""


def test_the_gpu_benchmark_imports_nothing_a_bare_gpu_host_lacks() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), ",".join(ABSENT_ON_GPU_HOSTS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["check"][0].startswith("check: greedy stream vs transformers generate on cpu")
    assert out["kept_up"] >= 0
    assert out["ours"] == []
