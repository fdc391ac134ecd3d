"""``sensors``: bearing-fault detection on a vibration stream: a 1D-CNN detector for predictive maintenance.

**The stream is simulated** (seeded, numpy only): a three-axis accelerometer on a machine whose shaft
turns at 25 Hz, sampled at 2 kHz. A healthy machine gives the shaft's first harmonics, a gear mesh
tone and broadband noise. A bearing with an outer-race defect adds an impact each time a rolling
element passes the defect (the ball-pass frequency of the outer race, BPFO = 3.58 x the shaft
rate for a typical deep-groove bearing); each impact rings the housing's resonance (here 620 Hz)
and decays in a few milliseconds, so a fault shows as a train of 89.5 Hz bursts that the shaft's
tones do not mask (the envelope-analysis picture of bearing diagnostics). Fault episodes of 1-4 s
of random severity are injected at random times; the labels are the injection times, per sample.

Real recorded sensor data that an installed package ships is loaded beside it (:func:`real_series`):
aeon's KDD-TSAD 135 (a UCR anomaly-archive series, 7,501 points, one labelled event of 12
points) and BasicMotions (accelerometer + gyroscope, 4 activities, 80 recordings), read from aeon's
data folder without importing aeon. One labelled event is too few to measure a detector's event
recall, so the detection figures here are on the simulated stream, and say so.

Windows: 1,024 samples (0.512 s) every 512 (hop 0.256 s: the real-time budget of one window), three
channels, each window standardised by the stream's healthy statistics. A window is labelled
faulty when a quarter of it lies in an episode. Shapes for (B, 3, 1024)::

    stem   conv1d k7 3->64, BN, ReLU, maxpool 8   (B, 64, 128)   the peak of SRAM: full rate, wide
    c2     conv1d k5 64->64, BN, ReLU, maxpool 2  (B, 64, 64)
    c3     conv1d k5 64->64, s2, BN, ReLU         (B, 64, 32)
    c4     conv1d k3 64->128, s2, BN, ReLU        (B, 128, 16)
    head   mean over time, linear 128->2          (B, 2)

Dense, the model does not fit a Cortex-M4 class part (64 KB SRAM, 256 KB flash): in FP32 its arena
is ~8x the SRAM and its file ~1.1x the flash; in INT8 its arena (the stem's full-rate map) is
~1.2x the SRAM.

Metrics (:func:`detection_metrics`): window AUC (scores = the fault logit margin), and
event-level recall, precision and F1: a true episode is found when a window inside it is flagged;
a flagged run of consecutive windows is a false alarm when it meets no episode.
``--evaluate edgeprune.tasks.sensors:event_f1`` makes the run's guard the event F1 (percent).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ._data import to_splits
from ._task import Recipe, Splits, Task

FS = 2000.0  # Hz
SHAFT_HZ = 25.0
BPFO = 3.58 * SHAFT_HZ  # ball-pass frequency, outer race
RESONANCE_HZ = 620.0
WINDOW, HOP = 1024, 512
TRAIN_SECONDS, VAL_SECONDS = 300.0, 300.0
TRAIN_SEED, VAL_SEED = 11, 12
SIMULATED = True  # the detection figures of this task are on a simulated stream
THRESHOLD = 0.0  # a window is flagged when its fault score (logit margin) is above this


@dataclass(frozen=True)
class Stream:
    """A recorded (here: simulated) stream: ``signal`` (channels, samples), per-sample ``labels`` (0/1)."""

    signal: np.ndarray
    labels: np.ndarray
    fs: float
    simulated: bool = True

    def episodes(self) -> list[tuple[int, int]]:
        """The labelled episodes as ``[start, end)`` sample ranges."""
        return _runs(self.labels.astype(bool))


def simulate_stream(seconds: float, seed: int, fault_rate_per_min: float = 6.0) -> Stream:
    """A seeded three-axis vibration stream with injected outer-race bearing faults.

    Args:
        seconds: length.
        seed: seeds everything (tones' phases, noise, fault times and severities).
        fault_rate_per_min: expected fault episodes per minute.

    Returns:
        A :class:`Stream` at :data:`FS` Hz, ``signal`` shaped (3, samples), float32.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    speed = 1 + 0.01 * np.sin(2 * np.pi * 0.05 * t + rng.uniform(0, 2 * np.pi))  # slow speed drift
    phase = 2 * np.pi * SHAFT_HZ * np.cumsum(speed) / FS
    gains = np.array([1.0, 0.7, 0.4])[:, None]
    healthy = (np.sin(phase + rng.uniform(0, 6.3)) + 0.35 * np.sin(2 * phase + rng.uniform(0, 6.3))
               + 0.15 * np.sin(3 * phase) + 0.2 * np.sin(23 * phase + rng.uniform(0, 6.3)))
    signal = gains * healthy[None] + 0.35 * rng.standard_normal((3, n))
    labels = np.zeros(n, dtype=np.int8)
    count = rng.poisson(fault_rate_per_min * seconds / 60)
    ring = np.exp(-np.arange(int(0.012 * FS)) / (0.0025 * FS)) * np.sin(2 * np.pi * RESONANCE_HZ *
                                                                         np.arange(int(0.012 * FS)) / FS)
    for start in np.sort(rng.uniform(2, seconds - 5, count)):
        length = rng.uniform(1.0, 4.0)
        severity = rng.uniform(0.6, 1.6)
        a, b = int(start * FS), int((start + length) * FS)
        impacts = np.arange(a, b, FS / BPFO) + rng.normal(0, 0.0004 * FS, len(np.arange(a, b, FS / BPFO)))
        burst = np.zeros(n + len(ring))
        for k in impacts.astype(int):
            if 0 <= k < n:
                burst[k:k + len(ring)] += ring * severity * rng.uniform(0.7, 1.3)
        signal += np.array([0.8, 1.0, 0.5])[:, None] * burst[None, :n]
        labels[a:b] = 1
    return Stream(signal.astype(np.float32), labels, FS, simulated=True)


def windows(stream: Stream, mean: np.ndarray | None = None, std: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stream cut into windows of :data:`WINDOW` every :data:`HOP`, standardised.

    Returns:
        ``(x (N, 3, WINDOW) float32, y (N,) int64, starts (N,))``; ``y`` is 1 when a quarter of
        the window lies in an episode.
    """
    mean = stream.signal.mean(axis=1, keepdims=True) if mean is None else mean
    std = stream.signal.std(axis=1, keepdims=True) if std is None else std
    starts = np.arange(0, stream.signal.shape[1] - WINDOW + 1, HOP)
    x = np.stack([(stream.signal[:, s:s + WINDOW] - mean) / std for s in starts]).astype(np.float32)
    frac = np.array([stream.labels[s:s + WINDOW].mean() for s in starts])
    return x, (frac >= 0.25).astype(np.int64), starts


@lru_cache(maxsize=1)
def _streams() -> tuple[Stream, Stream, np.ndarray, np.ndarray]:
    train, val = simulate_stream(TRAIN_SECONDS, TRAIN_SEED), simulate_stream(VAL_SECONDS, VAL_SEED)
    healthy = train.signal[:, train.labels == 0]
    return train, val, healthy.mean(axis=1, keepdims=True), healthy.std(axis=1, keepdims=True)


def val_stream() -> Stream:
    """The validation stream (what ``edgeprune stream --data sensors`` replays)."""
    return _streams()[1]


def stream_spec():
    """How the deployed detector reads the stream (for :mod:`edgeprune.deploy.stream`): window, hop,
    rate, the training stream's healthy scaling and :data:`THRESHOLD`."""
    from edgeprune.deploy.stream import StreamSpec

    mean, std = normalisation()
    return StreamSpec(WINDOW, HOP, FS, mean, std, THRESHOLD)


def normalisation() -> tuple[np.ndarray, np.ndarray]:
    """The per-channel mean and std (from the training stream's healthy part) every window is scaled by."""
    _, _, mean, std = _streams()
    return mean, std


@lru_cache(maxsize=1)
def load_data() -> Splits:
    """Windows of the training stream and of the validation stream (in time order)."""
    train, val, mean, std = _streams()
    x_train, y_train, _ = windows(train, mean, std)
    x_val, y_val, _ = windows(val, mean, std)
    return to_splits(x_train, y_train, x_val, y_val)


def _block(c_in: int, c_out: int, k: int, stride: int = 1, pool: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]
    if pool > 1:
        layers.append(nn.MaxPool1d(pool))
    return nn.Sequential(*layers)


class SensorCNN(nn.Module):
    """The ``sensors`` task's detector (see the module docstring for shapes)."""

    def __init__(self, channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.stem = _block(channels, 64, 7, pool=8)
        self.c2 = _block(64, 64, 5, pool=2)
        self.c3 = _block(64, 64, 5, stride=2)
        self.c4 = _block(64, 128, 3, stride=2)
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.c4(self.c3(self.c2(self.stem(x))))  # (B, 128, WINDOW / 32)
        return self.head(x.mean(-1))


# -- metrics ---------------------------------------------------------------------------------------
def detection_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float = THRESHOLD) -> dict[str, float]:
    """Window AUC and event-level recall, precision and F1 of fault scores over windows in time order.

    Args:
        scores: one score per window (higher: more likely a fault), in time order.
        labels: the windows' labels (0/1).
        threshold: a window is flagged when its score is above this.

    Returns:
        ``{"auc", "event_recall", "event_precision", "event_f1", "events", "alarms"}`` (fractions).
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores) > threshold
    true_events, alarms = _runs(labels), _runs(flagged)
    found = sum(1 for a, b in true_events if flagged[a:b].any())
    true_alarms = sum(1 for a, b in alarms if labels[a:b].any())
    recall = found / len(true_events) if true_events else 1.0
    precision = true_alarms / len(alarms) if alarms else 1.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    auc = float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else float("nan")
    return {"auc": auc, "event_recall": recall, "event_precision": precision, "event_f1": f1,
            "events": len(true_events), "alarms": len(alarms)}


def fault_scores(model: nn.Module, loader) -> tuple[np.ndarray, np.ndarray]:
    """Per-window fault scores (logit margin) and labels, in the loader's order."""
    scores, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            scores.append((out[:, 1] - out[:, 0]).float().numpy())
            labels.append(y.numpy())
    return np.concatenate(scores), np.concatenate(labels)


def event_f1(model: nn.Module, loader) -> float:
    """Event-level F1 in percent on ``loader`` (windows in time order): an ``--evaluate`` function."""
    was = model.training
    model.eval()
    try:
        return 100.0 * detection_metrics(*fault_scores(model, loader))["event_f1"]
    finally:
        model.train(was)


# -- the real series aeon ships ---------------------------------------------------------------------
def aeon_data_dir() -> Path:
    """aeon's bundled data folder, found without importing aeon (``pip install 'edgeprune[sensors]'``)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the real sensor series come from aeon's data files: "
                                  "pip install 'edgeprune[sensors]'")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def real_series(name: str) -> dict[str, np.ndarray]:
    """A real recorded series aeon ships: ``"kdd135"`` or ``"basic_motions"``.

    Returns:
        kdd135: ``{"train": (1200,), "test": (7501,), "test_labels": (7501,)}`` (one event of 12 points);
        basic_motions: ``{"x_train": (40, 6, 100), "y_train": (40,), "x_test", "y_test"}`` (activities as strings).
    """
    root = aeon_data_dir()
    if name == "kdd135":
        folder = root / "KDD-TSAD_135"
        test = np.loadtxt(next(folder.glob("*_TEST.csv")), delimiter=",", skiprows=1)
        train = np.loadtxt(next(folder.glob("*_TRAIN.csv")), delimiter=",", skiprows=1)
        return {"train": train[:, 1], "test": test[:, 1], "test_labels": test[:, 2].astype(np.int64)}
    if name == "basic_motions":
        out = {}
        for split in ("TRAIN", "TEST"):
            x, y = _read_ts(root / "BasicMotions" / f"BasicMotions_{split}.ts")
            out[f"x_{split.lower()}"], out[f"y_{split.lower()}"] = x, y
        return out
    raise KeyError(f"unknown series {name!r}; use kdd135 or basic_motions")


def _read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``.ts`` format of equal-length multivariate series: dimensions split by ':', the label last."""
    xs, ys = [], []
    data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            data = True
            continue
        if data:
            *dims, label = line.split(":")
            xs.append([np.array(d.split(","), dtype=np.float64) for d in dims])
            ys.append(label)
    return np.array(xs), np.array(ys)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True as ``[start, end)`` index pairs."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


TASK = Task(
    name="sensors",
    description="bearing-fault detector, 1D CNN on a SIMULATED 3-axis vibration stream (2 kHz, 0.512 s windows)",
    model_factory=SensorCNN,
    input_shape=(3, WINDOW),
    num_classes=2,
    data=load_data,
    recipe=Recipe(epochs=3, lr=3e-3, batch_size=64, weight_decay=1e-4),
    version="2",  # 2: the stem is 64 wide (48 fitted a 64 KB arena in INT8 once 1-d pools shared their scale)
)
