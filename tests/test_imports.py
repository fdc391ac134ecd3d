"""``import edgeprune`` stays light: no runtime, exporter, plotting or model zoo is loaded until used."""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("onnx", "onnxruntime", "onnxscript", "torchvision", "timm", "matplotlib", "safetensors", "yaml",
         "executorch", "ai_edge_litert", "litert_torch", "openvino", "jax", "ultralytics", "rich", "typer", "ray")


def test_import_edgeprune_loads_no_heavy_optional_module():
    code = ("import json, sys, edgeprune; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_the_public_names_resolve():
    import edgeprune as ep

    for name in ep.__all__:
        assert getattr(ep, name) is not None, name
