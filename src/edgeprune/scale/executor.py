"""The executor seam: run one function over many inputs and return the results in order.

``SerialExecutor`` runs them here, one after another; ``edgeprune.scale.ray_executor.RayExecutor``
makes each a Ray task. Both retry a task that raises and then report it by name (never dropping
it), call ``on_done`` as each task finishes, and run the function at the user's thread count.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from edgeprune.errors import EdgepruneError

RAY_INSTALL = "pip install 'edgeprune[ray]'"
OnDone = Callable[[str, Any, int, int], None]  # (task name, result, finished, total)


class ExecutorError(EdgepruneError):
    """An executor cannot be made as asked (unknown name, Ray missing, no node with a needed resource)."""


class TaskFailed(EdgepruneError):
    """A task still raised after its retries; ``name`` says which, ``attempts`` how often it ran."""

    def __init__(self, name: str, attempts: int, cause: str) -> None:
        super().__init__(f"task {name!r} failed after {attempts} attempt(s): {cause}")
        self.name, self.attempts, self.cause = name, attempts, cause


class Executor(Protocol):
    """Runs ``fn(shared, item)`` for every item (see the module docstring)."""

    name: str
    workers: int

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], names: Sequence[str],
            on_done: OnDone | None = None) -> list[Any]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Every task here, in order, at ``threads`` torch threads.

    Attributes:
        threads: torch intra-op threads while a task runs (``None``: leave the setting alone).
        retries: how many more times a task that raises is run before it is reported.
    """

    name = "serial"
    workers = 1

    def __init__(self, threads: int | None = None, retries: int = 0) -> None:
        self.threads, self.retries = threads, retries

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], names: Sequence[str],
            on_done: OnDone | None = None) -> list[Any]:
        """``[fn(shared, item) for item in items]``, each retried ``retries`` times before :class:`TaskFailed`."""
        out = []
        for i, (item, name) in enumerate(zip(items, names, strict=True)):
            for attempt in range(1, self.retries + 2):
                try:
                    out.append(run_pinned(self.threads, fn, shared, item))
                    break
                except Exception as exc:  # noqa: BLE001 - reported by name below
                    if attempt > self.retries:
                        raise TaskFailed(name, attempt, f"{type(exc).__name__}: {exc}") from exc
            if on_done is not None:
                on_done(name, out[-1], i + 1, len(items))
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_pinned(threads: int | None, fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    """``fn(shared, item)`` with torch at ``threads`` intra-op threads, restored after."""
    import torch

    if threads is None:
        return fn(shared, item)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(shared, item)
    finally:
        torch.set_num_threads(previous)


def get_executor(spec: str | None = None, *, threads: int | None = None, workers: int | None = None,
                 retries: int = 2, runtimes: tuple[str, ...] = ("onnxruntime",)) -> Executor:
    """The executor a ``--executor`` value names.

    Args:
        spec: ``None`` or ``"serial"``: here, in order; ``"ray"``: a local Ray cluster started for
            this run (``workers`` CPUs; stopped by ``close``); ``"auto"``: join the running cluster
            ``ray start`` made (``RAY_ADDRESS`` or the local one); ``"ray://HOST:PORT"``: join a
            cluster through its Ray Client server.
        threads: torch threads of every task (each Ray task also reserves that many CPUs).
        workers: CPUs of a local cluster (default: all of this machine's).
        retries: how many more times a failed task runs before it is reported.
        runtimes: the runtimes a local Ray cluster declares as resources (it is this machine).

    Returns:
        An :class:`Executor` (use it as a context manager, or call ``close``).

    Raises:
        ExecutorError: an unknown spec, or Ray is not installed (the message gives the pip command).
    """
    if spec in (None, "", "serial"):
        return SerialExecutor(threads, retries)
    if spec == "ray" or spec == "auto" or spec.startswith("ray://"):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ExecutorError(f"--executor {spec} needs Ray, which is not installed: {RAY_INSTALL}") from None
        from edgeprune.scale.ray_executor import RayExecutor

        return RayExecutor(None if spec == "ray" else spec, threads=threads or 1, num_cpus=workers, retries=retries,
                           runtimes=runtimes)
    raise ExecutorError(f"unknown executor {spec!r}: use serial, ray, auto or ray://HOST:PORT")
