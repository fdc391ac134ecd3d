"""Least-squares reconstruction (``edgeprune.recover.reconstruct``) against oracles: a cut whose dense
output is exactly reproducible is reproduced; the refit never raises a layer's calibration error
(measured directly, not from the solver's own statistics); bad input fails with a clear error."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.errors import UnsupportedModelError
from edgeprune.recover import Reconstruct, reconstruct


def _mlp(d_in: int = 6, hidden: int = 12, d_out: int = 5, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out)).eval()


def _cut(dense: nn.Sequential, keep: list[int]) -> nn.Sequential:
    """The hidden units ``keep`` of ``dense``, sliced by hand (the cut weights, not refit)."""
    first, last = dense[0], dense[2]
    model = nn.Sequential(nn.Linear(first.in_features, len(keep)), nn.ReLU(), nn.Linear(len(keep), last.out_features))
    with torch.no_grad():
        model[0].weight.copy_(first.weight[keep])
        model[0].bias.copy_(first.bias[keep])
        model[2].weight.copy_(last.weight[:, keep])
        model[2].bias.copy_(last.bias)
    return model.eval()


def _redundant_mlp() -> tuple[nn.Sequential, list[int]]:
    """Hidden units 8..11 are positive multiples of units 0..3 (ReLU(c z) = c ReLU(z)): removing them
    loses nothing a refit of the last layer cannot restore; units 4..7 are dead (never fire)."""
    dense = _mlp()
    with torch.no_grad():
        for j, (i, c) in enumerate(zip(range(4), (0.5, 2.0, 1.5, 3.0))):
            dense[0].weight[8 + j] = c * dense[0].weight[i]
            dense[0].bias[8 + j] = c * dense[0].bias[i]
    keep = list(range(8))
    with torch.no_grad():  # units 4..7: zero weights, negative bias: dead, yet their outgoing weights are large
        dense[0].weight[4:8] = 0.0
        dense[0].bias[4:8] = -1.0
        dense[2].weight[:, 4:8] *= 5.0
    return dense, keep


@pytest.mark.parametrize("sequential", [True, False])
def test_reconstruction_reproduces_an_exactly_recoverable_dense_output(sequential):
    dense, keep = _redundant_mlp()
    model = _cut(dense, keep)
    data = [torch.randn(64, 6) for _ in range(3)]
    x = torch.randn(200, 6)  # held out: not the calibration batches
    with torch.no_grad():
        before = float((model(x) - dense(x)).abs().max())
    assert before > 0.1  # the cut alone is far off
    log = reconstruct(model, dense, Reconstruct(data=data, batches=None, ridge=1e-9, sequential=sequential))
    assert list(log.layers) == ["2"] and log.batches == 3
    with torch.no_grad():
        assert float((model(x) - dense(x)).abs().max()) < 1e-5
        assert torch.equal(model[0].weight, dense[0].weight[keep])  # producers are not touched
    assert log.layers["2"]["error_after"] < 1e-10 < log.layers["2"]["error_before"]


def _layer_error(model: nn.Module, dense: nn.Module, name: str, data: list) -> float:
    """``|y - y_dense|^2 / |y_dense|^2`` of layer ``name`` on ``data``, measured with hooks."""
    got, want = [], []
    h1 = dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: got.append(o))
    h2 = dict(dense.named_modules())[name].register_forward_hook(lambda m, i, o: want.append(o))
    with torch.no_grad():
        for x in data:
            model(x)
            dense(x)
    h1.remove()
    h2.remove()
    g, w = torch.cat(got), torch.cat(want)
    return float(((g - w) ** 2).sum() / (w ** 2).sum())


@pytest.fixture(scope="module")
def deep_cut() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(1)
    dense = nn.Sequential(nn.Linear(10, 24), nn.GELU(), nn.Linear(24, 10), nn.Tanh(), nn.Linear(10, 16), nn.ReLU(),
                          nn.Linear(16, 3)).eval()
    return dense, ep.prune(dense, torch.randn(2, 10), ratio=0.5).model


@pytest.mark.parametrize("ridge", [1e-6, 1e-2, 10.0])
def test_reconstruction_never_raises_a_layers_calibration_error(deep_cut, ridge):
    dense, model = deep_cut[0], copy.deepcopy(deep_cut[1])
    torch.manual_seed(1)
    data = [torch.randn(32, 10) for _ in range(4)]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
             and m.in_features != dict(dense.named_modules())[n].in_features
             and m.out_features == dict(dense.named_modules())[n].out_features]
    assert names  # the last Linear at least reads a cut
    cut_errors = {n: _layer_error(model, dense, n, data) for n in names}
    log = reconstruct(model, dense, Reconstruct(data=data, batches=None, ridge=ridge))
    for n in names:
        measured = _layer_error(model, dense, n, data)
        assert measured == pytest.approx(log.layers[n]["error_after"], rel=1e-4, abs=1e-9)
        assert log.layers[n]["error_after"] <= log.layers[n]["error_before"] + 1e-12
        if n == names[0]:  # the first refit layer sees the same inputs as the cut model did
            assert measured <= cut_errors[n] + 1e-9
            assert log.layers[n]["error_before"] == pytest.approx(cut_errors[n], rel=1e-4)
    # Linears whose outputs were cut too are left alone and said so
    for n, why in log.skipped.items():
        assert "outputs were cut" in why


def test_rows_mask_leaves_padding_out_of_the_fit():
    dense, keep = _redundant_mlp()
    model = _cut(dense, keep)
    x = torch.randn(8, 10, 6)                                  # (B, L, F)
    real = torch.rand(8, 10) > 0.3                            # (B, L)
    poisoned = copy.deepcopy(dense)  # the dense target is only trusted on real rows: padding rows fit noise

    def noisy(m, i, o):
        return torch.where(real[..., None], o, torch.randn_like(o) * 100)

    poisoned[2].register_forward_hook(noisy)
    reconstruct(model, poisoned, Reconstruct(data=[x], batches=1, ridge=1e-9, rows=lambda inputs: real))
    with torch.no_grad():
        y = torch.randn(50, 6)
        assert float((model(y) - dense(y)).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="rows mask of shape"):
        reconstruct(_cut(dense, keep), dense, Reconstruct(data=[x], rows=lambda inputs: real[:, :3]))


def test_bad_inputs_fail_clearly():
    dense, keep = _redundant_mlp()
    with pytest.raises(ValueError, match="needs calibration data"):
        reconstruct(_cut(dense, keep), dense, Reconstruct(data=[]))
    with pytest.raises(ValueError, match="ridge must be positive"):
        Reconstruct(data=[], ridge=0.0)
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    cut = ep.prune(cnn, torch.randn(1, 3, 8, 8), ratio=0.5).model
    with pytest.raises(UnsupportedModelError, match=r"Linear layers only; 2 \(Conv2d\) had its input channels cut"):
        reconstruct(cut, cnn, Reconstruct(data=[torch.randn(2, 3, 8, 8)]))


def test_prune_reconstructs_before_recovery_as_the_direct_call_does():
    dense = _mlp(hidden=16, seed=3)
    x, data = torch.randn(2, 6), [torch.randn(32, 6) for _ in range(2)]
    plain = ep.prune(dense, x, ratio=0.5)
    expected = copy.deepcopy(plain.model)
    direct = reconstruct(expected, dense, Reconstruct(data=data))
    got = ep.prune(dense, x, ratio=0.5, reconstruct=Reconstruct(data=data))
    assert got.stats["reconstruct"]["layers"] == direct.layers and list(direct.layers) == ["2"]
    for (name, a), (_, b) in zip(got.model.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(got.model[2].weight, plain.model[2].weight)


@pytest.mark.slow  # a whole CLI run (~20-50 s on this machine)
def test_cli_reconstructs_on_the_training_data(tmp_path):
    from typer.testing import CliRunner

    from edgeprune.cli import _register_commands, app

    _register_commands()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["prune", "digits", "--data", "digits", "--target", "params=0.5",
                                      "--reconstruct", "4", "--epochs", "0", "--latency-runs", "3", "--threads", "1",
                                      "--no-curve", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "done: reconstruct" in (out / "run.log").read_text()
    metrics = __import__("json").loads((out / "metrics.json").read_text())
    cut, after = metrics["after"]["accuracy_before_finetune"], metrics["after"]["accuracy"]
    assert after > cut  # measured: 88.6 -> 96.1 on digits with no fine-tuning
    assert any("least-squares reconstruction of 1 layers" in n for n in metrics["notes"])


def _calls(module: nn.Module) -> list:
    count = []
    module.register_forward_hook(lambda m, i, o: count.append(1))
    return count


def test_sequential_passes_stop_at_the_layer_being_refit():
    """One consumer in the middle: the sequential fit (passes stopped at it) equals the parallel one
    (passes run to the end), and the layer after it runs only in the one pass that finds the order."""
    torch.manual_seed(4)
    dense = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    cut = ep.prune(dense, torch.randn(2, 6), ratio=0.5, ignore=("2",)).model
    data = [torch.randn(32, 6) for _ in range(3)]
    seq, par = copy.deepcopy(cut), copy.deepcopy(cut)
    after_mine, after_dense = _calls(seq[4]), _calls(dense[4])
    log = reconstruct(seq, dense, Reconstruct(data=data, batches=None))
    assert list(log.layers) == ["2"] and (len(after_mine), len(after_dense)) == (1, 1)
    reconstruct(par, dense, Reconstruct(data=data, batches=None, sequential=False))
    assert torch.allclose(seq[2].weight, par[2].weight, atol=1e-6) and torch.allclose(seq[2].bias, par[2].bias, atol=1e-6)
    assert not torch.allclose(seq[2].weight, cut[2].weight)


class _Twice(nn.Module):
    """The same Linear applied twice (shared weights): a pass may not stop at its first call."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.up, self.act, self.down = nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, hidden)

    def forward(self, x):
        h = self.act(self.up(x))
        return self.down(h) + self.down(h * 0.5)


def test_a_layer_called_twice_is_fitted_on_both_calls():
    torch.manual_seed(5)
    dense = _Twice(8).eval()
    cut = _Twice(8).eval()
    with torch.no_grad():  # hidden units 6, 7 dead in the dense model: the cut to 6 inputs is exactly recoverable
        dense.up.weight[6:] = 0.0
        dense.up.bias[6:] = -1.0
        cut.up = nn.Linear(4, 6)
        cut.up.weight.copy_(dense.up.weight[:6])
        cut.up.bias.copy_(dense.up.bias[:6])
        cut.down = nn.Linear(6, 8)
        cut.down.weight.copy_(dense.down.weight[:, :6] + 1.0)  # off, so the refit has work to do
        cut.down.bias.copy_(dense.down.bias)
    data = [torch.randn(16, 4)]
    log = reconstruct(cut, dense, Reconstruct(data=data, batches=1, ridge=1e-9))
    assert log.layers["down"]["rows"] == 32  # both calls' rows
    x = torch.randn(40, 4)
    with torch.no_grad():
        assert float((cut(x) - dense(x)).abs().max()) < 1e-5
