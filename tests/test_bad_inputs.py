"""The bad-input matrix: every file edgeprune reads, damaged every way a file gets damaged.

Readers: a plan (``plan.json``), a saved model (``model.edgeprune``: ``edgeprune.json`` +
``model.safetensors``), recipes (YAML, TOML), a latency table, a run directory, and the artifacts
of every runtime (ONNX, OpenVINO IR, ExecuTorch ``.pte``, LiteRT ``.tflite``). Damage: truncated,
bit-flipped, wrong version, wrong architecture, hostile paths (traversal in names) and sizes
(enormous shapes, numbers, nesting), not text at all, and a pickle payload. Each case must raise
the reader's own ``EdgepruneError`` subclass, and the damaged files must be byte-for-byte what
they were (sha256 before and after). A sweep of seeded bit flips and truncations per file must
never raise anything but an ``EdgepruneError`` (a flip that leaves a valid file may load).
"""
from __future__ import annotations

import hashlib
import json
import pickle
import random
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.errors import EdgepruneError, PlanError
from edgeprune.export.saving import LoadError
from edgeprune.run.errors import BadInputError
from edgeprune.run.recipe import RecipeError, load_recipe
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.errors import ExportError
from edgeprune.targets import LatencyPredictor, LatencyTable, TableConfig, TableError, build_table


def small_model(width: int = 8) -> nn.Module:
    """The architecture every artifact here is made from (``width`` changes it)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4)).eval()


X = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def digest(path: Path) -> str:
    """sha256 of a file, or of every file under a directory (names and bytes)."""
    h = hashlib.sha256()
    for p in sorted([path] if path.is_file() else path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path.parent)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def pickle_payload(marker: Path) -> bytes:
    data = pickle.dumps(Payload(marker))
    probe = marker.with_suffix(".probe")  # the payload is live: unpickling it does run code
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()
    probe.unlink()
    return data


# --- the artifacts, made once -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """One good artifact per reader, in a folder the cases copy from."""
    root = tmp_path_factory.mktemp("good")
    model = small_model()
    result = ep.prune(model, X, ratio=0.5)
    result.plan.save(root / "plan.json")
    ep.save(result, root / "model.edgeprune")
    (root / "recipe.yaml").write_text("model: mnist\ntarget: [macs=0.5, params=0.6]\nmax_drop: 1.0\nepochs: 2\n")
    (root / "recipe.toml").write_text('model = "mnist"\ntarget = ["macs=0.5", "params=0.6"]\nmax_drop = 1.0\n')
    table = build_table(model, X, TableConfig(threads=1, runs=1, warmup=0, levels=2, calibrate=(), rounds=1))
    table.save(root / "table.json")
    run = root / "run"
    run.mkdir()
    ep.save(result, run / "model.edgeprune")
    (run / "recipe.json").write_text(json.dumps({"model": "tests.test_bad_inputs:small_model", "seed": 0}))
    (run / "metrics.json").write_text(json.dumps({"profiles": {"after": {"input_shapes": [[1, 3, 8, 8]]}}}))
    for name in ("onnxruntime", "openvino", "executorch", "litert"):
        rt = get_runtime(name)
        rt.export(model, X, root / name / f"model{rt.suffix}")
    return {"root": root}


# --- the readers ----------------------------------------------------------------------------------------
def read_plan(path: Path):
    return ep.apply_plan(small_model(), ep.Plan.load(path))


def read_save(path: Path):
    return ep.load(path, model=small_model())


def read_table(path: Path):
    table = LatencyTable.load(path)
    return LatencyPredictor(table).predict_model(small_model())


def read_run(path: Path):
    from edgeprune.run.reload import load_run_model

    return load_run_model(path)


def read_artifact(runtime: str) -> Callable[[Path], object]:
    def read(path: Path):
        return get_runtime(runtime).check(path, small_model(), X)
    return read


@dataclass(frozen=True)
class Reader:
    """Where a reader's good artifact lies, what it takes (file or folder), and its error."""

    artifact: str  # relative to the good folder: what the reader is given
    read: Callable[[Path], object]
    error: type


READERS = {
    "plan": Reader("plan.json", read_plan, PlanError),
    "save": Reader("model.edgeprune", read_save, LoadError),
    "recipe-yaml": Reader("recipe.yaml", load_recipe, RecipeError),
    "recipe-toml": Reader("recipe.toml", load_recipe, RecipeError),
    "table": Reader("table.json", read_table, TableError),
    "run": Reader("run", read_run, BadInputError),
    "onnx": Reader("onnxruntime/model.onnx", read_artifact("onnxruntime"), ExportError),
    "openvino": Reader("openvino/model.xml", read_artifact("openvino"), ExportError),
    "pte": Reader("executorch/model.pte", read_artifact("executorch"), ExportError),
    "tflite": Reader("litert/model.tflite", read_artifact("litert"), ExportError),
}


def copy_of(made, tmp_path: Path, reader: Reader) -> Path:
    """A private copy of the good artifact (with its folder's companions: OpenVINO's .bin)."""
    src = made["root"] / reader.artifact
    tmp_path.mkdir(parents=True, exist_ok=True)
    folder = src.parent if src.parent != made["root"] else None
    if src.is_dir():
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst
    if folder is not None:
        shutil.copytree(folder, tmp_path / folder.name)
        return tmp_path / folder.name / src.name
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    return dst


def refused(reader: Reader, path: Path, match: str | None = None) -> EdgepruneError:
    """Read ``path``: it must raise the reader's error (naming ``match``) and leave the files as they were."""
    watched = path.parent if path.is_file() else path
    before = digest(watched)
    with pytest.raises(reader.error, match=match) as info:
        reader.read(path)
    assert digest(watched) == before, "the reader changed the files it was given"
    return info.value


# --- mutations of one file ------------------------------------------------------------------------------
def truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def not_text(data: bytes) -> bytes:
    return b"\xff\xfe\x00\x81" + data[4:]


def first_byte_flipped(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def main_file(reader_name: str, path: Path) -> Path:
    """The file inside an artifact that a byte-level mutation targets."""
    if reader_name == "save":
        return path / "model.safetensors"
    if reader_name == "run":
        return path / "metrics.json"
    return path


BYTE_CASES = {"truncated": truncate, "empty": lambda d: b"", "not-text": not_text,
              "first-byte-flipped": first_byte_flipped}


@pytest.mark.parametrize("case", sorted(BYTE_CASES))
@pytest.mark.parametrize("name", sorted(READERS))
def test_damaged_bytes_are_refused_by_name(made, tmp_path, name, case):
    reader = READERS[name]
    path = copy_of(made, tmp_path, reader)
    target = main_file(name, path)
    if (name, case) == ("openvino", "first-byte-flipped"):
        # OpenVINO's XML reader ignores a flipped first byte ('<' -> '='), and a weight's low bit is
        # within parity: flip an exponent bit of the first weight in its .bin instead.
        weights = path.with_suffix(".bin")
        data = weights.read_bytes()
        weights.write_bytes(data[:3] + bytes([data[3] ^ 0x40]) + data[4:])
    else:
        target.write_bytes(BYTE_CASES[case](target.read_bytes()))
    refused(reader, path)


@pytest.mark.parametrize("name", sorted(READERS))
def test_bit_flip_and_truncation_sweep_raises_only_named_errors(made, tmp_path, name):
    """Seeded flips anywhere and truncations at many lengths: a named error, or a file still valid."""
    reader = READERS[name]
    good = made["root"] / reader.artifact
    rng = random.Random(name)
    data = main_file(name, good).read_bytes()
    cuts = sorted({rng.randrange(len(data)) for _ in range(6)})
    mutations = [("flip", rng.randrange(len(data)), 1 << rng.randrange(8)) for _ in range(10)]
    mutations += [("cut", c, 0) for c in cuts]
    for i, (how, at, bit) in enumerate(mutations):
        path = copy_of(made, tmp_path / str(i), reader)
        target = main_file(name, path)
        target.write_bytes(data[:at] + bytes([data[at] ^ bit]) + data[at + 1:] if how == "flip" else data[:at])
        before = digest(path.parent if path.is_file() else path)
        try:
            reader.read(path)
        except EdgepruneError:
            pass
        except Exception as exc:  # the failure this sweep looks for
            pytest.fail(f"{name}: {how} at byte {at} raised {type(exc).__name__}: {exc}")
        assert digest(path.parent if path.is_file() else path) == before


# --- JSON documents edited ------------------------------------------------------------------------------
def edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _set(key, value):
    def edit(doc):
        doc[key] = value
    return edit


def _plan_slot(field, value):
    def edit(doc):
        doc["groups"][0]["slots"][0][field] = value
    return edit


def _plan_group(field, value):
    def edit(doc):
        doc["groups"][0][field] = value
    return edit


def _plan_shape(doc):
    name = next(iter(doc["shapes"]))
    doc["shapes"][name] = [2 ** 62, 2 ** 62]


PLAN_EDITS = {
    "wrong-version": (_set("version", 99), "version"),
    "not-a-plan": (_set("format", "something.else"), "not an edgeprune plan"),
    "traversal-in-tensor-name": (_plan_slot("tensor", "../../../etc/passwd"), "lacks"),
    "enormous-shape": (_plan_shape, "shape"),
    "enormous-index": (_plan_group("remove", [2 ** 62]), "outside"),
    "negative-index": (_plan_group("remove", [-1]), "outside"),
    "remove-not-a-list": (_plan_group("remove", "0,1"), "remove"),
    "slot-dim-not-an-int": (_plan_slot("dim", "zero"), "dim"),
    "groups-not-a-list": (_set("groups", 7), "groups"),
    "unknown-field": (_plan_slot("evil", 1), "malformed"),
}


@pytest.mark.parametrize("case", sorted(PLAN_EDITS))
def test_plan_edits_are_refused_by_name(made, tmp_path, case):
    edit, match = PLAN_EDITS[case]
    path = copy_of(made, tmp_path, READERS["plan"])
    edit_json(path, edit)
    refused(READERS["plan"], path, match)


def test_plan_for_another_architecture_is_refused(made, tmp_path):
    path = copy_of(made, tmp_path, READERS["plan"])
    before = digest(path)
    with pytest.raises(PlanError, match="shape"):
        ep.apply_plan(small_model(width=6), ep.Plan.load(path))
    assert digest(path) == before


def test_plan_deeply_nested_and_huge_numbers(tmp_path):
    for i, text in enumerate(["[" * 100_000 + "]" * 100_000, '{"format": "edgeprune.plan", "version": ' + "9" * 5000 + "}",
                              '{"format": "edgeprune.plan", "version": 1, "kind": "channels", "groups": 1e999}']):
        path = tmp_path / f"plan{i}.json"
        path.write_text(text)
        refused(READERS["plan"], path)


def test_missing_plan_file_is_named(tmp_path):
    with pytest.raises(PlanError, match="nothing.json"):
        ep.Plan.load(tmp_path / "nothing.json")


def _meta(path: Path) -> Path:
    return path / "edgeprune.json"


def _resign(save: Path) -> None:
    """Record the weights file's new sha256 and size, as a tamperer who knows the format would."""
    weights = save / "model.safetensors"
    edit_json(_meta(save), lambda d: d["weights"].update(sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
                                                         bytes=weights.stat().st_size))


def _safetensors(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


SAVE_EDITS = {
    "wrong-version": lambda p: edit_json(_meta(p), _set("version", 99)),
    "meta-truncated": lambda p: _meta(p).write_bytes(truncate(_meta(p).read_bytes())),
    "meta-not-text": lambda p: _meta(p).write_bytes(not_text(_meta(p).read_bytes())),
    "traversal-in-weights-name": lambda p: edit_json(_meta(p), lambda d: d["weights"].update(file="../../x.safetensors")),
    "weights-name-absolute": lambda p: edit_json(_meta(p), lambda d: d["weights"].update(file="/etc/passwd")),
    "weights-not-a-dict": lambda p: edit_json(_meta(p), _set("weights", "model.safetensors")),
    "aliases-not-a-dict": lambda p: edit_json(_meta(p), _set("aliases", ["a", "b"])),
    "alias-to-nowhere": lambda p: edit_json(_meta(p), _set("aliases", {"0.weight": "../../missing"})),
    "plans-not-a-list": lambda p: edit_json(_meta(p), _set("plans", 3)),
    "plan-version": lambda p: edit_json(_meta(p), lambda d: d["plans"][0].update(version=99)),
    "weights-bit-flipped-resigned": lambda p: (
        (p / "model.safetensors").write_bytes(_flip_tail(p / "model.safetensors")), _resign(p)),
    "enormous-shape-resigned": lambda p: (
        (p / "model.safetensors").write_bytes(_safetensors({"0.weight": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40],
                                                                         "data_offsets": [0, 16]}}, b"\0" * 16)),
        _resign(p)),
    "enormous-header-resigned": lambda p: (
        (p / "model.safetensors").write_bytes(struct.pack("<Q", 2 ** 60) + b"{}"), _resign(p)),
    "traversal-in-tensor-name-resigned": lambda p: (
        (p / "model.safetensors").write_bytes(_safetensors({"../../etc/passwd": {"dtype": "F32", "shape": [1],
                                                                                 "data_offsets": [0, 4]}}, b"\0" * 4)),
        _resign(p)),
}


def _flip_tail(path: Path) -> bytes:
    data = path.read_bytes()
    return data[:-3] + bytes([data[-3] ^ 0x10]) + data[-2:]


@pytest.mark.parametrize("case", sorted(SAVE_EDITS))
def test_save_edits_are_refused_by_name(made, tmp_path, case):
    path = copy_of(made, tmp_path, READERS["save"])
    SAVE_EDITS[case](path)
    if case == "weights-bit-flipped-resigned":  # a valid file with other weights: it loads, and differs
        model = ep.load(path, model=small_model())
        good = ep.load(made["root"] / "model.edgeprune", model=small_model())
        assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), good.state_dict().values()))
        return
    refused(READERS["save"], path)


def test_save_of_another_architecture_is_refused(made, tmp_path):
    path = copy_of(made, tmp_path, READERS["save"])
    before = digest(path)
    with pytest.raises(LoadError, match="does not fit"):
        ep.load(path, model=small_model(width=6))
    assert digest(path) == before


def test_unsigned_weights_change_is_refused(made, tmp_path):
    path = copy_of(made, tmp_path, READERS["save"])
    (path / "model.safetensors").write_bytes(_flip_tail(path / "model.safetensors"))
    assert "sha256" in str(refused(READERS["save"], path))


# --- pickle payloads: nothing edgeprune reads is unpickled ---------------------------------------------
def test_planted_pickle_payloads_never_run(made, tmp_path):
    marker = tmp_path / "code-ran"
    payload = pickle_payload(marker)
    save = copy_of(made, tmp_path / "save", READERS["save"])
    (save / "model.safetensors").write_bytes(payload)
    _resign(save)  # even with a matching checksum, the weights are read as safetensors only
    refused(READERS["save"], save, "safetensors")
    save2 = copy_of(made, tmp_path / "save2", READERS["save"])
    torch.save({"0.weight": Payload(marker)}, save2 / "model.pt")  # a torch pickle named as the weights
    edit_json(_meta(save2), lambda d: d["weights"].update(file="model.pt", sha256=hashlib.sha256(
        (save2 / "model.pt").read_bytes()).hexdigest()))
    refused(READERS["save"], save2, "safetensors")
    for name in ("plan", "table", "recipe-yaml", "run"):
        path = copy_of(made, tmp_path / name, READERS[name])
        main_file(name, path).write_bytes(payload)
        refused(READERS[name], path)
    yaml_bomb = tmp_path / "evil.yaml"
    yaml_bomb.write_text(f"model: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path "
                         f"['{marker}']]\n")
    refused(READERS["recipe-yaml"], yaml_bomb)
    assert not marker.exists(), "a planted payload ran"


# --- recipes ------------------------------------------------------------------------------------------
RECIPE_TEXTS = {
    "unknown-field (a version)": ("recipe.yaml", "model: mnist\nversion: 2\n", "version"),
    "not-a-mapping": ("recipe.yaml", "- model\n- mnist\n", "mapping"),
    "enormous-input-shape": ("recipe.yaml", "model: mnist\ntarget: macs=0.5\ninput_shape: [1, 3, 100000000, 100000000]\n",
                             "input_shape"),
    "enormous-number": ("recipe.toml", "model = 'mnist'\nepochs = 1e400\n", "epochs"),
    "wrong-type": ("recipe.toml", "model = 'mnist'\nepochs = 'many'\n", "epochs"),
    "deep-nesting": ("recipe.yaml", "model: mnist\ntarget: " + "[" * 5000 + "]" * 5000 + "\n", None),
    "alias-bomb": ("recipe.yaml", "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nmodel: mnist\ntarget: [*c, *c, *c, *c]\n", None),
    "traversal-in-model-spec": ("recipe.yaml", "model: ../../../../etc/passwd.py:factory\ntarget: macs=0.5\n", None),
}


@pytest.mark.parametrize("case", sorted(RECIPE_TEXTS))
def test_recipe_texts_are_refused_by_name(tmp_path, case):
    name, text, match = RECIPE_TEXTS[case]
    path = tmp_path / name
    path.write_text(text)
    reader = READERS["recipe-yaml"]
    if case == "traversal-in-model-spec":  # the spec is resolved when the run builds the model
        from edgeprune.run.inputs import build_model

        before = digest(path)
        with pytest.raises(BadInputError, match="passwd"):
            build_model(load_recipe(path).model)
        assert digest(path) == before
        return
    refused(reader, path, match)


# --- latency tables ------------------------------------------------------------------------------------
def _first_op(doc) -> dict:
    return doc["ops"][next(iter(doc["ops"]))]


TABLE_EDITS = {
    "wrong-version": (_set("version", 99), "version"),
    "not-a-table": (_set("format", "x"), "not a latency table"),
    "enormous-grid-key": (lambda d: _first_op(d)["points"].update({"1e400,1": 1.0}), "malformed"),
    "point-not-a-number": (lambda d: _first_op(d)["points"].update({k: "fast" for k in _first_op(d)["points"]}),
                           "malformed"),
    "layers-not-a-list": (lambda d: d["model"].update(layers=5), "malformed"),
    "traversal-in-layer-name": (lambda d: d["model"]["layers"][0]["spec"].update(name="../../etc"), "etc"),
}


@pytest.mark.parametrize("case", sorted(TABLE_EDITS))
def test_table_edits_are_refused_by_name(made, tmp_path, case):
    edit, match = TABLE_EDITS[case]
    path = copy_of(made, tmp_path, READERS["table"])
    edit_json(path, edit)
    refused(READERS["table"], path, match)


def test_table_for_another_architecture_is_refused(made, tmp_path):
    path = copy_of(made, tmp_path, READERS["table"])
    before = digest(path)
    other = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(TableError, match="0"):
        LatencyPredictor(LatencyTable.load(path)).predict_model(other)
    assert digest(path) == before


# --- run directories ------------------------------------------------------------------------------------
RUN_EDITS = {
    "metrics-without-profiles": lambda p: (p / "metrics.json").write_text("{}"),
    "recipe-not-a-mapping": lambda p: (p / "recipe.json").write_text("[1, 2]"),
    "recipe-without-model": lambda p: (p / "recipe.json").write_text("{}"),
    "recipe-traversal-spec": lambda p: (p / "recipe.json").write_text(json.dumps({"model": "../../x.py:f"})),
    "enormous-input-shape": lambda p: (p / "metrics.json").write_text(json.dumps(
        {"profiles": {"after": {"input_shapes": [[1, 3, 2 ** 40, 2 ** 40]]}}})),
    "save-missing": lambda p: shutil.rmtree(p / "model.edgeprune"),
}


@pytest.mark.parametrize("case", sorted(RUN_EDITS))
def test_run_directory_edits_are_refused_by_name(made, tmp_path, case):
    path = copy_of(made, tmp_path, READERS["run"])
    RUN_EDITS[case](path)
    refused(READERS["run"], path)


# --- runtime artifacts ----------------------------------------------------------------------------------
def test_onnx_wrong_version_and_enormous_shape(made, tmp_path):
    import onnx

    reader = READERS["onnx"]
    path = copy_of(made, tmp_path / "v", reader)
    m = onnx.load(str(path))
    m.ir_version = 999
    onnx.save(m, str(path))
    refused(reader, path)
    path = copy_of(made, tmp_path / "s", reader)
    m = onnx.load(str(path))
    for d in m.graph.input[0].type.tensor_type.shape.dim:
        d.dim_value = 2 ** 40
    onnx.save(m, str(path))
    refused(reader, path)


@pytest.mark.parametrize("name", ["onnx", "openvino", "pte", "tflite"])
def test_artifact_of_another_architecture_is_refused(made, tmp_path, name):
    reader = READERS[name]
    path = copy_of(made, tmp_path, reader)
    before = digest(path.parent)
    with pytest.raises(ExportError):
        get_runtime({"onnx": "onnxruntime", "openvino": "openvino", "pte": "executorch", "tflite": "litert"}[name]
                    ).check(path, small_model(width=6), X)
    assert digest(path.parent) == before


def test_openvino_files_damaged(made, tmp_path):
    reader = READERS["openvino"]
    path = copy_of(made, tmp_path / "xml", reader)
    path.write_bytes(truncate(path.read_bytes()))
    refused(reader, path)
    path = copy_of(made, tmp_path / "missing", reader)
    path.with_suffix(".bin").unlink()
    refused(reader, path)
    path = copy_of(made, tmp_path / "cut", reader)
    weights = path.with_suffix(".bin")
    weights.write_bytes(truncate(weights.read_bytes()))
    refused(reader, path)


def test_a_save_naming_code_does_not_run_it(made, tmp_path):
    """A spec is how a save rebuilds its model; one naming a .py file or a module would run code."""
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\ndef factory():\n    return None\n")
    for spec in (f"{evil}:factory", "tests.test_bad_inputs:small_model"):
        path = copy_of(made, tmp_path / spec.split(":")[1], READERS["save"])
        edit_json(_meta(path), _set("spec", spec))
        before = digest(path)
        with pytest.raises(LoadError, match="names code to run"):
            ep.load(path)
        assert digest(path) == before
    assert not marker.exists()
