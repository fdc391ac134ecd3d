"""Tracing: one real forward run, recorded op by op at the ``torch`` function level.

Why this technique: a ``TorchFunctionMode`` sees every ``torch.*`` function, ``Tensor`` method and
``torch.nn.functional`` call of an ordinary eager forward pass, with the real tensors. Python
control flow, data-dependent branches, asserts and custom modules all run as they normally do,
which is what gives coverage of real-world model code (timm, torchvision, user code) where
``torch.fx`` symbolic tracing stops at the first data-dependent branch and ``torch.export`` at the
first unsupported construct. Parameters are recognised by identity, so every op knows the module
path of the weights it touches. See docs/engine.md.

Each op is interpreted by a rule (``edgeprune.graph.rules``) that labels its outputs' dimensions
and unifies the dimensions it couples; unknown ops block every tracked dimension they touch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from edgeprune.graph.headdims import Fibre, Fold, fixed_head_dims, head_dim_attrs, rotary_code
from edgeprune.graph.spaces import DimMap, Seg, SpaceTable, Unresolvable, fixed, length
from edgeprune.plan import Attr, Slot
from edgeprune.specs import eval_mode

if TYPE_CHECKING:  # the rules import this module
    from edgeprune.graph.rules import RuleRegistry

Dims = tuple[DimMap, ...]


@dataclass
class OpRecord:
    """One traced op: what ran, where, and the labels of its tensor inputs and outputs."""

    index: int
    name: str
    module: str
    inputs: list[Dims]
    outputs: list[Dims]
    out_shapes: list[tuple[int, ...]]
    data_dependent: bool = False  # output sizes follow the values (nms, nonzero, boolean masks)
    in_ids: list[int] = field(default_factory=list)  # id() of each tensor input (stable while the trace runs)
    out_ids: list[int] = field(default_factory=list)  # tensor lifetimes follow from these (targets/sram.py)


@dataclass
class GroupedInput:
    """The input-channel dimension of a grouped convolution's weight (pruned per group of rows)."""

    tensor: str
    source: DimMap
    groups: int


@dataclass
class TraceResult:
    spaces: SpaceTable
    records: list[OpRecord]
    param_dims: dict[str, Dims]
    roles: dict[tuple[str, int], str]
    grouped: list[GroupedInput]
    aliases: dict[str, list[str]]
    unknown_ops: dict[str, str] = field(default_factory=dict)
    produced: list[DimMap] = field(default_factory=list)
    counters: list[tuple[int, Attr]] = field(default_factory=list)  # (space, attribute counting its units)
    # cuts within heads (head_dims=True; edgeprune.graph.headdims)
    fibres: list[Fibre] = field(default_factory=list)
    folds: list[Fold] = field(default_factory=list)
    head_dim_refusals: dict[str, str] = field(default_factory=dict)  # module -> why its heads are cut whole
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)  # positions root -> (space, heads)
    rescales: dict[int, list[Slot]] = field(default_factory=dict)  # space root -> q/k rows to rescale


def op_name(func: Callable) -> str:
    """A normalised op name: ``Tensor.add_``, ``__iadd__`` and ``torch.add`` all become ``add``."""
    name = getattr(func, "__name__", str(func))
    if name == "__get__":  # a Tensor property such as .T, .mT or .data: name it by the property
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    if name.startswith("__") and name.endswith("__") and name not in ("__getitem__", "__setitem__", "__get__"):
        name = name[2:-2]
        if name[:1] in "ri" and name[1:] in _DUNDER_BINARY:
            name = ("rsub" if name == "rsub" else name[1:])
    if name.endswith("_") and not name.startswith("_") and name != "_":
        name = name[:-1]
    return _DUNDER_ALIASES.get(name, name)


# Ops whose output sizes depend on the values computed, not only on input sizes.
DATA_DEPENDENT = {"nms", "batched_nms", "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select",
                  "repeat_interleave", "bincount", "histc", "nonzero_static"}


def is_data_dependent(name: str, args: tuple) -> bool:
    if name in DATA_DEPENDENT:
        return True
    if name == "where" and len(args) == 1:
        return True
    if name == "__getitem__" and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
    return False


_DUNDER_BINARY = {"add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "and", "or", "xor", "mod",
                  "lshift", "rshift"}
_DUNDER_ALIASES = {"truediv": "div", "floordiv": "floor_divide", "and": "bitwise_and", "or": "bitwise_or",
                   "xor": "bitwise_xor", "mod": "remainder", "neg": "neg", "invert": "bitwise_not"}


def tensors_in(obj: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(obj)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


class Tracer(TorchFunctionMode):
    """Records a forward pass and runs each op's rule (the context object rules talk to)."""

    def __init__(self, model: nn.Module, rules: RuleRegistry, head_dims: bool = False,
                 whole_heads: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.rules = rules
        self.head_dims = head_dims  # cut within heads (edgeprune.graph.headdims), except in whole_heads
        self.whole_heads = whole_heads
        self.fibres: list[Fibre] = []
        self.folds: list[Fold] = []
        self.head_dim_refusals: dict[str, str] = {}
        self._pieces: dict[int, tuple[int, int]] = {}  # id(tensor) -> (fibre, piece): q, k or v of a fused split
        self._rotary = rotary_code(model) if head_dims else None
        if head_dims:
            self.head_dim_refusals.update(fixed_head_dims(model))
        self.spaces = SpaceTable()
        self.records: list[OpRecord] = []
        self.param_dims: dict[str, Dims] = {}
        self.roles: dict[tuple[str, int], str] = {}
        self.grouped: list[GroupedInput] = []
        self.produced: list[DimMap] = []  # producing dims of computed (non-parameter) weights
        self.unknown_ops: dict[str, str] = {}
        self._dims: dict[int, Dims] = {}
        self._alive: list[torch.Tensor] = []  # keeps ids unique while the trace runs
        self._names: dict[int, str] = {}
        self.aliases: dict[str, list[str]] = {}
        for name, tensor in _named_tensors(model):
            if id(tensor) in self._names:
                self.aliases[self._names[id(tensor)]].append(name)
            else:
                self._names[id(tensor)] = name
                self.aliases[name] = [name]
        self.module_stack: list[str] = [""]
        self.counters: list[tuple[int, Attr]] = []
        self._modules = dict(model.named_modules())

    # -- the context API that rules use --------------------------------------------------------
    def dims(self, t: torch.Tensor) -> Dims:
        """The labels of ``t``'s dimensions (a parameter's dimensions get fresh spaces)."""
        key = id(t)
        if key in self._dims:
            return self._dims[key]
        name = self._names.get(key)
        if name is not None:
            dims = tuple(self.spaces.new_map(n, f"{name}:{d}") for d, n in enumerate(t.shape))
            self.param_dims[name] = dims
        else:
            dims = tuple(fixed(n) for n in t.shape)
        self._remember(t, dims)
        return dims

    def set_dims(self, t: torch.Tensor, dims: Dims) -> None:
        if len(dims) != t.dim():
            raise AssertionError(f"rule produced {len(dims)} labels for a {t.dim()}-d tensor")
        self._remember(t, tuple(dims))

    def param_name(self, t: torch.Tensor) -> str | None:
        return self._names.get(id(t))

    def role(self, t: torch.Tensor, dim: int, role: str) -> None:
        """Note how a weight dimension relates to its units ("out", "in" or "channel").

        A weight computed in the forward (weight standardisation, ``w * gain``) is not a parameter:
        its producing dimension marks the spaces it follows, so the parameters behind it still prune.
        """
        name = self.param_name(t)
        if name is not None:
            self.roles[(name, dim % t.dim())] = role
        elif role == "out":
            self.produced.append(self.dims(t)[dim % t.dim()])

    def split_units(self, seg: Seg, size: int, inner: int, outer: int) -> DimMap:
        """Regroup a plain space into ``size`` coarser units (attention heads) and label the new dim.

        The running module's integer attributes that count the new units or their span are noted,
        so that surgery keeps them in step: by value *and* name, because a stride or a window size
        may equal the head count (hiera's ``q_stride``): a count of heads is named for heads
        (``num_heads``, ``heads``, ``n_head``), a span for a width (``attn_dim``, ``dim_out``,
        ``all_head_size``); ``head_dim`` does not change here (cuts within heads: ``split_head_dims``).
        """
        space = self.spaces.coarsen(seg.space, size, inner, outer, f"channels split into {size} units in {self.where}")
        module_name = self.module_stack[-1]
        for name, value, in_config in _int_attributes(self._modules.get(module_name)):
            per_unit = _counting_attribute(name.rpartition(".")[2].lower(), value, size, inner, outer)
            if per_unit and (per_unit == 1 or not in_config):  # a config's widths are the model's, not a layer's
                self.counters.append((space, Attr(module_name, name, per_unit)))
        return (Seg(space, size),)

    def cuts_head_dims(self) -> bool:
        """Whether a split into heads in the running module is cut within heads (``head_dims=True``)."""
        module_name = self.module_stack[-1]
        if not self.head_dims or module_name in self.whole_heads:
            return False
        if self._rotary is not None:
            self.head_dim_refusals.setdefault(module_name, f"the model has rotary position code ({self._rotary}), "
                                                           f"which pairs the dims of a head")
            return False
        return True

    def split_head_dims(self, seg: Seg, sizes: list[int]) -> list[DimMap] | None:
        """Label a split ``(pieces,) heads, head_dim`` of a plain space for a cut within heads.

        Returns the labels of the split dims (None: the layout is not one this cut handles, and the
        heads are cut whole). See ``edgeprune.graph.headdims``.
        """
        *before, n_heads, head_dim = sizes
        module_name = self.module_stack[-1]
        if len(before) > 1:
            self.head_dim_refusals.setdefault(module_name, f"its split {tuple(sizes)} has more than one dim before "
                                                           f"the heads (only (pieces,) heads, head_dim is cut within)")
            return None
        if n_heads < 2 or head_dim < 2:
            return None
        n_pieces = before[0] if before else 1
        total = self.spaces.coarsen(seg.space, n_heads * head_dim, 1, n_pieces, f"head dims split in {self.where}")
        heads = self.spaces.new(n_heads, f"heads of {module_name}")  # blocked once traced (settle): labels flow on
        positions = self.spaces.new(head_dim, f"head dims of {module_name}")
        labels: list[DimMap] = []
        pieces = None
        if before:
            pieces = self.spaces.new(n_pieces, f"q/k/v pieces of {module_name}")
            labels.append((Seg(pieces, n_pieces),))
        labels += [(Seg(heads, n_heads),), (Seg(positions, head_dim),)]
        attrs = head_dim_attrs(_int_attributes(self._modules.get(module_name)), module_name, n_pieces, n_heads,
                               head_dim)
        for a in attrs:
            self.counters.append((total, a))
        self.fibres.append(Fibre(module_name, total, seg.space, heads, positions, pieces, n_pieces, n_heads,
                                 head_dim, attrs))
        return labels

    def merge_head_dims(self, heads: DimMap, positions: DimMap) -> DimMap | None:
        """The label of ``reshape(B, N, heads * head_dim)`` over a fibre's heads and positions, or None."""
        f = self.fibre_of(positions)
        if f is None or len(heads) != 1 or heads[0].space is None:
            return None
        fibre = self.fibres[f]
        if self.spaces.find(heads[0].space) != self.spaces.find(fibre.heads):
            return None
        return (Seg(fibre.total, fibre.n_heads * fibre.head_dim),)

    def fibre_of(self, dm: DimMap) -> int | None:
        """The fibre whose positions label ``dm`` (the label as the split made it), or None."""
        if len(dm) != 1 or dm[0].space is None:
            return None
        for i, f in enumerate(self.fibres):
            if f.positions == dm[0].space:
                return i
        return None

    def note_pieces(self, dm: DimMap, outputs: list[tuple[torch.Tensor, int]]) -> None:
        """``outputs`` were taken along a dim labelled ``dm`` at these indices: if it is a fused split's
        q/k/v dim, remember which piece each output is (for the attention scale)."""
        if len(dm) != 1 or dm[0].space is None:
            return
        root = self.spaces.find(dm[0].space)
        for i, f in enumerate(self.fibres):
            if f.pieces is not None and self.spaces.find(f.pieces) == root:
                for t, piece in outputs:
                    self._pieces[id(t)] = (i, piece)
                return

    def fold_attention_scale(self, q: torch.Tensor, k: torch.Tensor, qd: DimMap, kd: DimMap) -> bool:
        """An attention op computes its scale from the head dim: note q's and k's rows so that surgery
        can keep the original scale (``edgeprune.graph.headdims``); False when they cannot be told."""
        ends = []
        for t, dm in ((q, qd), (k, kd)):
            f = self.fibre_of(dm)
            if f is None:
                return False
            if self.fibres[f].n_pieces > 1:
                tagged = self._pieces.get(id(t))
                if tagged is None or tagged[0] != f:
                    return False
                ends.append(tagged)
            else:
                ends.append((f, 0))
        self.folds.append(Fold(ends[0], ends[1], self.where))
        return True

    def note_features(self, inputs: DimMap, outputs: DimMap, n_in: int, n_out: int) -> None:
        """Note the running module's integer attributes that count a weight's input or output features.

        A layer that sizes its output from an attribute (HF's ``Conv1D``: ``x.size()[:-1] + (self.nf,)``)
        must have it follow the cut. Matched by value; when the input and output counts are equal,
        by name as well (``out``/``nf`` for outputs, ``in``/``nx`` for inputs).
        """
        module_name = self.module_stack[-1]
        for name, value, in_config in _int_attributes(self._modules.get(module_name)):
            if in_config or value not in (n_in, n_out):
                continue
            leaf = name.lower()
            is_out = value == n_out and (n_in != n_out or "out" in leaf or leaf == "nf")
            is_in = value == n_in and (n_in != n_out or leaf.startswith("in") or leaf == "nx")
            for dm, hit in ((outputs, is_out and not is_in), (inputs, is_in and not is_out)):
                if hit and len(dm) == 1 and dm[0].space is not None:
                    self.counters.append((dm[0].space, Attr(module_name, name, 1)))

    def share_heads(self, queries: DimMap, shared: DimMap, why: str) -> bool:
        """Grouped-query attention: each of ``shared``'s heads serves a contiguous group of ``queries``' heads.

        Query head ``h`` reads key/value head ``h // (queries / shared)``. Query heads are then removed
        in equal numbers from every group (the space is partitioned by the key/value heads), and the
        key/value heads stay whole: a group never loses its last query head, and the query heads
        kept still line up with their key/value head. The running module's attributes that hold
        the query heads per group (``num_key_value_groups``) follow the cut. Returns False when the
        labels are not one query-head space and one key/value-head space.
        """
        try:
            q, kv = self.spaces.resolve(queries), self.spaces.resolve(shared)
        except Unresolvable:
            return False
        if len(q) != 1 or len(kv) != 1 or q[0].space is None or not q[0].plain:
            return False
        n_q, n_kv = q[0].size, length(kv)
        if kv[0].space is not None and kv[0].outer == 1 and kv[0].inner > 1:
            n_kv = kv[0].size  # key/value heads repeated in place (repeat_kv: expand, then merge)
        if n_kv < 1 or n_q % n_kv or n_q == n_kv:
            return False
        rep = n_q // n_kv
        self.spaces.set_partitions(queries, n_kv, f"query heads grouped by key/value head in {self.where}")
        self.block(shared, f"key/value heads shared by a group of query heads ({why}; the query heads are "
                           f"pruned within their groups)")
        module_name = self.module_stack[-1]
        for name, value, in_config in _int_attributes(self._modules.get(module_name)):
            leaf = name.rpartition(".")[2].lower()
            if value == rep and not in_config and any(w in leaf for w in ("group", "rep", "per_kv")):
                self.counters.append((q[0].space, Attr(module_name, name, 1, divisor=n_kv)))
        return True

    def unify(self, a: DimMap, b: DimMap, why: str) -> None:
        self.spaces.unify(a, b, f"{why} in {self.where}")

    def block(self, dm: DimMap, why: str) -> None:
        self.spaces.block(dm, f"{why} in {self.where}")

    @property
    def where(self) -> str:
        module = self.module_stack[-1]
        return f"'{self._current}' ({module or 'top level'})"

    # -- recording -----------------------------------------------------------------------------
    def _remember(self, t: torch.Tensor, dims: Dims) -> None:
        self._dims[id(t)] = dims
        self._alive.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = tensors_in(out)
        name = op_name(func)
        if not outs:
            if name == "__setitem__":  # in-place writes into a slice: keep every dim involved as is
                self._current = name
                for t in tensors_in((args, kwargs)):
                    for dm in self.dims(t):
                        self.block(dm, "written into by slice assignment")
            return out
        self._current = name
        ins = tensors_in((args, kwargs))
        in_dims = [self.dims(t) for t in ins]
        rule = self.rules.lookup(name, func)
        try:
            if rule is None:
                raise NotImplementedError
            rule(self, args, kwargs, out)
        except Exception as exc:  # an op the rules do not know, or cannot place: stay safe
            reason = "op edgeprune has no rule for" if isinstance(exc, NotImplementedError) else \
                f"op whose rule failed ({type(exc).__name__}: {exc})"
            self.unknown_ops.setdefault(name, self.module_stack[-1])
            for dims in in_dims:
                for dm in dims:
                    self.block(dm, reason)
            for t in outs:
                self.set_dims(t, tuple(fixed(n) for n in t.shape))
        if any(id(t) not in self._dims for t in outs):
            # A rule that could not label an output: its sizes may follow the inputs, so freeze both.
            for dims in in_dims:
                for dm in dims:
                    self.block(dm, "op whose output layout is unknown")
            for t in outs:
                if id(t) not in self._dims:
                    self.set_dims(t, tuple(fixed(n) for n in t.shape))
        if self._pieces and name in _KEEPS_PIECE and len(outs) == 1:
            tagged = [self._pieces[id(t)] for t in ins if id(t) in self._pieces]
            if len(ins) == 1 and tagged:
                self._pieces[id(outs[0])] = tagged[0]
        self.records.append(OpRecord(len(self.records), name, self.module_stack[-1], in_dims,
                                     [self._dims[id(t)] for t in outs], [tuple(t.shape) for t in outs],
                                     is_data_dependent(name, args), [id(t) for t in ins], [id(t) for t in outs]))
        return out

    def result(self) -> TraceResult:
        return TraceResult(self.spaces, self.records, self.param_dims, self.roles, self.grouped,
                           self.aliases, self.unknown_ops, self.produced, self.counters, self.fibres, self.folds,
                           self.head_dim_refusals)


# Ops after which a tensor still holds the same rows of a fused projection's piece (q, k or v)
_KEEPS_PIECE = {"transpose", "permute", "contiguous", "clone", "to", "float", "detach", "dropout", "view", "reshape",
                "mul", "div"}


def _counting_attribute(name: str, value: int, size: int, inner: int, outer: int) -> int:
    """How many channels one head adds to attribute ``name`` (0: it does not count heads)."""
    if "head_dim" in name or "dim_head" in name or "head_size" == name:
        return 0
    if value == size and "head" in name and "dim" not in name:
        return 1
    if any(word in name for word in ("dim", "size", "width", "channels")):
        for per_unit in (inner, inner * outer):
            if value == size * per_unit:
                return per_unit
    return 0


def _int_attributes(module: nn.Module | None):
    """``(name, value, in_config)`` for the integer attributes of ``module`` and of its config object.

    A config object (``self.config``: any plain object with a ``to_dict``, or an attribute named
    ``config``) is where Hugging Face modules keep their head counts; its attributes are named
    ``config.<name>``.
    """
    if module is None:
        return
    for name, value in vars(module).items():
        if isinstance(value, int) and not isinstance(value, bool):
            yield name, value, False
        elif _is_config(name, value):
            for key, item in vars(value).items():
                if isinstance(item, int) and not isinstance(item, bool):
                    yield f"{name}.{key}", item, True


def _is_config(name: str, value: Any) -> bool:
    if isinstance(value, (nn.Module, torch.Tensor, type)) or not hasattr(value, "__dict__"):
        return False
    return name == "config" or callable(getattr(value, "to_dict", None))


def _named_tensors(model: nn.Module):
    yield from model.named_parameters(remove_duplicate=False)
    for name, buf in model.named_buffers(remove_duplicate=False):
        if buf is not None and buf.dim() > 0:
            yield name, buf


def _module_hooks(model: nn.Module, stack: list[str]):
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule):
            continue  # TorchScript runs outside Python: its ops are not traced; the probe guards its inputs

        def pre(_m, _a, name=name):
            stack.append(name)

        def post(_m, _a, _o):
            if len(stack) > 1:
                stack.pop()
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
    return handles


def call_model(model: nn.Module, example_inputs: Any) -> Any:
    """Run the model on a tensor, a tuple of positional inputs, or a dict of keyword inputs."""
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def warm_copy(model: nn.Module, example_inputs: Any) -> nn.Module:
    """A copy of ``model`` that has already run ``example_inputs`` once (eval mode, no gradients).

    Some models build state on their first call: YOLO heads make their anchors, caches and
    lazily registered buffers fill in. Traced cold, such a model records that one-off work, and
    every later run (the probe's copies, the pruned model) runs a different sequence of ops.
    Tracing a warmed copy records the forward that every later call runs; the caller's model is
    left exactly as it was (parameters, buffers, attributes and every module's training flag).

    Args:
        model: the model (not changed).
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.

    Returns:
        The warmed copy, in eval mode. Its tensors have the caller's names.
    """
    warm = copy.deepcopy(model).eval()
    inputs = tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, example_inputs)
    with torch.no_grad():
        call_model(warm, inputs)  # on clones: a forward that writes into its input leaves the caller's alone
    return warm


def trace(model: nn.Module, example_inputs: Any, rules: RuleRegistry, *, head_dims: bool = False,
          whole_heads: frozenset[str] = frozenset()) -> tuple[TraceResult, Any]:
    """Run ``model`` once under the tracer and return the recorded graph and the model's output.

    The model runs in eval mode without gradients; every module's training flag is restored
    afterwards. Whatever the forward itself changes on the model stays changed: trace a
    ``warm_copy`` (as ``edgeprune.graph.analyze`` does) to leave the caller's model alone.
    ``head_dims``: label splits into heads for a cut within heads, except in the modules named in
    ``whole_heads`` (``edgeprune.graph.headdims``).
    """
    tracer = Tracer(model, rules, head_dims, whole_heads)
    handles = _module_hooks(model, tracer.module_stack)
    try:
        with eval_mode(model), torch.no_grad(), tracer:
            for t in tensors_in(example_inputs):
                tracer.dims(t)
            output = call_model(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    for t in tensors_in(output):
        for dm in tracer.dims(t):
            tracer.spaces.block(dm, "feeds a model output (outputs keep their shape)")
    return tracer.result(), output
