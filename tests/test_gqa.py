"""Decoders as users have them: grouped-query attention (Llama, Qwen2) and GPT-2's transposed Conv1D.

Oracles: the pruned model gives the same outputs under eager and SDPA attention; heads made dead by
the test are removed and the outputs do not change; ONNX Runtime agrees with PyTorch; every
attribute that counts heads (in the modules and in the shared config object) matches the weights.
Tiny configs built from transformers' own classes, random weights.
"""
from __future__ import annotations

import copy

import pytest
import torch

import edgeprune as ep
from edgeprune.strategies import make_plan
from edgeprune.plan import Plan
from edgeprune.surgery import named_tensors
from edgeprune.verify import check_attention_variants
from tests.test_equivalence import make_dead

SEQ = 16


def _llama(heads: int = 8, kv_heads: int = 2, attn: str = "sdpa", cls: str = "Llama"):
    import transformers as tf

    config = getattr(tf, f"{cls}Config")(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=heads, num_key_value_heads=kv_heads,
                                         max_position_embeddings=64, use_cache=False, attn_implementation=attn)
    torch.manual_seed(0)
    return getattr(tf, f"{cls}ForCausalLM")(config).eval()


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64, use_cache=False,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


def _tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 128, (1, SEQ), generator=torch.Generator().manual_seed(seed))


def _logits_under(model, x, implementation: str) -> torch.Tensor:
    before = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        with torch.no_grad():
            return model(x).logits
    finally:
        model.set_attn_implementation(before)


def _assert_llama_counts(model) -> None:
    """Every head count in the modules and the config matches the projections' shapes."""
    config = model.config
    for layer in model.model.layers:
        attn = layer.self_attn
        q_heads = attn.q_proj.out_features // attn.head_dim
        kv_heads = attn.k_proj.out_features // attn.head_dim
        assert attn.v_proj.out_features // attn.head_dim == kv_heads
        assert attn.o_proj.in_features == q_heads * attn.head_dim
        assert attn.num_key_value_groups == q_heads // kv_heads and q_heads % kv_heads == 0
        assert (config.num_attention_heads, config.num_key_value_heads) == (q_heads, kv_heads)
        assert config.head_dim == attn.head_dim  # the rotary embedding's size: never cut


def test_a_gqa_llama_pruned_at_0_3_runs_the_same_under_eager_and_sdpa_and_in_onnx(tmp_path):
    model = _llama()
    x = _tokens()
    inv_freq = model.model.rotary_emb.inv_freq.clone()
    result = ep.prune(model, x, ratio=0.3)
    pruned = result.model
    assert result.stats["attention_checked"] == ["sdpa", "eager"]
    attn = pruned.model.layers[0].self_attn
    # 8 query heads in 2 groups of 4: one query head per group goes, both key/value heads stay
    assert (attn.q_proj.out_features, attn.k_proj.out_features, attn.num_key_value_groups) == (48, 16, 3)
    assert "key/value heads shared" in result.skipped["model.layers.0.self_attn.k_proj"]
    _assert_llama_counts(pruned)
    assert model.config.num_attention_heads == 8 and model.model.layers[0].self_attn.num_key_value_groups == 4
    torch.testing.assert_close(pruned.model.rotary_emb.inv_freq, inv_freq, rtol=0, atol=0)  # RoPE untouched
    for seed in (0, 1):
        torch.testing.assert_close(_logits_under(pruned, _tokens(seed), "eager"),
                                   _logits_under(pruned, _tokens(seed), "sdpa"), rtol=1e-5, atol=1e-5)
    report = ep.verify_pruned(model, pruned, x)
    assert report.ok, report.problems  # the ONNX file (dynamo exporter) agrees with PyTorch


def test_dead_query_heads_of_a_gqa_decoder_are_removed_with_outputs_unchanged():
    model = _llama()
    x = _tokens()
    analysis = ep.analyze(model, x)
    heads = [g for g in analysis.groups if g.attrs]
    assert [(g.name, g.size, g.unit, g.partitions) for g in heads] == [
        ("model.layers.0.self_attn.q_proj", 8, 8, 2), ("model.layers.1.self_attn.q_proj", 8, 8, 2)]
    dead = {heads[0].name: [1, 6], heads[1].name: [0, 2, 5, 7]}  # within groups {0..3} and {4..7}
    for g in heads:
        make_dead(model, g, dead[g.name])
    reference = {impl: _logits_under(model, x, impl) for impl in ("eager", "sdpa")}
    pruned = ep.apply_plan(model, make_plan(analysis.groups, dead, named_tensors(model)))
    layers = pruned.model.layers
    assert [layer.self_attn.num_key_value_groups for layer in layers] == [3, 2]
    assert [layer.self_attn.q_proj.out_features for layer in layers] == [48, 32]
    with pytest.warns(UserWarning):  # the layers keep different counts: the shared config cannot say both
        ep.apply_plan(model, make_plan(analysis.groups, dead, named_tensors(model)))
    assert pruned.config.num_attention_heads == 8  # left as it was, not a count that is wrong for a layer
    for impl in ("eager", "sdpa"):
        torch.testing.assert_close(_logits_under(pruned, x, impl), reference[impl], rtol=1e-5, atol=1e-5)


def test_a_plan_that_leaves_a_kv_group_unbalanced_is_refused():
    model = _llama()
    x = _tokens()
    analysis = ep.analyze(model, x)
    name = "model.layers.0.self_attn.q_proj"
    with pytest.raises(ep.PlanError, match="equal numbers"):
        ep.apply_plan(model, make_plan(analysis.groups, {name: [0, 1]}, named_tensors(model)))


def test_qwen2_with_4_query_and_2_kv_heads_prunes_and_runs_under_both_paths():
    model = _llama(heads=4, kv_heads=2, cls="Qwen2")
    x = _tokens()
    result = ep.prune(model, x, ratio=0.5)
    attn = result.model.model.layers[0].self_attn
    assert (attn.q_proj.out_features // attn.head_dim, attn.num_key_value_groups) == (2, 1)
    assert result.model.config.num_attention_heads == 2 and result.model.config.num_key_value_heads == 2
    torch.testing.assert_close(_logits_under(result.model, x, "eager"), _logits_under(result.model, x, "sdpa"),
                               rtol=1e-5, atol=1e-5)


def test_a_plan_that_breaks_one_attention_path_is_refused_by_name():
    # a cut applied behind the engine's back: num_key_value_groups left stale breaks eager only
    model = _llama()
    x = _tokens()
    analysis = ep.analyze(model, x)
    plan = make_plan(analysis.groups, {"model.layers.0.self_attn.q_proj": [0, 4]}, named_tensors(model))
    for g in plan.groups:
        g.attrs = [a for a in g.attrs if a.name != "num_key_value_groups"]
    pruned = ep.apply_plan(model, plan)
    with pytest.raises(ep.UnsupportedModelError, match="'eager'"):
        check_attention_variants(pruned, x)
    assert pruned.config._attn_implementation == "sdpa"  # restored


def test_gpt2_conv1d_is_a_linear_and_its_dead_heads_go_with_outputs_unchanged():
    model = _gpt2()
    x = _tokens()
    analysis = ep.analyze(model, x)
    heads = [g for g in analysis.groups if g.name.endswith("attn.c_attn")]
    assert [(g.size, g.unit) for g in heads] == [(4, 16), (4, 16)]
    assert {a.name for a in heads[0].attrs} >= {"num_heads", "split_size", "nf", "nx", "config.n_head"}
    assert any(g.name.endswith("mlp.c_fc") for g in analysis.groups)
    for g in heads:
        make_dead(model, g, [2])
    reference = {impl: _logits_under(model, x, impl) for impl in ("eager", "sdpa")}
    pruned = ep.apply_plan(model, make_plan(analysis.groups, {g.name: [2] for g in heads}, named_tensors(model)))
    attn = pruned.transformer.h[0].attn
    assert (attn.num_heads, attn.split_size, attn.c_attn.nf, attn.c_proj.nx) == (3, 48, 144, 48)
    assert attn.c_attn.weight.shape == (64, 144) and pruned.config.n_head == 3
    for impl in ("eager", "sdpa"):
        torch.testing.assert_close(_logits_under(pruned, x, impl), reference[impl], rtol=1e-5, atol=1e-5)


def test_gpt2_prunes_heads_mlp_and_width_and_its_onnx_agrees():
    model = _gpt2()
    x = _tokens()
    result = ep.prune(model, x, ratio=0.5)
    assert result.stats["macs_after"] < 0.4 * result.stats["macs_before"]
    block = result.model.transformer.h[0]
    assert (block.attn.num_heads, block.mlp.c_fc.nf) == (2, 128)
    report = ep.verify_pruned(model, result.model, x)
    assert report.ok, report.problems
    replayed = ep.apply_plan(copy.deepcopy(model), Plan.from_json(result.plan.to_json()))
    with torch.no_grad():
        torch.testing.assert_close(replayed(x).logits, result.model(x).logits)


def test_an_eager_gqa_decoder_prunes_whole_kv_groups_with_their_query_heads():
    # eager code repeats each key/value head in place (repeat_kv) to meet the query heads: the trace
    # reads every query head as a copy of its key/value head, so a unit is one key/value group
    model = _llama(attn="eager")
    x = _tokens()
    result = ep.prune(model, x, ratio=0.5)
    assert result.stats["attention_checked"] == ["eager", "sdpa"]
    attn = result.model.model.layers[0].self_attn
    assert (attn.q_proj.out_features, attn.k_proj.out_features, attn.num_key_value_groups) == (32, 8, 4)
    _assert_llama_counts(result.model)
    torch.testing.assert_close(_logits_under(result.model, x, "eager"), _logits_under(result.model, x, "sdpa"),
                               rtol=1e-5, atol=1e-5)


def _pruned_decode():
    from edgeprune.export.decoder import decode_inputs

    model = _llama()
    prompt, nxt = _tokens(), _tokens(1)[:, :1]
    pruned = ep.prune(model, prompt, ratio=0.3).model
    return pruned, prompt, nxt, decode_inputs(pruned, prompt, nxt)


def test_the_decode_step_of_a_pruned_gqa_decoder_takes_its_cache_as_tensors_exactly():
    from edgeprune.export.decoder import DecodeStep, NoCache

    pruned, prompt, nxt, inputs = _pruned_decode()
    assert [tuple(t.shape) for t in inputs[1:3]] == [(1, 2, SEQ, 8)] * 2  # key/value heads kept whole
    with torch.no_grad():
        step = DecodeStep(pruned)(*inputs)
        full = NoCache(pruned)(torch.cat([prompt, nxt], 1))
    torch.testing.assert_close(step[0][:, -1], full[:, -1], rtol=1e-4, atol=1e-5)  # the cache is exact
    assert step[1].shape == (1, 2, SEQ + 1, 8)


@pytest.mark.slow  # the export takes ~15 s quiet; benchmarks/decoder_cache.py exports and checks all three files
def test_a_pruned_gqa_decoder_exports_its_decode_step_and_onnx_agrees(tmp_path):
    from edgeprune.export.decoder import DecodeStep
    from edgeprune.export.onnx import export_onnx

    pruned, _, _, inputs = _pruned_decode()
    export_onnx(DecodeStep(pruned), inputs, tmp_path / "decode.onnx")  # checked against PyTorch on ORT
