"""FLOPs per training step of every model in the course: analytic formulas, and the one counter that checks them.

    flops = training_flops_per_step("electra", config, batch_size=64, seq_len=13, predictions_per_sequence=1.2)
    steps = budget // flops                                   # equal compute, not equal steps
    counted = counted_flops(lambda: model.mlm_loss(masked_ids, labels, attention_mask))  # the same, measured

The formulas count what the course's implementation computes, padding included:

* matrix products only, ``2 m n k`` FLOPs for an ``[m, k] x [k, n]`` product (norms, softmax,
  GELU and the optimiser are a few percent at these sizes and are left out, as in Kaplan et al.);
* a training step is forward plus backward, and the backward pass of a product costs two
  products (one for each input), so a step is ``3 x`` the forward FLOPs -- less one product
  where an input needs no gradient (the patch embedding's pixels);
* per token and layer of width D and feed-forward width F over L positions: the fused QKV
  ``6 D^2``, the attention scores and the weighted sum ``2 L D`` each, the output projection
  ``2 D^2``, the feed-forward ``4 D F``;
* where a model scores only some positions (MLM's 15%), the last layer's output projection,
  feed-forward and the head run only there (``BertForMaskedLM.mlm_loss``), while its QKV and
  attention still run everywhere, since every position is a key;
* the head: a dense layer to the embedding width and the decoder to the vocabulary, at the
  positions that predict a token.

The models:

* Lab 5's objectives, ``training_flops_per_step(objective, ...)``: ``predictions_per_sequence`` is
  the mean number of positions per sequence whose vocabulary logits the objective computes: the
  masked tokens (MLM, ALBERT, ELECTRA's generator), the real tokens after the first (causal LM),
  or ``num_predict`` (permutation LM);
* the ViT encoder of Labs 3 and 6: ``encoder_forward_flops`` (MAE's encoder on its kept patches),
  ``simmim_training_flops``, ``simclr_training_flops``;
* BEHRT (Labs 4 and 6): ``masked_event_training_flops``, ``contrastive_event_training_flops``.

``counted_flops`` measures a step with ``torch.utils.flop_counter``; ``tests/test_flops.py`` checks
every formula against it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from course_utils.models.albert import AlbertConfig
from course_utils.models.bert import BertConfig
from course_utils.models.electra import GENERATOR_WIDTH_FRACTION, generator_config

if TYPE_CHECKING:  # both pull in torchvision, and a formula reads only the sizes
    from course_utils.models.behrt import BehrtConfig
    from course_utils.models.mae import MAEConfig

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


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check(config, batch_size, seq_len, predictions_per_sequence) -> None:
    if not isinstance(config, BertConfig):
        raise ValueError(f"config must be a BertConfig, got {type(config).__name__}")
    _check_sizes(batch_size=batch_size, seq_len=seq_len)
    if isinstance(predictions_per_sequence, bool) or not isinstance(predictions_per_sequence, (int, float)):
        raise ValueError(f"predictions_per_sequence must be a number, got {predictions_per_sequence!r}")
    if not 0 <= predictions_per_sequence <= seq_len:
        raise ValueError(f"predictions_per_sequence must be in [0, seq_len={seq_len}], got {predictions_per_sequence}")


# --------------------------------------------------------------------------- Lab 5's objectives


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


# --------------------------------------------------------------------------- the ViT encoder (Labs 3 and 6)


def encoder_forward_flops(config: MAEConfig, images: int, kept_patches: int | None = None) -> float:
    """Matrix-product FLOPs of the shared ViT encoder's forward pass over ``images`` images.

    The patch embedding runs on all ``L`` patches; the blocks on the cls token and
    ``kept_patches`` patches (all ``L`` by default; MAE keeps ``int(L * (1 - mask_ratio))``).
    """
    D, F = config.dim, int(config.dim * config.mlp_ratio)
    T = 1 + (config.num_patches if kept_patches is None else kept_patches)
    return patch_embedding_flops(config, images) + config.depth * _layer(images * T, D, F, T)


def patch_embedding_flops(config: MAEConfig, images: int) -> float:
    """Forward FLOPs of the patch embedding, whose backward computes only the weight gradient (pixels need none)."""
    return images * 2 * config.num_patches * config.patch_dim * config.dim


def simmim_training_flops(config: MAEConfig, batch_size: int) -> float:
    """Training FLOPs (forward + backward) of one SimMIM step on ``batch_size`` images.

    The encoder over all ``1+L`` tokens and the linear head at every patch (the loss reads
    only masked ones, but the head runs everywhere): ``3 x forward - embedding``.
    """
    head = batch_size * 2 * config.num_patches * config.dim * config.patch_dim
    forward = encoder_forward_flops(config, batch_size) + head
    return 3 * forward - patch_embedding_flops(config, batch_size)


def simclr_training_flops(config: MAEConfig, batch_size: int, hidden_dim: int, out_dim: int) -> float:
    """Training FLOPs (forward + backward) of one SimCLR step on ``batch_size`` images, so ``2 x batch_size`` views.

    The encoder over all ``1+L`` tokens of each view, the projection head, and the ``[2B, 2B]``
    similarity matrix: ``3 x forward - embedding``.
    """
    views = 2 * batch_size
    forward = encoder_forward_flops(config, views) + _contrastive_head(views, config.dim, hidden_dim, out_dim)
    return 3 * forward - patch_embedding_flops(config, views)


def _contrastive_head(views: int, width: int, hidden_dim: int, out_dim: int) -> float:
    """Forward FLOPs of SimCLR's projection head on ``views`` vectors and of their ``[views, views]`` similarities."""
    return views * 2 * (width * hidden_dim + hidden_dim * out_dim) + 2 * views * views * out_dim


# --------------------------------------------------------------------------- BEHRT (Labs 4 and 6)


def masked_event_training_flops(
    config: BehrtConfig, batch_size: int, seq_len: int, masked_per_sequence: float
) -> float:
    """Training FLOPs of one ``masked_event_loss`` step on a ``[batch_size, seq_len]`` batch.

    The encoder over every position; the head (dense ``D x D``, then the tied code table ``D x V``)
    at the ``masked_per_sequence`` masked events of each sequence, on average.
    """
    _check_sizes(batch_size=batch_size, seq_len=seq_len)
    D, F, V = config.hidden_size, config.intermediate_size, config.vocab_size
    tokens, rows = batch_size * seq_len, batch_size * masked_per_sequence
    return 3 * (config.num_layers * _layer(tokens, D, F, seq_len) + _head(rows, D, D, V))


def contrastive_event_training_flops(
    config: BehrtConfig, batch_size: int, seq_len: int, projection_dim: int = 64
) -> float:
    """Training FLOPs of one ``contrastive_event_loss`` step on ``batch_size`` patients, two views of ``seq_len`` each.

    The encoder over both views' positions, the projection head ``D -> D -> projection_dim`` at
    each ``[CLS]``, and the ``[2B, 2B]`` similarities.
    """
    _check_sizes(batch_size=batch_size, seq_len=seq_len, projection_dim=projection_dim)
    D, F, views = config.hidden_size, config.intermediate_size, 2 * batch_size
    encoder = config.num_layers * _layer(views * seq_len, D, F, seq_len)
    return 3 * (encoder + _contrastive_head(views, D, D, projection_dim))


# --------------------------------------------------------------------------- the counter


def counted_flops(
    step: Callable[[], torch.Tensor | Any], *, backward: bool = True, model: nn.Module | None = None
) -> int:
    """FLOPs that FlopCounterMode counts in ``step()`` -- and in ``.backward()`` of the scalar it returns
    when ``backward`` -- with attention on SDPA's math backend (the counter has no formula for the fused
    CPU kernels). With ``backward=False`` the step runs under ``torch.no_grad()``.

    The backward pass accumulates into ``.grad`` as ``loss.backward()`` does; given the ``model``,
    its gradients are set to None before and after, so that counting leaves none behind.
    """
    if model is not None:
        model.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), torch.set_grad_enabled(backward), counter:
        output = step()
        if backward:
            output.backward()
    if model is not None:
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops()
