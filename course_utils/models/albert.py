"""ALBERT (Lan et al., 2020): BERT with a factorized embedding and one layer shared across the stack (Lab 5).

    config = AlbertConfig(vocab_size=V, embedding_size=32)   # BertConfig's fields plus E
    model = AlbertForMaskedLM(config)                       # BERT's interface: encode, forward, mlm_loss
    albert_parameter_count(config) == sum(p.numel() for p in model.parameters())

Two changes to BERT, each cutting parameters, neither cutting compute:

* **factorized embedding**: tokens are looked up in a ``V x E`` table and projected to the
  hidden width by an ``E x H`` matrix, ``V E + E H`` parameters instead of ``V H``
  (``FactorizedEmbedding``). As in the official code, position and segment embeddings and the
  LayerNorm also live at width E, before the projection (``AlbertEmbeddings``); the MLM head
  projects back to E and decodes with the tied ``V x E`` table.
* **cross-layer sharing**: one ``TransformerBlock`` is applied ``num_layers`` times
  (``SharedLayerEncoder``): the parameters of one layer, the compute of ``num_layers``.

ALBERT's sentence-order prediction loss and n-gram masking are left out: the comparison here is
about the encoder's parameters, trained with the same token-level MLM as BERT.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from course_utils.masking import PAD_ID
from course_utils.models.bert import BertConfig, BertEmbeddings, BertForMaskedLM, MaskedLMHead
from course_utils.models.transformer import TransformerEncoder, init_and_tie, post_ln_encoder, require_positive_ints


@dataclass
class AlbertConfig(BertConfig):
    """``BertConfig`` plus ``embedding_size`` E, the width of the token table (ALBERT-base: E = 128, H = 768)."""

    embedding_size: int = 64

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "embedding_size")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class FactorizedEmbedding(nn.Module):
    """A ``V x E`` token lookup, then an ``E x H`` projection: ``input_ids [B, L]`` -> ``[B, L, H]``.

    Parameters: ``V E + E H + H`` (the projection has a bias) against BERT's ``V H``.
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, padding_idx: int | None = PAD_ID):
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_size", embedding_size),
            ("hidden_size", hidden_size),
        ):
            _positive_int(name, value)
        self.token = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)  # [V, E]
        self.projection = nn.Linear(embedding_size, hidden_size)  # [E] -> [H]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.projection(self.token(input_ids))  # [B, L] -> [B, L, E] -> [B, L, H]


def factorized_embedding_parameters(vocab_size: int, embedding_size: int, hidden_size: int) -> int:
    """``V E + E H + H``: the parameters of ``FactorizedEmbedding(V, E, H)``."""
    return vocab_size * embedding_size + embedding_size * hidden_size + hidden_size


class AlbertEmbeddings(FactorizedEmbedding):
    """ALBERT's input: token, position and segment embeddings of width E, summed, normalised, projected to H."""

    def __init__(self, config: AlbertConfig):
        super().__init__(config.vocab_size, config.embedding_size, config.hidden_size, config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.embedding_size)
        self.segment = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.norm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    embed = BertEmbeddings.forward  # BERT's sum, LayerNorm and dropout at width E: [B, L] -> [B, L, E]

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.projection(self.embed(input_ids, token_type_ids))  # [B, L, E] -> [B, L, H]


class SharedLayerEncoder(TransformerEncoder):
    """ALBERT's cross-layer sharing: ONE ``TransformerBlock`` applied ``depth`` times.

    Takes ``TransformerEncoder``'s arguments. ``blocks`` lists the same module ``depth`` times, so
    every layer reads the same parameter tensors (``model.parameters()`` yields them once) and
    ``TransformerEncoder``'s forward pass and attention maps run unchanged: one layer's
    parameters, ``depth`` layers' compute.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, *args, **kwargs):
        _positive_int("depth", depth)
        super().__init__(dim, 1, num_heads, *args, **kwargs)
        self.blocks = nn.ModuleList([self.blocks[0]] * depth)


class AlbertForMaskedLM(BertForMaskedLM):
    """BERT for MLM with ALBERT's two changes: the factorized embedding and one shared layer.

    The head is BERT's (dense, GELU, LayerNorm, tied decoder) at width E: dense ``H -> E``, then
    the decoder ``E -> V`` whose weight is the ``V x E`` token table.
    """

    def __init__(self, config: AlbertConfig):
        if not isinstance(config, AlbertConfig):
            raise ValueError(f"config must be an AlbertConfig, got {type(config).__name__}")
        super().__init__(config)  # BERT's layout; ALBERT replaces three parts of it
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = post_ln_encoder(config, SharedLayerEncoder)
        self.head = factorized_mlm_head(config, config.embedding_size)
        init_and_tie(self, config.initializer_range, self.head.decoder, self.embeddings.token)  # the V x E table


def factorized_mlm_head(config: BertConfig, embedding_size: int) -> MaskedLMHead:
    """BERT's MLM head for hidden vectors of width H decoding through a token table of width E.

    Dense ``H -> E``, GELU, LayerNorm(E), decoder ``E -> V`` (tie its weight to the ``V x E`` table).
    """
    _positive_int("embedding_size", embedding_size)
    values = {field.name: getattr(config, field.name) for field in fields(BertConfig)}
    head = MaskedLMHead(BertConfig(**(values | dict(hidden_size=embedding_size, num_heads=1))))
    head.dense = nn.Linear(config.hidden_size, embedding_size)  # [..., H] -> [..., E]
    return head


def _block_parameters(hidden_size: int, intermediate_size: int) -> int:
    """One post-LN block: fused QKV ``3H^2 + 3H``, output ``H^2 + H``, FFN ``2 H F + F + H``, two LayerNorms ``4H``."""
    H, F = hidden_size, intermediate_size
    return 4 * H * H + 2 * H * F + 9 * H + F


def bert_parameter_count(config: BertConfig) -> int:
    """Parameters of ``BertForMaskedLM(config)``, the tied decoder counted once.

    Embeddings ``(V + P + T) H + 2H``; ``num_layers`` blocks; head: dense ``H^2 + H``, LayerNorm
    ``2H``, decoder bias ``V``.
    """
    V, H, P, T = config.vocab_size, config.hidden_size, config.max_position_embeddings, config.type_vocab_size
    embeddings = (V + P + T) * H + 2 * H
    head = H * H + H + 2 * H + V
    return embeddings + config.num_layers * _block_parameters(H, config.intermediate_size) + head


def albert_parameter_count(config: AlbertConfig) -> int:
    """Parameters of ``AlbertForMaskedLM(config)``: one block, however many layers, and the tables at width E.

    Embeddings ``(V + P + T) E + 2E`` plus the projection ``E H + H``; ONE block; head: dense
    ``H E + E``, LayerNorm ``2E``, decoder bias ``V`` (its weight is the token table).
    """
    if not isinstance(config, AlbertConfig):
        raise ValueError(f"config must be an AlbertConfig, got {type(config).__name__}")
    V, H, E = config.vocab_size, config.hidden_size, config.embedding_size
    P, T = config.max_position_embeddings, config.type_vocab_size
    embeddings = (V + P + T) * E + 2 * E + E * H + H
    head = H * E + E + 2 * E + V
    return embeddings + _block_parameters(H, config.intermediate_size) + head
