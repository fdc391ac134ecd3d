"""Two profiles side by side: the same figures before and after, and their ratio after/before."""
from __future__ import annotations

from dataclasses import dataclass

from edgeprune.measure.profile import Profile


@dataclass(frozen=True)
class Row:
    """One figure before and after; ``ratio`` = after / before (``None`` when either is missing or 0)."""

    metric: str
    unit: str
    before: float | None
    after: float | None

    @property
    def ratio(self) -> float | None:
        if self.before in (None, 0) or self.after is None:
            return None
        return self.after / self.before


def figures(p: Profile) -> list[tuple[str, str, float | None]]:
    """The comparable figures of a profile as ``(metric, unit, value)``, in display order."""
    lat_o, lat_t, mem, lat_r = p.latency_onnx, p.latency_torch, p.memory, p.latency_runtime
    rt = lat_r.runtime if lat_r else "runtime"
    return [
        ("params", "", p.params.total),
        ("params nonzero", "", p.params.nonzero),
        ("MACs", "", p.macs.total),
        ("state dict", "bytes", p.sizes.state_dict_bytes),
        ("ONNX file", "bytes", p.sizes.onnx_bytes),
        ("ONNX zipped", "bytes", p.sizes.onnx_zip_bytes),
        ("sparse ONNX", "bytes", p.sizes.sparse_onnx_bytes),
        ("ORT latency median", "ms", lat_o.median_ms if lat_o else None),
        ("ORT latency p95", "ms", lat_o.p95_ms if lat_o else None),
        ("torch latency median", "ms", lat_t.median_ms if lat_t else None),
        ("torch latency p95", "ms", lat_t.p95_ms if lat_t else None),
        (f"{rt} latency median", "ms", lat_r.median_ms if lat_r else None),
        (f"{rt} latency p95", "ms", lat_r.p95_ms if lat_r else None),
        ("peak activations", "bytes", mem.peak_activation_bytes if mem else None),
    ]


def compare(before: Profile, after: Profile) -> list[Row]:
    """Line up two profiles figure by figure.

    Latency ratios are ratios of two measurements; nothing is derived from sparsity or MACs.

    Args:
        before: profile of the original model.
        after: profile of the pruned model (same input shape and settings, ideally).

    Returns:
        One :class:`Row` per figure present in either profile.

    Raises:
        ValueError: the profiles were taken on different input shapes or thread counts, so their
            figures are not comparable.
    """
    if before.input_shapes != after.input_shapes:
        raise ValueError(f"profiles use different inputs: {before.input_shapes} vs {after.input_shapes}")
    if before.environment.get("threads") != after.environment.get("threads"):
        raise ValueError("profiles were measured with different thread counts")
    rows = []
    for (metric, unit, b), (_, _, a) in zip(figures(before), figures(after)):
        if a is None and b is None:
            continue
        rows.append(Row(metric, unit, b, a))
    return rows
