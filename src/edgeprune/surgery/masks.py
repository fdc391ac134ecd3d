"""Sparsity masks on a model's tensors: apply, read, remove (revert) and finalize (bake in).

A mask is applied with ``torch.nn.utils.parametrize``: the tensor ``fc.weight`` becomes
``fc.parametrizations.weight.original * mask``, computed on every access. We chose a
parametrization over hooks because

* no weight can creep back. Every read of ``fc.weight`` (forward passes, ``state_dict`` consumers,
  an optimizer that keeps momentum or Adam moments, weight decay) sees the product with the mask;
  the gradient reaching ``original`` is zero where the mask is zero. Hook schemes that zero the
  tensor in place before each forward leave it non-zero between an optimizer step and the next
  forward, and lose the original values.
* masks are reversible. ``original`` keeps the values the mask hides, so :func:`remove_masks`
  gives them back (changed only by what training did to them while masked).
* the parameter object keeps its ``id`` through apply, remove and finalize, so an optimizer built
  before masking keeps working.

The costs, and how they are met: while a mask is on, ``state_dict`` names the tensor
``fc.parametrizations.weight.original`` (a load pre-hook also accepts the plain ``fc.weight`` key,
so a finalized or dense checkpoint loads into a masked model), and ``torch.save(model)`` of a
masked model is refused by PyTorch (save ``state_dict`` plus the plan, or finalize first).
The mask is a non-persistent buffer: the plan carries it (:class:`edgeprune.plan.MaskEntry`).

:func:`finalize` bakes the zeros into the tensors and removes every trace of masking, leaving a
plain ``nn.Module`` with its original ``state_dict`` keys. A masked model is exactly as fast as
the dense one; nothing here claims otherwise.
"""
from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from edgeprune.plan import MaskEntry, Plan, PlanError

__all__ = [
    "apply_masks", "set_masks", "masks_of", "remove_masks", "finalize", "is_masked",
    "masks_to_entries", "entries_to_masks", "encode_keep", "decode_keep",
]

_HOOK_ATTR = "_edgeprune_mask_load_hook"  # the handle of the load pre-hook on a masked module


class _Mask(nn.Module):
    """The parametrization ``original -> original * mask`` (``mask`` a boolean keep mask)."""

    def __init__(self, keep: torch.Tensor, order: list[str]) -> None:
        super().__init__()
        self.register_buffer("mask", keep.to(torch.bool), persistent=False)
        # The owner's parameter names before masking, so finalize can restore state_dict order.
        self.order = order

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask.to(original.dtype)


# -- bit packing ------------------------------------------------------------------------------

def encode_keep(keep: torch.Tensor | np.ndarray) -> str:
    """Bit-pack a boolean keep mask (``numpy.packbits``, C order) and base64 it.

    Args:
        keep: boolean tensor or array, True where the value is kept.

    Returns:
        The ASCII base64 text stored in :attr:`MaskEntry.keep`.
    """
    arr = keep.detach().cpu().numpy() if isinstance(keep, torch.Tensor) else np.asarray(keep)
    packed = np.packbits(arr.astype(bool).reshape(-1))
    return base64.b64encode(packed.tobytes()).decode("ascii")


def decode_keep(text: str, shape: Iterable[int]) -> torch.Tensor:
    """Inverse of :func:`encode_keep`.

    Args:
        text: base64 of the packed bits.
        shape: the tensor shape the mask has.

    Returns:
        A boolean tensor of ``shape``.

    Raises:
        PlanError: the text is not base64 or holds too few bits for ``shape``.
    """
    shape = [int(s) for s in shape]
    count = int(np.prod(shape)) if shape else 1
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise PlanError(f"mask is not valid base64: {exc}") from exc
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits.size < count or bits.size - count >= 8:
        raise PlanError(f"mask holds {bits.size} bits, which does not fit shape {shape} ({count} values)")
    return torch.from_numpy(bits[:count].astype(bool).reshape(shape))


def masks_to_entries(masks: Mapping[str, torch.Tensor], pattern: str | Mapping[str, str] = "unstructured",
                     ) -> list[MaskEntry]:
    """Turn keep masks into plan entries.

    Args:
        masks: tensor name (its ``state_dict`` key in the unmasked model, e.g. ``"fc1.weight"``) ->
            boolean keep mask of that tensor's shape.
        pattern: ``"unstructured"`` or ``"N:M"``, one for all or a mapping per tensor name.

    Returns:
        One :class:`MaskEntry` per tensor, in the order given, with its sparsity (fraction masked).
    """
    entries = []
    for name, keep in masks.items():
        keep = keep.to(torch.bool)
        kind = pattern if isinstance(pattern, str) else pattern.get(name, "unstructured")
        sparsity = 1.0 - float(keep.sum()) / max(keep.numel(), 1)
        entries.append(MaskEntry(tensor=name, shape=list(keep.shape), pattern=kind,
                                 sparsity=round(sparsity, 6), keep=encode_keep(keep)))
    return entries


def entries_to_masks(entries: Iterable[MaskEntry]) -> dict[str, torch.Tensor]:
    """Decode plan entries into ``{tensor name: boolean keep mask}``.

    Args:
        entries: the plan's mask entries.

    Returns:
        The keep masks, by tensor name.
    """
    return {e.tensor: decode_keep(e.keep, e.shape) for e in entries}


# -- applying and removing ----------------------------------------------------------------------

def _split(name: str) -> tuple[str, str]:
    module_path, _, attr = name.rpartition(".")
    return module_path, attr


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_path, attr = _split(name)
    try:
        module = model.get_submodule(module_path) if module_path else model
    except AttributeError as exc:
        raise PlanError(f"mask names tensor {name!r}, but the model has no module {module_path!r}") from exc
    if not parametrize.is_parametrized(module, attr) and not isinstance(getattr(module, attr, None), nn.Parameter):
        raise PlanError(f"mask names tensor {name!r}, but {module_path or 'the model'} has no parameter {attr!r}")
    return module, attr


def _mask_module(module: nn.Module, attr: str) -> _Mask | None:
    if not parametrize.is_parametrized(module, attr):
        return None
    for p in module.parametrizations[attr]:
        if isinstance(p, _Mask):
            return p
    return None


def _own_class(module: nn.Module) -> None:
    # `parametrize` swaps a module's class for a generated subclass holding the tensor's property,
    # and `copy.deepcopy` shares that class between copies, so removing (or adding) a
    # parametrization on one copy would break the other (PyTorch 2.14 still does this).
    # Give the module a class of its own before changing its parametrizations.
    if not parametrize.is_parametrized(module):
        return
    cls = module.__class__
    body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, body)


def masked_name(name: str) -> str:
    """Where a masked module keeps tensor ``name``'s values.

    Example:
        >>> masked_name("fc.weight")
        'fc.parametrizations.weight.original'
    """
    module, _, attr = name.rpartition(".")
    return f"{module}.parametrizations.{attr}.original" if module else f"parametrizations.{attr}.original"


def _accept_plain_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    # A load pre-hook: a dense or finalized checkpoint names the tensor `prefix + "weight"`;
    # a masked module stores it under `prefix + "parametrizations.weight.original"`.
    if not parametrize.is_parametrized(module):
        return
    for attr in module.parametrizations.keys():
        plain, inner = prefix + attr, masked_name(prefix + attr)
        if plain in state_dict and inner not in state_dict:
            state_dict[inner] = state_dict.pop(plain)


def set_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask tensors of ``model`` in place; a tensor already masked gets its mask replaced.

    Args:
        model: the model (changed in place).
        masks: tensor name (``"fc1.weight"``) -> boolean keep mask of the tensor's shape.

    Returns:
        ``model``.

    Raises:
        PlanError: a name does not resolve to a parameter, or a mask's shape differs from the tensor's.
    """
    resolved = []
    for name, keep in masks.items():  # check everything before changing anything
        module, attr = _owner(model, name)
        shape = tuple(getattr(module, attr).shape)
        if tuple(keep.shape) != shape:
            raise PlanError(f"mask for {name!r} has shape {list(keep.shape)}, the tensor has {list(shape)}")
        resolved.append((module, attr, keep))
    for module, attr, keep in resolved:
        device = getattr(module, attr).device
        keep = keep.to(device=device, dtype=torch.bool)
        existing = _mask_module(module, attr)
        if existing is not None:
            existing.mask = keep
            continue
        _own_class(module)
        order = list(module._parameters.keys())
        parametrize.register_parametrization(module, attr, _Mask(keep, order))
        if not hasattr(module, _HOOK_ATTR):
            object.__setattr__(module, _HOOK_ATTR, module.register_load_state_dict_pre_hook(_accept_plain_keys))
    return model


def apply_masks(model: nn.Module, plan: Plan | Iterable[MaskEntry]) -> nn.Module:
    """Apply a plan's masks to ``model`` in place (the plan is not attached; see ``attach_plan``).

    Args:
        model: a model of the architecture the plan was made for.
        plan: a :class:`Plan` (its ``masks`` are used) or a list of :class:`MaskEntry`.

    Returns:
        ``model``, with every named tensor masked.

    Raises:
        PlanError: an entry names a tensor the model lacks, or its shape differs.

    Example:
        >>> import torch.nn as nn
        >>> from edgeprune.plan import Plan
        >>> m = nn.Linear(4, 2)
        >>> keep = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.bool)
        >>> plan = Plan(kind="weights", masks=masks_to_entries({"weight": keep}))
        >>> int((apply_masks(m, plan).weight != 0).sum())
        4
    """
    entries = plan.masks if isinstance(plan, Plan) else list(plan)
    return set_masks(model, entries_to_masks(entries))


def _masked(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    found = []
    for path, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for attr in list(module.parametrizations.keys()):
            if _mask_module(module, attr) is not None:
                found.append((f"{path}.{attr}" if path else attr, module, attr))
    return found


def is_masked(model: nn.Module) -> bool:
    """Whether any tensor of ``model`` carries an edgeprune mask."""
    return bool(_masked(model))


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The keep masks on ``model``.

    Args:
        model: a model, masked or not.

    Returns:
        Tensor name (plain ``state_dict`` key, e.g. ``"fc1.weight"``) -> boolean keep mask (a copy).
    """
    return {name: _mask_module(m, a).mask.clone() for name, m, a in _masked(model)}


def _restore_order(module: nn.Module, order: list[str]) -> None:
    # remove_parametrizations re-registers the tensor last; put the parameters back in their
    # original order so state_dict keys come out exactly as before masking.
    params = module._parameters
    ranked = sorted(params, key=lambda k: order.index(k) if k in order else len(order))
    for key in ranked:
        params[key] = params.pop(key)


def _unmask(model: nn.Module, leave_parametrized: bool) -> nn.Module:
    orders: dict[int, tuple[nn.Module, list[str]]] = {}
    for _, module, attr in _masked(model):
        order = _mask_module(module, attr).order
        if len(order) >= len(orders.get(id(module), (None, []))[1]):  # the first mask saw them all
            orders[id(module)] = (module, order)
        params = module.parametrizations[attr]
        if len(params) != 1:
            raise RuntimeError(f"{attr!r} of {type(module).__name__} carries other parametrizations "
                               "besides the edgeprune mask; remove those first")
        _own_class(module)
        parametrize.remove_parametrizations(module, attr, leave_parametrized=leave_parametrized)
        if not parametrize.is_parametrized(module) and hasattr(module, _HOOK_ATTR):
            getattr(module, _HOOK_ATTR).remove()
            object.__delattr__(module, _HOOK_ATTR)
    for module, order in orders.values():
        _restore_order(module, order)
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Take every mask off, giving back the values it hid (as training left them).

    Args:
        model: a masked model (changed in place).

    Returns:
        ``model``, dense again.
    """
    return _unmask(model, leave_parametrized=False)


def finalize(model: nn.Module) -> nn.Module:
    """Bake the masks in: masked values become stored zeros and all masking machinery goes.

    The result is a plain ``nn.Module`` with the same ``state_dict`` keys as before masking; the
    parameter objects are the same ones (an optimizer holding them keeps working). This is the
    explicit last step before export or saving with ``torch.save``.

    Args:
        model: a masked model (changed in place); a model without masks is returned unchanged.

    Returns:
        ``model``.
    """
    return _unmask(model, leave_parametrized=True)
