"""Publishing a finished directory in place of an old one, with renames only."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def replace_dir(ready: Path, final: Path) -> None:
    """Move ``ready`` to ``final``; ``final`` is always either the old directory or the new one.

    An existing ``final`` is renamed aside first and restored if the move fails, then deleted.
    """
    if not final.exists():
        os.replace(ready, final)
        return
    old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(final, old)
    try:
        os.replace(ready, final)
    except OSError:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
