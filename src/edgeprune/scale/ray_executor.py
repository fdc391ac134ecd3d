"""Tasks on Ray: each item one Ray task; retries by Ray (``max_retries`` with ``retry_exceptions``).

A local cluster (``ray.init(num_cpus=...)``, declaring this machine's runtimes) is started for the
run and stopped by ``close``;
``auto`` or ``ray://HOST:PORT`` joins a running cluster and leaves it running. Every task
reserves ``threads`` CPUs and runs torch at ``threads`` threads (``OMP_NUM_THREADS`` too), so a
node runs as many tasks at once as it has CPUs for.

Latency is measured only where the device is: :meth:`RayExecutor.on_runtime` runs a task only on
a node that declares the runtime as a custom resource (``ray start --resources
'{"runtime:onnxruntime": 1}'``), one at a time per node, and refuses by name when no node does.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import ray

from edgeprune.scale.executor import ExecutorError, OnDone, TaskFailed, run_pinned


def runtime_resource(runtime: str) -> str:
    """The custom resource a node declares to say a runtime's device is there: ``runtime:NAME``."""
    return f"runtime:{runtime}"


class RayExecutor:
    """Run tasks on a Ray cluster (see the module docstring).

    Args:
        address: ``None`` for a local cluster of ``num_cpus`` CPUs; ``"auto"`` or ``"ray://HOST:PORT"``.
        threads: torch threads (and CPUs reserved) per task.
        num_cpus: CPUs of a local cluster (default: this machine's).
        retries: how many more times a task that raises, or whose worker dies, runs before it is reported.
        runtimes: the runtimes a local cluster declares (``runtime:NAME``, one each): a local
            cluster is this machine, so its latency is this machine's. Ignored when joining a cluster,
            whose nodes declare their own.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, threads: int = 1, num_cpus: int | None = None,
                 retries: int = 2, runtimes: tuple[str, ...] = ("onnxruntime",)) -> None:
        self.threads, self.retries = max(1, int(threads)), int(retries)
        self._owned = False
        if not ray.is_initialized():
            env = {"OMP_NUM_THREADS": str(self.threads)}
            if address is None:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True,
                         configure_logging=False, runtime_env={"env_vars": env},
                         resources={runtime_resource(r): 1 for r in runtimes})
            else:
                ray.init(address=address, runtime_env={"env_vars": env}, configure_logging=False)
            self._owned = True
        self._remote = ray.remote(_task)
        self._options = {"num_cpus": self.threads, "max_retries": self.retries, "retry_exceptions": True}
        self._put: tuple[Any, Any] | None = None

    @property
    def workers(self) -> int:
        """Tasks the cluster runs at once (its CPUs over the CPUs each task reserves)."""
        return max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)

    def _shared_ref(self, shared: Any) -> Any:
        if self._put is None or self._put[0] is not shared:
            self._put = (shared, ray.put(shared))  # once per shared object, however many rounds use it
        return self._put[1]

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], names: Sequence[str],
            on_done: OnDone | None = None) -> list[Any]:
        """``fn(shared, item)`` for each item as a Ray task; results in order.

        Raises:
            TaskFailed: a task still failed after ``retries`` more attempts (the other tasks are cancelled).
        """
        names = list(names)
        if len(names) != len(items):
            raise ValueError(f"{len(items)} items but {len(names)} names")
        ref = self._shared_ref(shared)
        pending = {self._remote.options(name=name, **self._options).remote(self.threads, fn, ref, item): i
                   for i, (item, name) in enumerate(zip(items, names))}
        results: list[Any] = [None] * len(items)
        left = list(pending)
        while left:
            done, left = ray.wait(left, num_returns=1)
            i = pending[done[0]]
            try:
                results[i] = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                for other in left:
                    ray.cancel(other, force=True)
                cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause else exc
                raise TaskFailed(names[i], self.retries + 1, f"{type(cause).__name__}: {cause}") from None
            if on_done is not None:
                on_done(names[i], results[i], len(items) - len(left), len(items))
        return results

    def on_runtime(self, runtime: str, fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
        """``fn(shared, item)`` as one task on a node that declares ``runtime:RUNTIME`` (alone there).

        Raises:
            ExecutorError: no node of the cluster declares the resource.
            TaskFailed: the task failed after its retries.
        """
        resource = runtime_resource(runtime)
        if ray.cluster_resources().get(resource, 0) < 1:
            raise ExecutorError(f"no node of the Ray cluster declares the resource {resource!r}: latency on {runtime} "
                                f"is measured only on its device; start a node there with "
                                f"ray start --address=HEAD --resources='{{\"{resource}\": 1}}'")
        task = self._remote.options(name=f"latency on {runtime}", resources={resource: 1}, **self._options)
        try:
            return ray.get(task.remote(self.threads, fn, shared, item))
        except ray.exceptions.RayError as exc:
            cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause else exc
            raise TaskFailed(f"latency on {runtime}", self.retries + 1, f"{type(cause).__name__}: {cause}") from None

    def close(self) -> None:
        """Stop the local cluster this executor started (a joined cluster keeps running)."""
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _task(threads: int, fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    return run_pinned(threads, fn, shared, item)
