"""Kinds of pruning, each a plug-in of the one path ``propose -> plan -> apply -> recover -> verify``.

=============  ==============================================  ======================================
kind           unit                                            config
=============  ==============================================  ======================================
``channels``   conv channels, Linear neurons, attention heads  :class:`Channels` (criterion, strategy)
``blocks``     whole residual blocks (depth)                   :class:`Blocks`
``weights``    single weights (unstructured), or ``"2:4"``...  :class:`Weights` (pattern, allocation)
=============  ==============================================  ======================================

``edgeprune.prune(model, x, kind="channels", criterion="l1")`` builds ``Channels(criterion="l1")``;
``kind=Channels(criterion="l1")`` passes the config itself. A new kind is a class with ``name`` and
``propose`` (see :mod:`edgeprune.kinds.base`) added to :data:`KINDS`.
"""
from __future__ import annotations

from typing import Any

from edgeprune.kinds.base import Kind, Resources, option_names
from edgeprune.kinds.blocks import Blocks
from edgeprune.kinds.channels import Channels
from edgeprune.kinds.weights import Weights
from edgeprune.weights.nm import parse_nm

KINDS: dict[str, type] = {"channels": Channels, "blocks": Blocks, "weights": Weights}


def make_kind(kind: str | Kind, options: dict[str, Any] | None = None) -> Kind:
    """The kind config a name (``"channels"``, ``"blocks"``, ``"weights"``, ``"unstructured"``, ``"2:4"``)
    and keyword options mean, or ``kind`` itself when it is a config already.

    Raises:
        ValueError: an unknown kind.
        TypeError: an option the kind does not take (the message lists those it takes).
    """
    options = dict(options or {})
    if not isinstance(kind, str):
        if not hasattr(kind, "propose"):
            raise TypeError(f"kind must be a name or a kind config with .propose(), got {type(kind).__name__}")
        if options:
            raise TypeError(f"options {sorted(options)} go into the kind config {type(kind).__name__}, not beside it")
        return kind
    if kind == "unstructured" or ":" in kind:
        if ":" in kind:
            parse_nm(kind)  # a malformed pattern is refused here, by name
        options.setdefault("pattern", kind)
        kind = "weights"
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: use 'channels', 'blocks', 'weights', '2:4' or '4:8'")
    config_type = KINDS[kind]
    unknown = sorted(set(options) - set(option_names(config_type)))
    if unknown:
        raise TypeError(f"kind {kind!r} takes no option {', '.join(unknown)}; it takes "
                        f"{', '.join(option_names(config_type))}")
    return config_type(**options)


__all__ = ["Blocks", "Channels", "KINDS", "Kind", "Resources", "Weights", "make_kind", "option_names"]
