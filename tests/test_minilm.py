"""The minilm task: the real all-MiniLM-L6-v2 encoder, real English text, fidelity to the dense model.

Oracles: our encoder wrapper computes what sentence-transformers computes for the packaged model;
the dense model's fidelity to itself is exact, and so is its distillation loss (zero); dead heads
and FFN neurons of the real encoder are removed with its embeddings unchanged; a distilled pruned
model gets closer to the dense one; no held-out sentence is distillation text.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

import edgeprune as ep
from edgeprune.strategies import make_plan
from edgeprune.surgery import named_tensors
from edgeprune.tasks import get_task, list_tasks
from edgeprune.tasks import _text, minilm
from edgeprune.tasks.minilm import distill_loss, fidelity, model_dir, pydoc_sentences, tokenize, trained_encoder
from tests.test_equivalence import make_dead


@pytest.fixture(scope="module")
def encoder():
    return trained_encoder()


@pytest.fixture(scope="module")
def analysis(encoder):
    return ep.analyze(encoder, tokenize(list(pydoc_sentences()[:1])))


def _loader(model, ids):
    from edgeprune.tasks.minilm import embed

    return [(ids, embed(model, ids))]


def test_the_text_is_real_english_prose_found_offline():
    sentences = pydoc_sentences()
    assert len(sentences) > 1000 and len(set(sentences)) == len(sentences)
    assert all(s[0].isupper() and s[-1] in ".!?" and 5 <= len(s.split()) <= 40 for s in sentences)
    assert "minilm" in list_tasks() and get_task("minilm").metric.startswith("mean cosine")


def test_docstrings_give_prose_without_code_or_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text('''"""Module docs for a small test module here.

    >>> Examples of code are left out of this text.
"""
raise SystemExit("never imported")


def f():
    """Return the value that this function computes for you.

        An indented paragraph is code and is left out here.

    Short one.
    """
''')
    (tmp_path / "broken.py").write_text("def (:\n")
    got = _text.docstring_prose([source, tmp_path / "broken.py"])
    assert got == ("Module docs for a small test module here.", "Return the value that this function computes for you.")


def test_no_held_out_sentence_is_distillation_text(monkeypatch):
    sentences = pydoc_sentences()
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(0)).tolist()
    held_before = [sentences[i] for i in order[:round(len(sentences) * 0.2)]]  # the split the figures were made on
    extra = (held_before[0], "A docstring sentence that the documentation topics do not have.", sentences[order[-1]])
    monkeypatch.setattr(minilm, "docstring_sentences", lambda: extra)
    train, held_out = minilm.split_sentences()
    assert held_out == held_before and not set(held_out) & set(train)
    assert extra[1] in train and len(train) == len(set(train)) == len(sentences) - len(held_out) + 1


def test_the_distillation_loss_is_zero_for_the_dense_encoder_and_drops_padding(encoder, analysis):
    ids = tokenize(list(pydoc_sentences()[:4]))
    with torch.no_grad():
        assert float(distill_loss(encoder, ids)) == pytest.approx(0.0, abs=1e-6)
    half = {g.name: list(range(0, g.size, 2)) for g in analysis.groups[:2]}
    pruned = ep.apply_plan(encoder, make_plan(analysis.groups, half, named_tensors(encoder)))
    loss = distill_loss(pruned, ids)
    padded = torch.cat([ids, torch.zeros(4, 8, dtype=torch.long)], 1)  # columns of padding only: the same loss
    torch.testing.assert_close(distill_loss(pruned, padded), loss, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert float(loss) > 0.01 and pruned.bert.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0
    with torch.no_grad():  # a model without BERT hidden states is distilled on the embeddings alone
        embedding_term = (1 - torch.nn.functional.cosine_similarity(pruned(ids), encoder(ids), dim=-1)).mean()
        torch.testing.assert_close(distill_loss(lambda x: pruned(x), ids), embedding_term, rtol=1e-5, atol=1e-6)


def test_the_encoder_computes_what_sentence_transformers_computes(encoder):
    from sentence_transformers import SentenceTransformer

    sentences = list(pydoc_sentences()[:8])
    reference = SentenceTransformer(str(model_dir()), device="cpu")
    reference.max_seq_length = 32
    want = reference.encode(sentences, convert_to_tensor=True)
    got = encoder(tokenize(sentences))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_dead_heads_and_neurons_of_the_real_encoder_go_with_embeddings_unchanged(encoder, analysis):
    ids = tokenize(list(pydoc_sentences()[:6]))
    model = copy.deepcopy(encoder)
    heads = [g for g in analysis.groups if g.attrs]
    ffn = [g for g in analysis.groups if g.name.endswith("intermediate.dense")]
    assert len(heads) == len(ffn) == 6 and all(g.size == 12 and g.unit == 32 for g in heads)
    removals = {heads[0].name: [0, 5, 11], heads[3].name: [2], ffn[1].name: list(range(0, 1536, 3))}
    for g in analysis.groups:
        if g.name in removals:
            make_dead(model, g, removals[g.name])
    with torch.no_grad():
        reference = model(ids)
    pruned = ep.apply_plan(model, make_plan(analysis.groups, removals, named_tensors(model)))
    attn = pruned.bert.encoder.layer[0].attention.self
    assert (attn.num_attention_heads, attn.all_head_size, attn.attention_head_size) == (9, 288, 32)
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids), reference, rtol=1e-4, atol=1e-5)
    dense = fidelity(model, _loader(model, ids))
    assert dense["mean_cosine"] == pytest.approx(1.0, abs=1e-6) and dense["top1_agreement"] == 1.0


def test_a_distilled_pruned_encoder_moves_towards_the_dense_one(encoder, analysis):
    ids = tokenize(list(pydoc_sentences()[:16]))
    loader = _loader(encoder, ids)
    half = {g.name: list(range(0, g.size, 2)) for g in analysis.groups[:4]}  # heads and FFN of layers 0-1
    pruned = ep.apply_plan(encoder, make_plan(analysis.groups, half, named_tensors(encoder)))
    before = fidelity(pruned, loader)["mean_cosine"]
    opt = torch.optim.AdamW(pruned.parameters(), lr=1e-4)
    pruned.train()
    for _ in range(3):
        loss = distill_loss(pruned, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fidelity(pruned, loader)["mean_cosine"]
    assert before < 0.95 and after > before


@pytest.mark.slow  # ~10 minutes on a quiet core (854 distillation steps); benchmarks/minilm.py covers it
def test_the_cli_reports_fidelity_before_and_after_recovery(tmp_path):
    out = subprocess.run([sys.executable, "-m", "edgeprune.cli", "prune", "minilm", "--data", "minilm",
                          "--target", "macs=0.5", "--json", "--no-curve", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    figures = summary["task_figures"]
    assert figures["original"]["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert figures["pruned"]["mean_cosine"] > figures["pruned_before_finetune"]["mean_cosine"]
    assert figures["pruned"]["mean_cosine"] > 0.85  # 0.900 measured with these defaults (docs/benchmarks.md)
    assert summary["metric"].startswith("mean cosine")


def test_a_wrapped_hf_model_is_checked_under_each_attention_path(encoder, analysis):
    from edgeprune.verify import check_attention_variants

    half = {analysis.groups[0].name: list(range(6))}
    pruned = ep.apply_plan(encoder, make_plan(analysis.groups, half, named_tensors(encoder)))
    assert check_attention_variants(pruned, tokenize(list(pydoc_sentences()[:2]))) == ["sdpa", "eager"]
