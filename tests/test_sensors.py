"""The sensors task: a seeded simulated vibration stream with injected bearing faults, its windows,
event-level metrics on hand-made cases, the real series aeon ships, and the dense detector's size
against a Cortex-M4 class budget."""
from __future__ import annotations

import numpy as np

from edgeprune.targets.devices import get_device
from edgeprune.targets.sram import predict_arena
from edgeprune.tasks import get_task, list_tasks
from edgeprune.tasks.sensors import BPFO, FS, WINDOW, detection_metrics, real_series, simulate_stream, windows


def test_the_stream_is_seeded_and_a_fault_shows_at_the_ball_pass_frequency():
    a, b = simulate_stream(60, seed=3), simulate_stream(60, seed=3)
    assert np.array_equal(a.signal, b.signal) and a.simulated and a.signal.shape == (3, int(60 * FS))
    episodes = a.episodes()
    assert episodes and all(e - s >= 0.9 * FS for s, e in episodes)  # 1-4 s each (two may run together)
    s, e = max(episodes, key=lambda p: p[1] - p[0])
    # envelope analysis: band-pass around the housing's resonance, then the envelope repeats at the BPFO
    seg = a.signal[1, s:e]
    f_seg = np.fft.rfftfreq(len(seg), 1 / FS)
    ringing = np.fft.irfft(np.where((f_seg > 450) & (f_seg < 800), np.fft.rfft(seg), 0), len(seg))
    env = np.abs(ringing)
    spectrum = np.abs(np.fft.rfft(env - env.mean()))
    freqs = np.fft.rfftfreq(len(env), 1 / FS)
    band = (freqs > 50) & (freqs < 200)
    assert abs(freqs[band][np.argmax(spectrum[band])] - BPFO) < 3


def test_windows_carry_the_episode_labels():
    stream = simulate_stream(30, seed=4)
    x, y, starts = windows(stream)
    assert x.shape[1:] == (3, WINDOW) and len(x) == len(y) == len(starts)
    for i in np.flatnonzero(y):
        assert stream.labels[starts[i]:starts[i] + WINDOW].mean() >= 0.25


def test_event_metrics_count_found_episodes_and_false_alarms():
    labels = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0])
    scores = np.array([-1, 2, -1, -1, -1, -1, -1, 3, 3, -1])  # finds event 1, misses event 2, one false alarm
    m = detection_metrics(scores, labels)
    assert (m["events"], m["alarms"], m["event_recall"], m["event_precision"]) == (2, 2, 0.5, 0.5)
    assert m["event_f1"] == 0.5 and 0 <= m["auc"] <= 1
    perfect = detection_metrics(labels * 2.0 - 1, labels)
    assert perfect["event_f1"] == 1.0 and perfect["auc"] == 1.0


def test_the_real_series_aeon_ships_load_with_their_labels():
    kdd = real_series("kdd135")
    assert kdd["test"].shape == (7501,) and kdd["test_labels"].sum() == 12  # one labelled event of 12 points
    runs = np.flatnonzero(np.diff(np.concatenate([[0], kdd["test_labels"], [0]])))
    assert len(runs) == 2  # one contiguous event
    bm = real_series("basic_motions")
    assert bm["x_train"].shape == (40, 6, 100) and set(bm["y_train"]) == {"Standing", "Running", "Walking",
                                                                          "Badminton"}


def test_the_dense_detector_does_not_fit_a_cortex_m4_in_fp32_nor_its_arena_in_int8():
    assert "sensors" in list_tasks()
    task = get_task("sensors")
    model, x = task.build(seed=0), task.example_input()
    m4 = get_device("cortex-m4")
    fp32, int8 = predict_arena(model, x, "float32"), predict_arena(model, x, "int8")
    assert fp32.total > m4.sram and fp32.flash + m4.runtime_flash > m4.flash
    assert int8.total > m4.sram and fp32.peak_layers[0] == "stem.0"  # the full-rate stem sets the peak
