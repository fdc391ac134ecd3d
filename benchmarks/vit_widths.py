"""Which widths matter on the criteria zoo's ViT: our ``l2`` choosing the units at widths given by hand.

Each spec is ``EMB:ATT:MLP:SCALE``: the embedding (residual stream) width, ``hN`` (every head keeps
N dims, ``head_dims=True``) or ``HN`` (N whole heads), the MLP hidden width, and ``sdpa`` (the cut
without its q/k rescale: SDPA's scale of the cut dim) or anything else (the plan's rescale). Every
cut is fine-tuned as in ``benchmarks/criteria.py`` (3 epochs, Adam, lr 5e-4, each seed's order).

    PYTHONPATH=src .venv/bin/python benchmarks/vit_widths.py 0,1,2 31:h7:63:sdpa 30:h8:60:sdpa 30:H2:60:x
"""
import copy
import dataclasses
import statistics
import sys

import torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(1)
import _criteria_zoo as zoo
import edgeprune as ep
from edgeprune.criteria import CRITERIA, ScoreContext
from edgeprune.strategies.base import lowest
from edgeprune.graph.groups import make_plan
from edgeprune.surgery import named_tensors
from edgeprune.measure import count_macs
from edgeprune.recover import Finetune, finetune
entry, model = zoo.ZOO["vit"], zoo.trained("vit")
x = zoo.example_input(entry); base = count_macs(model, x).total
seeds = [int(s) for s in sys.argv[1].split(",")]
for spec in sys.argv[2:]:
    emb, att, mlp, scale = spec.split(":")  # att: "h7" = 4 heads of 7 dims, "H2" = 2 whole heads
    within = att[0] == "h"
    groups = ep.analyze(model, x, head_dims=within).groups
    t = named_tensors(model); ctx = ScoreContext(t)
    rem = {}
    for g in groups:
        keep = int(emb) if g.name == "patch" else int(mlp) if "mlp" in g.name else int(att[1:]) * (g.partitions if within else 1)
        rem[g.name] = lowest(CRITERIA["l2"](g, ctx), g.size - keep, g.partitions)
    plan = make_plan(groups, rem, t)
    if scale == "sdpa":
        plan.groups = [dataclasses.replace(g, rescale=[]) for g in plan.groups]
    pruned = ep.apply_plan(model, plan)
    accs = []
    for s in seeds:
        m = copy.deepcopy(pruned)
        finetune(m, Finetune(zoo.loaders(entry, s)[0], epochs=3, lr=5e-4, seed=s))
        accs.append(zoo.accuracy(m, entry))
    print(f"{spec:<22} MACs {count_macs(pruned, x).total / base:.3f} one-shot {zoo.accuracy(pruned, entry):.1f} "
          f"FT {statistics.mean(accs):.2f}  {accs}", flush=True)
