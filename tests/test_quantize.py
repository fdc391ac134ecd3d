"""INT8 on ONNX Runtime: the artifact against its fake-quant reference (and that reference against
ONNX's own numpy evaluator), calibration reproducible with a seed, bad input refused by name, and
the accuracy of the INT8 file measured by running the file."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import numpy_helper
from torch.utils.data import DataLoader, TensorDataset

from edgeprune.export.onnx import export_onnx
from edgeprune.quantize import (Calibration, CalibrationDataError, OnnxModule, UnsupportedOpError,
                                calibration_batches, quantize_onnx)
from edgeprune.quantize.reference import output_steps, session


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU())  # depthwise
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


class ResidualCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                               nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.a(x))  # the residual add
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _mlp():
    return nn.Sequential(nn.Linear(48, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


MODELS = {"cnn": (SmallCNN, (3, 16, 16)), "residual": (ResidualCNN, (3, 16, 16)), "mlp": (_mlp, (48,))}


def _setup(tmp_path, name, seed=0):
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    model = factory().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding them matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    data = TensorDataset(torch.randn(256, *shape), torch.zeros(256, dtype=torch.long))
    fp32 = export_onnx(model, torch.randn(1, *shape), tmp_path / f"{name}.onnx", dynamic_batch=True,
                       exporter="torchscript")
    return model, DataLoader(data, batch_size=32, shuffle=True), fp32


def _run(path, x, fake_quant=False):
    s = session(path, fake_quant=fake_quant)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _int8_initializers(path):
    return [i for i in onnx.load(str(path)).graph.initializer if i.data_type == onnx.TensorProto.INT8]


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_matches_fake_quant_reference_within_one_step(tmp_path, name):
    model, loader, fp32 = _setup(tmp_path, name)
    q = quantize_onnx(fp32, tmp_path / "model.int8.onnx", calibration_batches(loader, Calibration(4, 32, seed=0)))
    assert q.path.is_file() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert _int8_initializers(q.path), "no int8 weights in the file"
    (step,) = output_steps(q.path)
    assert step is not None and step > 0  # the output leaves through a Q/DQ pair: a known step
    x = torch.randn(64, *MODELS[name][1]).numpy()
    fast = _run(q.path, x)  # the integer kernels ORT deploys
    ref = _run(q.path, x, fake_quant=True)  # Q/DQ as float fake-quant
    assert np.abs(fast - ref).max() <= step * (1 + 1e-3)
    with torch.no_grad():
        fp = model(torch.from_numpy(x)).numpy()
    # the reference is really quantized (not FP32 under another name), yet close to FP32
    assert np.abs(ref - fp).max() > 1e-3 * np.abs(fp).max()
    assert np.corrcoef(ref.ravel(), fp.ravel())[0, 1] > 0.98
    assert q.parity.max_steps <= 1.0 + 1e-3 and q.parity.within_one_step == 1.0
    assert q.parity.samples == 64  # two calibration batches checked


def test_the_check_fails_when_the_kernels_compute_something_else(tmp_path):
    from edgeprune.quantize import QuantizeMismatchError
    from edgeprune.quantize.reference import check_int8

    _, loader, fp32 = _setup(tmp_path, "residual")
    a = quantize_onnx(fp32, tmp_path / "a.onnx", calibration_batches(loader, Calibration(2, 32, seed=0)))
    # the reference of another model (other weights, same graph): as if the kernels computed something else
    torch.manual_seed(1)
    wrong = ResidualCNN().eval()
    export_onnx(wrong, torch.randn(1, 3, 16, 16), tmp_path / "wrong.onnx", dynamic_batch=True, exporter="torchscript")
    b = quantize_onnx(tmp_path / "wrong.onnx", tmp_path / "b.onnx", calibration_batches(loader, Calibration(2, 32)))
    x = [torch.randn(16, 3, 16, 16).numpy()]
    with pytest.raises(QuantizeMismatchError, match="within one quantization step"):
        check_int8(a.path, x, "input_0", reference=b.path)
    assert check_int8(a.path, x, "input_0").within_one_step == 1.0


def test_fake_quant_reference_agrees_with_onnx_numpy_evaluator(tmp_path):
    from onnx.reference import ReferenceEvaluator

    _, loader, fp32 = _setup(tmp_path, "residual")
    q = quantize_onnx(fp32, tmp_path / "r.int8.onnx", calibration_batches(loader, Calibration(2, 32)))
    x = torch.randn(8, 3, 16, 16).numpy()
    ours = _run(q.path, x, fake_quant=True)
    evaluator = ReferenceEvaluator(str(q.path))
    numpy_ref = evaluator.run(None, {evaluator.input_names[0]: x})[0]
    (step,) = output_steps(q.path)
    # float summation order may flip one rounding inside; never more than a step at the output
    assert np.abs(ours - numpy_ref).max() <= step * (1 + 1e-3)
    assert np.mean(np.abs(ours - numpy_ref) < 1e-5) > 0.9


def test_per_channel_weights_and_uint8_activations(tmp_path):
    _, loader, fp32 = _setup(tmp_path, "cnn")
    q = quantize_onnx(fp32, tmp_path / "c.int8.onnx", calibration_batches(loader, Calibration(2, 32)))
    graph = onnx.load(str(q.path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                 and inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim == 4]
    assert len(weight_dq) == 3 and all(inits[n.input[1]].size == inits[n.input[0]].shape[0] for n in weight_dq)
    act_q = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert act_q and all(inits[n.input[2]].dtype == np.uint8 for n in act_q)


def test_calibration_is_reproducible_with_a_seed(tmp_path):
    _, loader, fp32 = _setup(tmp_path, "cnn")
    a = calibration_batches(loader, Calibration(3, 16, seed=7))
    next(iter(loader))  # the loader's own shuffling state moves on: it must not matter
    b = calibration_batches(loader, Calibration(3, 16, seed=7))
    c = calibration_batches(loader, Calibration(3, 16, seed=8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == 3 and a[0].shape == (16, 3, 16, 16)
    assert not np.array_equal(a[0], c[0])
    qa = quantize_onnx(fp32, tmp_path / "a.onnx", a)
    qb = quantize_onnx(fp32, tmp_path / "b.onnx", b)
    qc = quantize_onnx(fp32, tmp_path / "c.onnx", c)
    assert qa.path.read_bytes() == qb.path.read_bytes()  # same seed, same scales, same file
    assert qa.path.read_bytes() != qc.path.read_bytes()


def test_plain_iterable_gives_its_first_batches():
    batches = [(torch.full((4, 2), float(i)), torch.zeros(4)) for i in range(5)]
    got = calibration_batches(batches, Calibration(num_batches=2))
    assert [float(b[0, 0]) for b in got] == [0.0, 1.0]


def test_wrong_shape_calibration_is_refused_by_name(tmp_path):
    _, _, fp32 = _setup(tmp_path, "cnn")
    wrong = [np.zeros((8, 1, 16, 16), np.float32)]
    with pytest.raises(CalibrationDataError, match=r"input 'input_0' takes \(batch, 3, 16, 16\)") as err:
        quantize_onnx(fp32, tmp_path / "w.int8.onnx", wrong)
    assert "(8, 1, 16, 16)" in str(err.value)
    with pytest.raises(CalibrationDataError, match="int64"):
        quantize_onnx(fp32, tmp_path / "w.int8.onnx", [np.zeros((8, 3, 16, 16), np.int64)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx"]  # nothing written


def test_op_the_quantizer_cannot_handle_is_named(tmp_path):
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(8, 16, batch_first=True)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc(self.gru(x)[0][:, -1])

    fp32 = export_onnx(Recurrent().eval(), torch.randn(1, 5, 8), tmp_path / "gru.onnx", dynamic_batch=True,
                       exporter="torchscript")
    with pytest.raises(UnsupportedOpError, match="op GRU") as err:
        quantize_onnx(fp32, tmp_path / "gru.int8.onnx", [np.random.randn(4, 5, 8).astype(np.float32)])
    assert err.value.op_type == "GRU"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru.onnx"]


def test_int8_accuracy_on_the_validation_split_is_the_file_run_in_ort(tmp_path):
    from edgeprune.tasks import evaluate, get_task, pretrained

    task = get_task("digits")
    model = pretrained("digits", 0)
    train, val = task.loaders()
    fp32 = export_onnx(model, task.example_input(), tmp_path / "d.onnx", dynamic_batch=True, exporter="torchscript")
    q = quantize_onnx(fp32, tmp_path / "d.int8.onnx", calibration_batches(train, Calibration(8, 32)))
    reported = evaluate(OnnxModule(q.path), val)
    splits = task.data()  # by hand: every validation sample through the file
    predicted = _run(q.path, splits.x_val.numpy()).argmax(1)
    assert reported == pytest.approx(100.0 * float((predicted == splits.y_val.numpy()).mean()))
    assert abs(reported - evaluate(model, val)) <= 2.0  # INT8 of a trained MLP stays near FP32
    assert q.bytes <= 0.4 * q.fp32_bytes  # a 17k-weight MLP: per-channel scales and int32 biases weigh in


def test_a_missing_toolchain_names_the_pip_command():
    from edgeprune.quantize.errors import MissingExtraError, require

    with pytest.raises(MissingExtraError, match=r"pip install 'edgeprune\[litert\]'"):
        require("edgeprune_no_such_toolchain", "litert")
