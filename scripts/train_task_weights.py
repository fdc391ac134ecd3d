"""Train the built-in tasks' seed-0 weights with their recipes and write them into the package.

    .venv/bin/python scripts/train_task_weights.py                 # the shipped tasks
    .venv/bin/python scripts/train_task_weights.py mnist1d         # one of them

Run it whenever a task's version changes (its model, data or recipe): ``pretrained`` only uses a
shipped file whose name carries the task's current version, and trains otherwise. Training goes
through ``edgeprune.tasks.pretrained`` in a scratch cache, so the shipped file is exactly what a
user's first call would have trained and cached.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

SHIPPED = ("mnist", "mnist1d", "mnist-vit", "sensors")


def main(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["EDGEPRUNE_CACHE"] = scratch
        from edgeprune.tasks import cache_entry, cache_path, pretrained
        from edgeprune.tasks._pretrained import PACKAGED_DIR, packaged_path

        PACKAGED_DIR.mkdir(exist_ok=True)
        for name in names:
            start = time.perf_counter()
            pretrained(name, seed=0, retrain=True)
            entry = cache_entry(name, seed=0)
            for old in PACKAGED_DIR.glob(f"{name}-v*-seed0.safetensors"):
                old.unlink()  # a shipped file of an older version would never be read again
            shutil.copyfile(cache_path(name, seed=0), packaged_path(name, seed=0))
            print(f"{name}: val {entry.val_accuracy:.2f}%, trained in {time.perf_counter() - start:.0f} s "
                  f"-> {packaged_path(name, seed=0)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(SHIPPED))
