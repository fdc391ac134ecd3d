"""TFLite Micro: the arena its allocator reports, the arena predicted from the traced graph, and its
INT8 outputs against LiteRT's interpreter on the same file (two implementations of the same kernels)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeprune.quantize.litert import quantize_litert, run_int8_tflite
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.tflm import bisect_arena, measure_arena
from edgeprune.targets.sram import Buffer, plan_offsets, predict_arena
from tests.mcu_models import MODELS, make


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``files(name, dtype) -> path``: each model's .tflite (FP32 checked export, INT8 checked quantization)."""
    folder, cache = tmp_path_factory.mktemp("tflm"), {}

    def get(name, dtype):
        if (name, dtype) not in cache:
            model, x = make(name)
            path = folder / f"{name}_{dtype}.tflite"
            if dtype == "float32":
                get_runtime("tflm").export(model, x, path)
            else:
                g = torch.Generator().manual_seed(2)
                calib = torch.randn((16, *x.shape[1:]), generator=g).numpy()
                quantize_litert(model, x, [calib], path)
            cache[name, dtype] = path
        return cache[name, dtype]

    return get


# Each conversion takes 3-10 s on two cores: FP32 on all five models and INT8 on the residual and the
# depthwise ones by default; the other INT8 cases run with -m slow (benchmarks/mcu.py prints all ten).
CASES = [pytest.param(n, d, id=f"{n}-{d}", marks=() if d == "float32" or n in ("res1d", "dw1d") else pytest.mark.slow)
         for n in MODELS for d in ("float32", "int8")]


@pytest.mark.parametrize("name,dtype", CASES)
def test_predicted_arena_is_within_10_percent_of_the_measured(name, dtype, files):
    model, x = make(name)
    measured = measure_arena(files(name, dtype))
    predicted = predict_arena(model, x, dtype)
    assert measured.total == measured.head + measured.tail > 0
    assert abs(predicted.total - measured.total) <= 0.10 * measured.total, (predicted.to_dict(), measured)
    assert predicted.peak_layers and all(layer in dict(model.named_modules()) or layer for layer in predicted.peak_layers)


def test_the_allocator_report_agrees_with_a_bisection_of_arena_size(files):
    path = files("res1d", "int8")
    reported = measure_arena(path).total
    smallest = bisect_arena(path, tol=8)
    assert abs(smallest - reported) <= 64, (smallest, reported)  # the arena's own alignment slack


def test_an_arena_too_small_is_refused_and_one_large_enough_runs(files):
    path = files("res1d", "float32")
    need = measure_arena(path).total
    rt = get_runtime("tflm")
    with pytest.raises(Exception):
        rt.open(path, arena_size=need // 2)
    model, x = make("res1d")
    got = rt.open(path, arena_size=need + 64).run([x.numpy()])[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_int8_outputs_equal_litert_on_the_same_file(files):
    from ai_edge_litert.interpreter import Interpreter

    path = files("dw1d", "int8")
    session = get_runtime("tflm").open(path)
    assert session.precision == "int8"
    lite = Interpreter(model_path=str(path))
    lite.allocate_tensors()
    step = lite.get_output_details()[0]["quantization"][0]
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        x = torch.randn((1, 3, 128), generator=g).numpy()
        got, want = session.run([x])[0], run_int8_tflite(lite, x)
        assert np.abs(got - want).max() <= step * 1.01  # the same int8 kernels, at most one rounding apart


def test_the_planner_reuses_memory_across_time_and_stacks_what_overlaps():
    # TFLM's greedy plan: largest first (equal sizes: the later one first), lowest free offset
    bufs = [Buffer("A", "a", 256, 0, 1), Buffer("B", "b", 128, 1, 2), Buffer("C", "c", 256, 2, 3),
            Buffer("D", "d", 64, 3, 3)]
    assert plan_offsets(bufs) == [0, 256, 0, 256]  # A and C share; B sits above both; D above C
