"""The fuzz campaign's attention models, cut within heads (``head_dims=True``).

For every generated model (``tests/fuzz/generator.py``) that has an attention cell: analyze it with
``head_dims=True``, make about half of every group's units dead (for a group cut within heads, the
rows of q, k or v that produce them zeroed; for the others, the weights that read them, as the
fuzz oracle does), remove them and compare the outputs (1e-5 of their scale, and again under the
other attention path); then prune it live at ratio 0.3 with ``head_dims=True`` and export it to
ONNX (checked against PyTorch). Counts: correct, refused (an edgeprune error naming the cause:
ONNX export of SDPA with ``enable_gqa``, say) and corrupt (outputs changed, or anything else
raised), and how many models were cut within heads rather than falling back to whole heads.

    .venv/bin/python benchmarks/head_dims_fuzz.py --seeds 0 400
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import edgeprune as ep  # noqa: E402
from edgeprune.graph.trace import call_model  # noqa: E402
from edgeprune.strategies import lowest, make_plan, removable  # noqa: E402
from edgeprune.surgery import named_tensors  # noqa: E402
from tests.fuzz.generator import build  # noqa: E402
from tests.fuzz.oracle import _max_error, switch_attention  # noqa: E402
from tests.test_equivalence import _reads_statistics, make_dead  # noqa: E402
from tests.test_head_dims import _kill, _within  # noqa: E402


def check(seed: int, counts: Counter) -> None:
    g = build(seed)
    if "attention" not in g.kinds:
        return
    counts["with attention"] += 1
    model, x = copy.deepcopy(g.model), g.inputs
    try:
        analysis = ep.analyze(model, x, head_dims=True)
        within = {grp.name for grp in _within(analysis)}
        counts["cut within heads"] += bool(within)
        gen, removals = torch.Generator().manual_seed(seed), {}
        for grp in analysis.groups:
            if _reads_statistics(model, grp):
                continue
            units = lowest(torch.rand(grp.size, generator=gen), removable(grp, grp.size // 2), grp.partitions)
            if units:
                (_kill if grp.name in within else make_dead)(model, grp, units)
                removals[grp.name] = units
        with torch.no_grad():
            reference = call_model(model, x)
            pruned = ep.apply_plan(model, make_plan(analysis.groups, removals, named_tensors(model)))
            error = _max_error(reference, call_model(pruned, x))
            if switch_attention(pruned):
                switch_attention(model)
                error = max(error, _max_error(call_model(model, x), call_model(pruned, x)))
        live = ep.prune(g.model, x, ratio=0.3, head_dims=True)
        with tempfile.TemporaryDirectory() as tmp:
            ep.export_onnx(live.model, x, Path(tmp) / "m.onnx", exporter="torchscript")
    except ep.EdgepruneError as exc:
        counts["refused"] += 1
        print(f"seed {seed}: refused: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
        return
    except Exception as exc:  # noqa: BLE001 - anything else out of prune is what the campaign looks for
        counts["corrupt"] += 1
        print(f"seed {seed}: CORRUPT: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        return
    if error < 1e-5:
        counts["correct"] += 1
    else:
        counts["corrupt"] += 1
        print(f"seed {seed}: CORRUPT: outputs changed by {error:.3g} (within heads: {sorted(within)})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs=2, type=int, default=[0, 400], metavar=("FIRST", "STOP"))
    cfg = ap.parse_args()
    torch.set_num_threads(1)
    counts: Counter = Counter()
    for seed in range(*cfg.seeds):
        check(seed, counts)
    print(dict(counts))


if __name__ == "__main__":
    main()
