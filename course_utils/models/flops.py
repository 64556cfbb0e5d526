"""Training FLOPs per step of each Lab 5 objective, counted analytically from the sizes.

    flops = training_flops_per_step("electra", config, batch_size=64, seq_len=13, predictions_per_sequence=1.2)
    steps = budget // flops                                   # equal compute, not equal steps

The count is what the course's implementation computes, padding included:

* matrix products only, ``2 m n k`` FLOPs for an ``[m, k] x [k, n]`` product (norms, softmax,
  GELU and the optimiser are a few percent at these sizes and are left out, as in Kaplan et al.);
* a training step is forward plus backward, and the backward pass of a product costs two
  products (one for each input), so a step is ``3 x`` the forward FLOPs;
* per token and layer of width D and feed-forward width F over L positions: the fused QKV
  ``6 D^2``, the attention scores and the weighted sum ``2 L D`` each, the output projection
  ``2 D^2``, the feed-forward ``4 D F``;
* where a model scores only some positions (MLM's 15%), the last layer's output projection,
  feed-forward and the head run only there (``BertForMaskedLM.mlm_loss``), while its QKV and
  attention still run everywhere, since every position is a key;
* the head: a dense layer to the embedding width and the decoder to the vocabulary, at the
  positions that predict a token.

``predictions_per_sequence`` is the mean number of positions per sequence whose vocabulary
logits the objective computes: the masked tokens (MLM, ALBERT, ELECTRA's generator), the real
tokens after the first (causal LM), or ``num_predict`` (permutation LM).
"""

from __future__ import annotations

from course_utils.models.albert import AlbertConfig
from course_utils.models.bert import BertConfig
from course_utils.models.electra import GENERATOR_WIDTH_FRACTION, generator_config

OBJECTIVES = ("mlm", "electra", "causal", "albert", "permutation")


def _layer(tokens: float, width: int, ffn: int, seq_len: int) -> float:
    """Forward FLOPs of one full layer over ``tokens`` positions."""
    return tokens * (8 * width * width + 4 * width * ffn + 4 * seq_len * width)


def _last_layer(tokens: float, rows: float, width: int, ffn: int, seq_len: int) -> float:
    """Forward FLOPs of a last layer whose output is read only at ``rows`` positions (QKV and attention everywhere)."""
    return tokens * (6 * width * width + 4 * seq_len * width) + rows * (2 * width * width + 4 * width * ffn)


def _head(rows: float, width: int, embedding: int, vocab: int) -> float:
    """Forward FLOPs of the MLM head at ``rows`` positions: dense ``width -> embedding``, then to the vocabulary."""
    return rows * (2 * width * embedding + 2 * embedding * vocab)


def _masked_lm_forward(config: BertConfig, tokens: float, rows: float, seq_len: int, embedding: int) -> float:
    """Encoder, last layer at the scored rows, and the head: ``BertForMaskedLM.mlm_loss``'s forward pass."""
    D, F, N = config.hidden_size, config.intermediate_size, config.num_layers
    encoder = (N - 1) * _layer(tokens, D, F, seq_len) + _last_layer(tokens, rows, D, F, seq_len)
    return encoder + _head(rows, D, embedding, config.vocab_size)


def _check(config, batch_size, seq_len, predictions_per_sequence) -> None:
    if not isinstance(config, BertConfig):
        raise ValueError(f"config must be a BertConfig, got {type(config).__name__}")
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(predictions_per_sequence, bool) or not isinstance(predictions_per_sequence, (int, float)):
        raise ValueError(f"predictions_per_sequence must be a number, got {predictions_per_sequence!r}")
    if not 0 <= predictions_per_sequence <= seq_len:
        raise ValueError(f"predictions_per_sequence must be in [0, seq_len={seq_len}], got {predictions_per_sequence}")


def mlm_training_flops(config: BertConfig, batch_size: int, seq_len: int, predictions_per_sequence: float) -> float:
    """BERT's MLM: the encoder over every position, the last layer's tail and the head at the masked ones."""
    _check(config, batch_size, seq_len, predictions_per_sequence)
    tokens, rows = batch_size * seq_len, batch_size * predictions_per_sequence
    return 3 * _masked_lm_forward(config, tokens, rows, seq_len, config.hidden_size)


def albert_training_flops(
    config: AlbertConfig, batch_size: int, seq_len: int, predictions_per_sequence: float
) -> float:
    """ALBERT: BERT's compute (the shared block runs ``num_layers`` times), the projection E -> H, the head via E."""
    _check(config, batch_size, seq_len, predictions_per_sequence)
    if not isinstance(config, AlbertConfig):
        raise ValueError(f"config must be an AlbertConfig, got {type(config).__name__}")
    tokens, rows = batch_size * seq_len, batch_size * predictions_per_sequence
    projection = tokens * 2 * config.embedding_size * config.hidden_size
    return 3 * (projection + _masked_lm_forward(config, tokens, rows, seq_len, config.embedding_size))


def electra_training_flops(
    config: BertConfig,
    batch_size: int,
    seq_len: int,
    predictions_per_sequence: float,
    generator_width_fraction: float = GENERATOR_WIDTH_FRACTION,
) -> float:
    """ELECTRA: the generator's MLM step (projection D -> D_g, its encoder, its head through D) plus the
    discriminator over every position (encoder, dense ``D x D`` and one logit per token)."""
    _check(config, batch_size, seq_len, predictions_per_sequence)
    small = generator_config(config, generator_width_fraction)
    tokens, rows = batch_size * seq_len, batch_size * predictions_per_sequence
    D = config.hidden_size
    generator = tokens * 2 * D * small.hidden_size + _masked_lm_forward(small, tokens, rows, seq_len, D)
    discriminator = config.num_layers * _layer(tokens, D, config.intermediate_size, seq_len) + tokens * (
        2 * D * D + 2 * D
    )
    return 3 * (generator + discriminator)


def causal_training_flops(config: BertConfig, batch_size: int, seq_len: int, predictions_per_sequence: float) -> float:
    """Causal LM: the encoder over every position (the mask saves no FLOPs), the head wherever a real token follows."""
    _check(config, batch_size, seq_len, predictions_per_sequence)
    D, F = config.hidden_size, config.intermediate_size
    tokens, rows = batch_size * seq_len, batch_size * predictions_per_sequence
    return 3 * (config.num_layers * _layer(tokens, D, F, seq_len) + _head(rows, D, D, config.vocab_size))


def permutation_training_flops(
    config: BertConfig, batch_size: int, seq_len: int, predictions_per_sequence: float
) -> float:
    """Permutation LM: the content stream in every layer but the last (which only supplies keys and values),
    the query stream at the ``predictions_per_sequence`` target slots in every layer, the head at the targets."""
    _check(config, batch_size, seq_len, predictions_per_sequence)
    D, F, N = config.hidden_size, config.intermediate_size, config.num_layers
    tokens, slots = batch_size * seq_len, batch_size * predictions_per_sequence
    content = (N - 1) * _layer(tokens, D, F, seq_len) + tokens * 4 * D * D  # last layer: keys and values only
    query = N * slots * (4 * D * D + 4 * seq_len * D + 4 * D * F)  # query and output projections, attention, FFN
    return 3 * (content + query + _head(slots, D, D, config.vocab_size))


TRAINING_FLOPS = {
    "mlm": mlm_training_flops,
    "electra": electra_training_flops,
    "causal": causal_training_flops,
    "albert": albert_training_flops,
    "permutation": permutation_training_flops,
}


def training_flops_per_step(
    objective: str, config: BertConfig, batch_size: int, seq_len: int, predictions_per_sequence: float, **options
) -> float:
    """Training FLOPs (forward + backward) of one step of ``objective`` on a ``[batch_size, seq_len]`` batch.

    ``options`` go to the objective's function (``generator_width_fraction`` for ELECTRA).
    """
    if objective not in TRAINING_FLOPS:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return TRAINING_FLOPS[objective](config, batch_size, seq_len, predictions_per_sequence, **options)
