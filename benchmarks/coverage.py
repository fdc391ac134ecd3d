"""Coverage over timm: one small model per family, pruned by edgeprune and by Torch-Pruning.

For every model in /work/shared/timm_families.json (``"models"``: family -> timm name), build it
with ``pretrained=False`` (seed 0, eval mode), pick a small input, and prune one copy with each
pruner at ``--ratio`` (0.3 by default):

* ours:     ``edgeprune.prune(model, x, ratio=r, kind="channels", criterion="l2")``
* baseline: Torch-Pruning 1.6.1 defaults: ``tp.pruner.MagnitudePruner`` with
            ``tp.importance.MagnitudeImportance(p=2)``, ``pruning_ratio=r``, the classifier
            (``model.get_classifier()``) in ``ignored_layers``, one ``pruner.step()``.

A pruned model passes when all of these hold (the first that fails names its status):

    crashed-during-prune  the pruner raised (ours: ``refused`` when it raised an edgeprune error,
                          i.e. it declined with a message instead of crashing)
    broken                the pruned model's forward raises
    wrong-shape           its output shape differs from the original's
    too-little-reduction  MACs after / MACs before > 0.85 (MACs = FlopCounterMode flops / 2)
    onnx-fail             torch.onnx.export or loading/running it in ONNX Runtime raises
    onnx-mismatch         max|ort - torch| / max|torch| > 1e-3 over the output (relative to the
                          output's largest magnitude, so near-zero logits do not blow it up)
    timeout               the side ran past ``--side-timeout`` seconds

Input size: the model's ``pretrained_cfg["input_size"]`` when its side is <= 128 px; otherwise
128 px, then 112 px (patch-14 models), then the default size. For models with a fixed image size
(ViTs and friends) timm is asked to build the model at the reduced size (``img_size=``); a size
is taken when the unpruned model's forward runs at it. Models that fail to build or run at every
candidate size are *excluded* and listed; so are models whose *unpruned* ONNX export already fails
(checked only when a pruned model's export fails), because no pruner can pass them.

Each model runs in its own subprocess (a crash or a hang loses that model only), ``--jobs`` of
them at a time through ``concurrent.futures``; each side also has a signal-based timeout.

    python benchmarks/coverage.py --jobs 2 --json runs/coverage.json --markdown runs/coverage.md
    python benchmarks/coverage.py --families resnet,vit --ratio 0.5
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FAMILIES_FILE = Path("/work/shared/timm_families.json")
MAX_MAC_RATIO = 0.85
ONNX_RTOL = 1e-3
SIZE_CANDIDATES = (128, 112)
RESULT_MARKER = "COVERAGE-RESULT "
SIDES = ("ours", "tp")


class SideTimeout(Exception):
    """Raised by SIGALRM when one pruner's side runs too long."""


@dataclass
class SideResult:
    """How one pruner did on one model."""

    status: str  # "pass" or one of the failure categories in the module docstring
    mac_ratio: float | None = None  # MACs after / before
    param_ratio: float | None = None
    rel_err: float | None = None  # ONNX Runtime vs PyTorch, relative to max|torch output|
    seconds: float = 0.0
    error: str = ""


@dataclass
class ModelResult:
    """One row of the table."""

    family: str
    model: str
    input_size: int | None = None
    params_m: float | None = None
    gmacs: float | None = None
    excluded: str = ""  # why the model is not counted, or "" when it is
    ours: SideResult | None = None
    tp: SideResult | None = None
    seconds: float = 0.0


# ---- the worker: one model, both pruners ------------------------------------------------------

def _short(exc: BaseException, limit: int = 400) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:limit]


def _build(name: str) -> tuple[Any, Any, int]:
    """The model (seed 0, eval) and an input it runs on; raises if no candidate size works."""
    import timm
    import torch

    cfg = timm.get_pretrained_cfg(name)
    default = int((cfg.input_size if cfg is not None else (3, 224, 224))[-1])
    sizes = [default] if default <= 128 else [*SIZE_CANDIDATES, default]
    errors = []
    for size in sizes:
        for kwargs in ({"img_size": size}, {}) if size != default else ({},):
            try:
                torch.manual_seed(0)
                model = timm.create_model(name, pretrained=False, **kwargs).eval()
                x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
                with torch.no_grad():
                    model(x)
                return model, x, size
            except Exception as exc:  # try the next size / without img_size
                errors.append(f"{size}px{' img_size' if kwargs else ''}: {_short(exc, 150)}")
    raise RuntimeError("; ".join(errors))


def _macs(model: Any, x: Any) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    except AssertionError:
        # FlopCounterMode's module tracker hooks autograd; under no_grad it asserts on modules whose
        # inputs are parameters used directly (CaiT's class token). Count with autograd on instead.
        with FlopCounterMode(display=False) as counter:
            model(x)
    return counter.get_total_flops() / 2


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _onnx_rel_err(model: Any, x: Any, workdir: str) -> float:
    """Export with the TorchScript exporter (the dynamo one as a fallback), run on ONNX Runtime through
    edgeprune's runtime plug-in; the relative error is the runtimes' one (max |ort - torch| / max |torch|)."""
    import torch

    from edgeprune.runtimes import open_session
    from edgeprune.runtimes.parity import relative_error

    path = os.path.join(workdir, "model.onnx")
    try:
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17)
    except Exception:
        torch.onnx.export(model, (x,), path, dynamo=True)
    session = open_session("onnxruntime", path, 1)
    got = session.run([x.numpy()])[0]
    with torch.no_grad():
        want = model(x).numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {want.shape}")
    return relative_error(got, want)[1]


def _check(pruned: Any, x: Any, out_shape: Any, macs: float, params: int, workdir: str) -> SideResult:
    import torch

    try:
        with torch.no_grad():
            y = pruned(x)
    except Exception as exc:
        return SideResult("broken", error=_short(exc))
    if y.shape != out_shape:
        return SideResult("wrong-shape", error=f"output {tuple(y.shape)} != {tuple(out_shape)}")
    result = SideResult("pass", mac_ratio=_macs(pruned, x) / macs, param_ratio=_params(pruned) / params)
    if result.mac_ratio > MAX_MAC_RATIO:
        result.status = "too-little-reduction"
        return result
    try:
        result.rel_err = _onnx_rel_err(pruned, x, workdir)
    except Exception as exc:
        result.status, result.error = "onnx-fail", _short(exc)
        return result
    if not result.rel_err <= ONNX_RTOL:  # also catches NaN
        result.status = "onnx-mismatch"
        result.error = f"relative error {result.rel_err:.2e} > {ONNX_RTOL:g}"
    return result


def _prune_ours(model: Any, x: Any, ratio: float) -> tuple[Any, str]:
    """The pruned model and a summary of the groups edgeprune left alone (its ``skipped`` reasons)."""
    import edgeprune

    result = edgeprune.prune(model, x, ratio=ratio, kind="channels", criterion="l2")
    skipped = getattr(result, "skipped", {}) or {}
    reasons: dict[str, int] = {}
    for reason in skipped.values():
        reasons[str(reason)[:120]] = reasons.get(str(reason)[:120], 0) + 1
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
    note = f"{len(skipped)} groups skipped: " + "; ".join(f"{n}x {r}" for r, n in top) if skipped else ""
    return result.model, note


def _refusal_types() -> tuple[type, ...]:
    """edgeprune's own errors: raising one of them is a refusal with a message, not a crash."""
    import edgeprune.errors as errors

    names = ("EdgepruneError", "PlanError", "ProbeError", "UnsupportedModelError")
    found = tuple(t for t in (getattr(errors, n, None) for n in names) if isinstance(t, type))
    if not found:
        raise ImportError("edgeprune.errors defines none of " + ", ".join(names))
    return found


def _prune_tp(model: Any, x: Any, ratio: float) -> Any:
    import torch
    import torch_pruning as tp

    heads = model.get_classifier() if hasattr(model, "get_classifier") else None
    heads = heads if isinstance(heads, (tuple, list)) else [heads]
    ignored = [m for h in heads if isinstance(h, torch.nn.Module) for m in h.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))]
    pruner = tp.pruner.MagnitudePruner(model, example_inputs=x, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=ignored)
    pruner.step()
    return model


def _side(which: str, original: Any, x: Any, ratio: float, macs: float, params: int, out_shape: Any,
          timeout: int, workdir: str) -> SideResult:
    def on_alarm(signum: int, frame: Any) -> None:
        raise SideTimeout(f"{which} ran past {timeout}s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    try:
        try:
            if which == "ours":
                try:
                    refusals = _refusal_types()
                except (ImportError, AttributeError) as exc:
                    return SideResult("not-available", error=_short(exc))
                try:
                    pruned, note = _prune_ours(original, x, ratio)
                except (ImportError, AttributeError) as exc:
                    if "edgeprune" in str(exc) and "prune" in str(exc):
                        return SideResult("not-available", error=_short(exc))
                    raise
                except refusals as exc:
                    return SideResult("refused", error=_short(exc))
            else:
                pruned, note = _prune_tp(copy.deepcopy(original), x, ratio), ""
        except SideTimeout as exc:
            return SideResult("timeout", error=str(exc))
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" [at {Path(tb.filename).name}:{tb.lineno}]"
            return SideResult("crashed-during-prune", error=_short(exc) + where)
        try:
            result = _check(pruned, x, out_shape, macs, params, workdir)
            if which == "ours" and result.status == "too-little-reduction":
                result.error = note  # why so little went: the groups edgeprune skipped
            return result
        except SideTimeout as exc:
            return SideResult("timeout", error=str(exc))
    finally:
        signal.alarm(0)


def run_model(family: str, name: str, ratio: float, timeouts: dict[str, int], threads: int,
              sides: tuple[str, ...] = SIDES) -> ModelResult:
    """Build one model and run the pruners on it (called inside the per-model subprocess)."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    started = time.perf_counter()
    row = ModelResult(family=family, model=name)
    try:
        original, x, row.input_size = _build(name)
        with torch.no_grad():
            out_shape = original(x).shape
        macs, params = _macs(original, x), _params(original)
    except Exception as exc:
        row.excluded = f"does not build/run unpruned: {_short(exc, 600)}"
        row.seconds = time.perf_counter() - started
        return row
    row.params_m, row.gmacs = params / 1e6, macs / 1e9
    with tempfile.TemporaryDirectory(prefix="coverage-") as workdir:
        for which in sides:
            side_started = time.perf_counter()
            result = _side(which, original, x, ratio, macs, params, out_shape, timeouts[which], workdir)
            result.seconds = round(time.perf_counter() - side_started, 2)
            setattr(row, which, result)
        if any(r is not None and r.status in ("onnx-fail", "onnx-mismatch") for r in (row.ours, row.tp)):
            # Is ONNX the pruner's fault? Check the unpruned model once.
            try:
                err = _onnx_rel_err(original, x, workdir)
                if not err <= ONNX_RTOL:
                    row.excluded = f"unpruned model's ONNX disagrees with PyTorch (relative error {err:.2e})"
            except Exception as exc:
                row.excluded = f"unpruned model does not export to ONNX: {_short(exc)}"
    row.seconds = round(time.perf_counter() - started, 2)
    return row


# ---- the driver: one subprocess per model ----------------------------------------------------

def _from_dict(data: dict) -> ModelResult:
    row = ModelResult(**{k: v for k, v in data.items() if k not in ("ours", "tp")})
    row.ours = SideResult(**data["ours"]) if data.get("ours") else None
    row.tp = SideResult(**data["tp"]) if data.get("tp") else None
    return row


def _run_subprocess(family: str, name: str, args: argparse.Namespace, threads: int) -> ModelResult:
    """Run one model in a fresh interpreter; a hard timeout or a crash becomes a result row."""
    command = [sys.executable, __file__, "--worker", family, name, "--ratio", str(args.ratio),
               "--side-timeout", str(args.side_timeout), "--tp-timeout", str(args.tp_timeout), "--threads", str(threads),
               "--sides", args.sides]
    hard_timeout = 2 * args.side_timeout + (args.tp_timeout or args.side_timeout) + 120  # build, sides, ONNX check
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=hard_timeout, env=env)
    except subprocess.TimeoutExpired:
        return ModelResult(family, name, excluded=f"worker ran past {hard_timeout}s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return _from_dict(json.loads(line[len(RESULT_MARKER):]))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return ModelResult(family, name, excluded=f"worker died (exit {proc.returncode}): {' | '.join(tail)[:400]}")


def _status(side: SideResult | None) -> str:
    return side.status if side is not None else "-"


def _ratio(side: SideResult | None) -> str:
    return f"{side.mac_ratio:.2f}" if side is not None and side.mac_ratio is not None else "-"


def summarize(rows: list[ModelResult]) -> dict[str, Any]:
    """Pass rates over the models that are not excluded, and failure counts per category."""
    counted = [r for r in rows if not r.excluded]
    summary: dict[str, Any] = {"models": len(rows), "counted": len(counted), "excluded": len(rows) - len(counted)}
    for which in ("ours", "tp"):
        statuses = [_status(getattr(r, which)) for r in counted]
        passed = statuses.count("pass")
        summary[which] = {"passed": passed, "rate": passed / len(counted) if counted else 0.0,
                          "by_status": {s: statuses.count(s) for s in sorted(set(statuses))}}
    return summary


def markdown_table(rows: list[ModelResult]) -> str:
    lines = ["| family | model | px | ours | ours MACs | Torch-Pruning | TP MACs |",
             "|---|---|---:|---|---:|---|---:|"]
    for r in sorted(rows, key=lambda r: r.family):
        if r.excluded:
            lines.append(f"| {r.family} | {r.model} | {r.input_size or '-'} | excluded | | excluded | |")
            continue
        lines.append(f"| {r.family} | {r.model} | {r.input_size} | {_status(r.ours)} | {_ratio(r.ours)} | "
                     f"{_status(r.tp)} | {_ratio(r.tp)} |")
    return "\n".join(lines)


def render_markdown(rows: list[ModelResult], ratio: float) -> str:
    """The results as Markdown: pass rates, failure counts, the per-model table, our failures, exclusions."""
    summary = summarize(rows)
    n = summary["counted"]
    out = [f"Ratio {ratio}. {summary['models']} models, {n} counted, {summary['excluded']} excluded.", "",
           "| pruner | pass | rate | failures by category |", "|---|---:|---:|---|"]
    for which, label in (("ours", "edgeprune"), ("tp", "Torch-Pruning 1.6.1")):
        s = summary[which]
        fails = ", ".join(f"{k} {v}" for k, v in s["by_status"].items() if k != "pass") or "none"
        out.append(f"| {label} | {s['passed']}/{n} | {100 * s['rate']:.1f}% | {fails} |")
    out += ["", "### Per model", "", "MACs = MACs after / MACs before (pass needs <= 0.85).", "",
            markdown_table(rows), "", "### Where edgeprune fails", ""]
    fails = [r for r in sorted(rows, key=lambda r: r.family)
             if not r.excluded and r.ours is not None and r.ours.status != "pass"]
    out += [f"- **{r.model}** ({r.family}): {r.ours.status}: `{r.ours.error or '-'}`" for r in fails] or ["none"]
    out += ["", "### Excluded", ""]
    out += [f"- **{r.model}** ({r.family}): {r.excluded}" for r in sorted(rows, key=lambda r: r.family)
            if r.excluded] or ["none"]
    return "\n".join(out) + "\n"


def _print_row(r: ModelResult, done: int, total: int) -> None:
    if r.excluded:
        print(f"[{done:>3}/{total}] {r.family:<18} {r.model:<32} EXCLUDED {r.excluded[:100]}", flush=True)
        return
    print(f"[{done:>3}/{total}] {r.family:<18} {r.model:<32} {r.input_size:>4}px  ours {_status(r.ours):<22}"
          f"{_ratio(r.ours):>5}  tp {_status(r.tp):<22}{_ratio(r.tp):>5}  {r.seconds:>6.1f}s", flush=True)


def _sides(text: str, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    sides = tuple(s for s in text.split(",") if s)
    if not sides or set(sides) - set(SIDES):
        parser.error(f"--sides takes a comma-separated subset of {','.join(SIDES)}, got {text!r}")
    return sides


def _save(rows: list[ModelResult], args: argparse.Namespace) -> None:
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        data = {"ratio": args.ratio, "summary": summarize(rows), "rows": [asdict(r) for r in rows]}
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(args.json)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--families", default="", help="comma-separated families (default: all)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N families")
    parser.add_argument("--jobs", type=int, default=1, help="models run at the same time, one process each")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per model (default: cores / jobs)")
    parser.add_argument("--side-timeout", type=int, default=300, help="seconds for edgeprune on one model")
    parser.add_argument("--tp-timeout", type=int, default=0, help="seconds for Torch-Pruning (default: --side-timeout)")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="run families in a seeded random order, so that a partial run is a fair sample")
    parser.add_argument("--json", default="", help="write every row and the summary here (updated as rows finish)")
    parser.add_argument("--markdown", default="", help="write the per-model table here")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --json, run the rest")
    parser.add_argument("--families-file", default=str(FAMILIES_FILE))
    parser.add_argument("--render", default="", metavar="JSON",
                        help="only render an earlier --json run as Markdown (to --markdown or stdout)")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="which pruners to run: ours,tp (ours alone after an engine change: Torch-Pruning's "
                             "column does not change with our code)")
    parser.add_argument("--worker", nargs=2, metavar=("FAMILY", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        row = run_model(*args.worker, ratio=args.ratio, timeouts={"ours": args.side_timeout,
                        "tp": args.tp_timeout or args.side_timeout}, threads=args.threads or 1,
                        sides=_sides(args.sides, parser))
        print(RESULT_MARKER + json.dumps(asdict(row)), flush=True)
        return

    if args.render:
        data = json.loads(Path(args.render).read_text())
        text = render_markdown([_from_dict(d) for d in data["rows"]], data["ratio"])
        if args.markdown:
            Path(args.markdown).write_text(text)
        else:
            print(text)
        return

    _sides(args.sides, parser)
    models: dict[str, str] = json.loads(Path(args.families_file).read_text())["models"]
    if args.families:
        wanted = args.families.split(",")
        unknown = [f for f in wanted if f not in models]
        if unknown:
            parser.error(f"unknown families: {', '.join(unknown)}")
        models = {f: models[f] for f in wanted}
    if args.shuffle is not None:
        order = list(models.items())
        random.Random(args.shuffle).shuffle(order)
        models = dict(order)
    if args.limit:
        models = dict(list(models.items())[: args.limit])
    rows: list[ModelResult] = []
    if args.resume and args.json and Path(args.json).exists():
        rows = [_from_dict(d) for d in json.loads(Path(args.json).read_text())["rows"] if d["family"] in models]
        models = {f: m for f, m in models.items() if f not in {r.family for r in rows}}
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    total = len(rows) + len(models)
    print(f"{len(models)} models to run (ratio {args.ratio}, {args.jobs} jobs x {threads} threads)", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_run_subprocess, f, m, args, threads) for f, m in models.items()]
        for future in as_completed(futures):
            rows.append(future.result())
            _print_row(rows[-1], len(rows), total)
            _save(rows, args)

    rows.sort(key=lambda r: r.family)
    _save(rows, args)
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(rows, args.ratio))
    summary = summarize(rows)
    print(f"\n{summary['counted']} models counted, {summary['excluded']} excluded")
    for which, label in (("ours", "edgeprune"), ("tp", "Torch-Pruning")):
        s = summary[which]
        print(f"{label:<14} pass {s['passed']}/{summary['counted']} ({100 * s['rate']:.1f}%)  {s['by_status']}")
    for r in rows:
        if r.excluded:
            print(f"excluded {r.model}: {r.excluded[:200]}")
    for r in rows:
        if not r.excluded and r.ours is not None and r.ours.status != "pass":
            print(f"ours fails {r.model}: {r.ours.status}: {r.ours.error[:300]}")


if __name__ == "__main__":
    main()
