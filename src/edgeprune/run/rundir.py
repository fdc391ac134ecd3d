"""The run directory: written beside its final place and renamed into it only when complete.

A run writes into a hidden sibling ``.NAME.tmp-XXXXXXXX``; at the end it adds the ``COMPLETE``
marker and renames the directory to ``NAME``. A failure or Ctrl-C removes the sibling, so a
directory named ``NAME`` is always a whole run (with ``COMPLETE``) or whatever was there before.
An existing complete run is replaced only with ``force``; anything else that is not an empty
directory is never replaced.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from edgeprune._fs import replace_dir
from edgeprune.run.errors import BadInputError

COMPLETE = "COMPLETE"


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished run directory (it holds the ``COMPLETE`` marker)."""
    return (Path(path) / COMPLETE).is_file()


def require_complete(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if it is a finished run directory.

    Raises:
        BadInputError: it does not exist, or is not a complete edgeprune run.
    """
    path = Path(path)
    if not path.is_dir():
        raise BadInputError(f"RUN_DIR {str(path)!r} does not exist")
    if not is_complete(path):
        raise BadInputError(f"RUN_DIR {str(path)!r} is not a complete edgeprune run (no {COMPLETE} marker)")
    return path


def check_out(path: str | os.PathLike, force: bool) -> Path:
    """Check that a run may be written at ``path`` (before any work starts).

    Raises:
        BadInputError: a complete run is there and ``force`` is off, or something that is not a
            run directory is there.
    """
    path = Path(path)
    if not path.exists():
        return path
    if path.is_dir() and not any(path.iterdir()):
        return path
    if is_complete(path):
        if force:
            return path
        raise BadInputError(f"--out {str(path)!r} already holds a complete run; pass --force to replace it")
    raise BadInputError(f"--out {str(path)!r} exists and is not an edgeprune run directory; refusing to replace it")


@contextlib.contextmanager
def staged_run(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory; on success mark it complete and move it to ``path``.

    Args:
        path: the final run directory.
        force: replace an existing complete run.

    Yields:
        The staging directory to write into.

    Raises:
        BadInputError: as :func:`check_out`.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> with staged_run(out) as tmp:
        ...     _ = (tmp / "metrics.json").write_text("{}")
        >>> is_complete(out)
        True
    """
    final = check_out(path, force)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        (staging / COMPLETE).write_text(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                    "files": files}, indent=1) + "\n")
        _publish(staging, final, force)
    finally:  # on success the staging directory has been renamed away; otherwise it goes
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, final: Path, force: bool) -> None:
    check_out(final, force)  # the place may have changed while the run worked
    replace_dir(staging, final)
