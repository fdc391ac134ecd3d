"""The streaming runner (``edgeprune stream``, ``edgeprune/deploy/stream.py``): window by window in time
order it gives exactly what batch inference of the same artifact gives on the same windows (cut by the
task's own ``windows``, not the runner's loop), agrees with PyTorch in FP32, paces at the real rate, and
runs on a device with numpy and the runtime only."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeprune.deploy.stream import StreamSpec, open_model, run_stream
from edgeprune.tasks import get_task
from edgeprune.tasks.sensors import THRESHOLD, detection_metrics, simulate_stream, stream_spec, windows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An (untrained, seeded) sensors detector as ONNX (dynamic batch) and INT8 .tflite, and a 12 s stream."""
    from edgeprune.export.onnx import export_onnx
    from edgeprune.quantize.litert import quantize_litert

    folder = tmp_path_factory.mktemp("stream")
    task = get_task("sensors")
    torch.manual_seed(0)
    model, x = task.build(seed=0).eval(), task.example_input()
    spec = stream_spec()
    stream = simulate_stream(12.0, seed=5, fault_rate_per_min=20)
    xs, ys, _ = windows(stream, spec.mean, spec.std)
    export_onnx(model, x, folder / "model.onnx", dynamic_batch=True, exporter="torchscript")  # 2 s; dynamo takes 13
    quantize_litert(model, x, [xs[:16]], folder / "model.int8.tflite")
    return {"folder": folder, "model": model, "spec": spec, "stream": stream, "xs": xs, "ys": ys}


def _margins(out: np.ndarray) -> np.ndarray:
    return (out[:, 1] - out[:, 0]).astype(np.float32)


def test_onnx_stream_equals_batch_inference_and_pytorch(setup):
    import onnxruntime as ort

    s = setup
    got = run_stream(open_model(s["folder"] / "model.onnx"), s["stream"].signal, s["spec"])
    session = ort.InferenceSession(str(s["folder"] / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = _margins(session.run(None, {session.get_inputs()[0].name: s["xs"]})[0])  # all windows at once
    assert got["windows"] == len(s["xs"]) == 45
    np.testing.assert_array_equal(np.array(got["scores"], np.float32), batch)
    np.testing.assert_array_equal(np.array(got["flags"], bool), batch > THRESHOLD)
    with torch.no_grad():
        torch_scores = _margins(s["model"](torch.from_numpy(s["xs"])).numpy())
    np.testing.assert_allclose(got["scores"], torch_scores, rtol=0, atol=1e-4 * np.abs(torch_scores).max())


@pytest.mark.parametrize("runtime", ["tflm", "litert"])
def test_int8_stream_equals_batch_inference_of_the_same_file(setup, runtime):
    s = setup
    path = s["folder"] / "model.int8.tflite"
    got = run_stream(open_model(path, runtime), s["stream"].signal, s["spec"])
    if runtime == "tflm":  # the run's own evaluation path (TflmModule over a batch: what judged the guard)
        from edgeprune.run.mcu import TflmModule

        batch = _margins(TflmModule(path)(torch.from_numpy(s["xs"])).numpy())
    else:  # the INT8 check's path over the same windows (this file's RESHAPEs fix batch 1: no resizing)
        from ai_edge_litert.interpreter import Interpreter

        from edgeprune.quantize.litert import run_int8_tflite

        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
        batch = _margins(np.concatenate([run_int8_tflite(interp, w[None]) for w in s["xs"]]))
    np.testing.assert_array_equal(np.array(got["scores"], np.float32), batch)
    flags = batch > THRESHOLD
    assert got["flags"] == flags.astype(int).tolist()
    runs = [(d["first"], d["last"]) for d in got["detections"]]
    assert sum(b - a + 1 for a, b in runs) == int(flags.sum()) and all(flags[a:b + 1].all() for a, b in runs)
    m = detection_metrics(np.array(got["scores"]), s["ys"])
    assert m == detection_metrics(batch, s["ys"])


def test_realtime_pacing_waits_for_each_window_and_judges_p99_against_the_hop():
    spec = StreamSpec(window=100, hop=50, fs=1000.0, mean=np.zeros((1, 1), np.float32),
                      std=np.ones((1, 1), np.float32), threshold=0.0)
    signal = np.zeros((1, 1000), np.float32)
    signal[0, 400:600] = 1.0  # one event: windows overlapping it score 1
    now = [0.0]
    began = []

    def model_taking(seconds):
        def run(x):
            began.append(now[0])
            now[0] += seconds
            return np.array([[0.0, float(x.max()) - 0.5]], np.float32)
        return run

    def sleep(dt):
        now[0] += dt

    fast = run_stream(model_taking(0.002), signal, spec, realtime=True, clock=lambda: now[0], sleep=sleep)
    ready = [(s + spec.window) / spec.fs for s in fast["starts"]]
    assert fast["windows"] == 19 and all(b >= r - 1e-12 for b, r in zip(began, ready))  # never before its data
    assert abs(now[0] - (ready[-1] + 0.002)) < 1e-9  # paced: the replay takes the stream's own time
    assert fast["realtime"] and fast["late"] == 0 and fast["latency_ms"]["p99"] == pytest.approx(2.0)
    assert [(d["first"], d["last"]) for d in fast["detections"]] == [(7, 11)]
    assert fast["detections"][0]["raised_s"] == pytest.approx(0.45)  # when window 7 (350-450 ms) is complete
    began.clear()
    now[0] = 0.0
    slow = run_stream(model_taking(0.080), signal, spec, realtime=True, clock=lambda: now[0], sleep=sleep)
    assert not slow["realtime"] and slow["late"] > 0 and slow["latency_ms"]["p50"] == pytest.approx(80.0)


def test_the_device_file_runs_with_numpy_and_its_runtime_only(setup, tmp_path):
    from edgeprune.run.stream import write_device_dir

    s = setup
    path = s["folder"] / "model.int8.tflite"
    folder = write_device_dir(tmp_path / "dev", path, s["stream"].signal, s["spec"])
    assert {p.name for p in folder.iterdir()} == {"stream.py", "model.int8.tflite", "stream.npz"}
    blocker = ("import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'edgeprune', 'onnx', 'onnxruntime', 'litert_torch'):\n"
               "            raise ImportError('blocked on the device: ' + name)\n"
               "sys.meta_path.insert(0, _Block())\n"
               "sys.argv = ['stream.py', 'model.int8.tflite', 'stream.npz', '--out', 'stream.json']\n"
               "import runpy\nrunpy.run_path('stream.py', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocker], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    on_device = json.loads((folder / "stream.json").read_text())
    here = run_stream(open_model(path, "tflm"), s["stream"].signal, s["spec"])
    assert on_device["scores"] == here["scores"] and on_device["detections"] == here["detections"]
    assert "windows" in done.stdout and "hop 256 ms" in done.stdout


def test_cli_stream_writes_stream_json_and_refuses_bad_input(setup, tmp_path):
    from edgeprune.cli import _register_commands, app
    from edgeprune.run.rundir import COMPLETE

    _register_commands()
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(setup["folder"] / "model.int8.tflite", run / "model.int8.tflite")
    (run / COMPLETE).write_text("")
    cli = CliRunner()
    ok = cli.invoke(app, ["stream", str(run), "--data", "sensors", "--seconds", "10"])
    assert ok.exit_code == 0, ok.output
    result = json.loads((run / "stream.json").read_text())
    assert result["artifact"] == "model.int8.tflite" and result["runtime"] == "tflm" and result["windows"] == 38
    assert result["simulated"] and len(result["labels"]) == 38 and "real time" in ok.output
    assert result["realtime"] == (result["latency_ms"]["p99"] < result["hop_ms"] == 256.0)
    from edgeprune.report.stream import stream_section

    section = stream_section(result)  # what the run's report shows (write_report reads stream.json)
    points = section.split("points='")[1].split("'")[0].split()
    assert len(points) == 38 and section.count("fill='#f4c7c3'") == len(result["events"])
    assert section.count("<path d='M") == len(result["detections"]) and "SIMULATED" in section
    for args, why in ((["--data", "mnist"], "has no recorded stream"),
                      (["--runtime", "onnxruntime"], "does not run model.int8.tflite"),
                      (["--artifact", "model.onnx"], "no such .tflite or .onnx file")):
        bad = cli.invoke(app, ["stream", str(run), *args])
        assert bad.exit_code == 2 and why in " ".join(bad.output.split()), bad.output
    from edgeprune.export.onnx import export_onnx

    other = tmp_path / "other"  # a run whose model takes something else than the stream's windows
    other.mkdir()
    export_onnx(torch.nn.Linear(4, 2), torch.randn(1, 4), other / "model.onnx", exporter="torchscript")
    (other / COMPLETE).write_text("")
    bad = cli.invoke(app, ["stream", str(other), "--seconds", "1"])
    assert bad.exit_code == 2 and "does not run the sensors stream's windows (1, 3, 1024)" in " ".join(bad.output.split())
    bad = cli.invoke(app, ["stream", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "does not exist" in " ".join(bad.output.split())
