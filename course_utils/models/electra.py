"""ELECTRA (Clark et al., 2020): replaced token detection, on the course's BERT encoder (Lab 5).

    model = ElectraForPretraining(BertConfig(vocab_size=V))        # generator 1/4 of the width
    masked_ids, labels = mask_tokens(input_ids, mask_replace_prob=0.85, random_replace_prob=0.0, ...)
    output = model(input_ids, masked_ids, labels, attention_mask)   # output.loss, .replaced, ...
    hidden = model.encode(input_ids, attention_mask)                 # the discriminator: what is kept

One training step, as in the official ``run_pretraining.py``:

1. a small **generator** (a ``BertForMaskedLM`` at a fraction of the width) predicts the masked
   tokens, trained with the usual MLM loss;
2. ``sample_replacements`` draws a token from its softmax at every masked position (a sample,
   not the argmax; no gradient flows through the draw);
3. the **discriminator** (the full-size encoder plus one logit per token) reads the corrupted
   sentence and says, for every token, whether it was replaced (``replaced_token_labels``);
4. ``electra_loss``: MLM loss + 50 x the discriminator's binary cross-entropy over real tokens.

The generator and discriminator share the embeddings (token, position and segment), as the
paper does for a small generator; the generator projects them down to its width and its head
projects back up to decode with the shared token table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.masking import IGNORE_INDEX
from course_utils.models.albert import factorized_mlm_head
from course_utils.models.bert import BertBackbone, BertConfig, BertEmbeddings, BertForMaskedLM
from course_utils.models.transformer import init_and_tie, mask_if_padded

DISCRIMINATOR_WEIGHT = 50.0  # lambda in the paper
GENERATOR_WIDTH_FRACTION = 0.25  # "generators 1/4-1/2 the size of the discriminator work best"


def generator_config(config: BertConfig, width_fraction: float = GENERATOR_WIDTH_FRACTION) -> BertConfig:
    """The generator's sizes: ``width_fraction`` of the hidden and feed-forward widths, the same depth.

    Heads keep the discriminator's head size where the width allows, with at least one head (the
    official code: ``max(1, hidden // 64)``, 64 being BERT's head size).
    """
    if isinstance(width_fraction, bool) or not isinstance(width_fraction, (int, float)) or not 0 < width_fraction <= 1:
        raise ValueError(f"width_fraction must be in (0, 1], got {width_fraction!r}")
    hidden = max(1, round(config.hidden_size * width_fraction))
    heads = max(1, hidden // (config.hidden_size // config.num_heads))
    values = {field.name: getattr(config, field.name) for field in fields(BertConfig)}
    return BertConfig(
        **values
        | dict(
            hidden_size=hidden - hidden % heads,
            num_heads=heads,
            intermediate_size=max(1, round(config.intermediate_size * width_fraction)),
        )
    )


def sample_replacements(generator_logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per masked position, drawn from ``softmax(generator_logits)``: ``[S, V]`` -> ``[S]`` ids.

    A sample, not the argmax: the discriminator must see plausible but wrong tokens. The draw is
    not differentiable and no gradient flows through it (the output is an integer tensor and the
    logits are detached). The draw goes through ``generator`` (a ``torch.Generator`` on the logits'
    device; None: the global one): the same seed gives the same draws and another generator other
    draws, whatever the global random state. One row gives one sample.
    """
    if not isinstance(generator_logits, torch.Tensor) or generator_logits.dim() != 2:
        shape = getattr(generator_logits, "shape", type(generator_logits))
        raise ValueError(f"generator_logits must be [positions, vocab], got {shape}")
    if not generator_logits.is_floating_point() or generator_logits.shape[1] == 0:
        raise ValueError(f"generator_logits must be floating point with vocab > 0, got {generator_logits.dtype}")
    if generator_logits.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=generator_logits.device)
    probabilities = generator_logits.detach().float().softmax(-1)  # [S, V]
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)  # [S]


def replaced_token_labels(
    original_ids: torch.Tensor, corrupted_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The discriminator's targets: ``[B, L]`` float, 1 where the token was replaced, 0 elsewhere.

    A sample that equals the original token counts as original (0). Padding gets 0 here and is
    left out of the loss by ``attention_mask`` (``electra_loss`` averages over real tokens only).
    """
    for name, ids in (("original_ids", original_ids), ("corrupted_ids", corrupted_ids)):
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(f"{name} must be an integer [batch, seq] tensor, got {getattr(ids, 'shape', type(ids))}")
    if corrupted_ids.shape != original_ids.shape:
        raise ValueError(f"corrupted_ids must have original_ids' shape {tuple(original_ids.shape)}")
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != original_ids.shape:
        raise ValueError(f"attention_mask must be a [batch, seq] keep-mask of shape {tuple(original_ids.shape)}")
    return ((corrupted_ids != original_ids) & attention_mask.bool()).float()


def electra_loss(
    generator_mlm_loss: torch.Tensor,
    discriminator_logits: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor,
    discriminator_weight: float = DISCRIMINATOR_WEIGHT,
) -> torch.Tensor:
    """``generator_mlm_loss + discriminator_weight * BCE``, the BCE averaged over real tokens only.

    generator_mlm_loss: scalar; discriminator_logits, labels (1 = replaced), attention_mask
    (1 = real token): ``[B, L]``. lambda = 50 in the paper: the binary loss is far smaller than
    the MLM loss.
    """
    if not isinstance(generator_mlm_loss, torch.Tensor) or generator_mlm_loss.dim() != 0:
        raise ValueError(
            f"generator_mlm_loss must be a scalar tensor, got {getattr(generator_mlm_loss, 'shape', None)}"
        )
    if not isinstance(discriminator_logits, torch.Tensor) or discriminator_logits.dim() != 2:
        shape = getattr(discriminator_logits, "shape", type(discriminator_logits))
        raise ValueError(f"discriminator_logits must be [batch, seq], got {shape}")
    for name, tensor in (("labels", labels), ("attention_mask", attention_mask)):
        if not isinstance(tensor, torch.Tensor) or tensor.shape != discriminator_logits.shape:
            raise ValueError(f"{name} must have discriminator_logits' shape {tuple(discriminator_logits.shape)}")
    if isinstance(discriminator_weight, bool) or not isinstance(discriminator_weight, (int, float)):
        raise ValueError(f"discriminator_weight must be a number, got {discriminator_weight!r}")
    return generator_mlm_loss + discriminator_weight * _replaced_token_loss(
        discriminator_logits, labels, attention_mask
    )


def _replaced_token_loss(discriminator_logits, labels, attention_mask) -> torch.Tensor:
    """Binary cross-entropy averaged over the real tokens (0 when there is none)."""
    real = attention_mask.bool()
    if not real.any():
        return discriminator_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(discriminator_logits[real].float(), labels[real].float())


class ProjectedEmbeddings(nn.Module):
    """Shared embeddings of width D, then a projection to the generator's width: ``[B, L]`` -> ``[B, L, D_g]``."""

    def __init__(self, embeddings: BertEmbeddings, hidden_size: int):
        super().__init__()
        self.shared = embeddings
        self.projection = nn.Linear(embeddings.token.embedding_dim, hidden_size)

    @property
    def token(self) -> nn.Embedding:
        return self.shared.token

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.projection(self.shared(input_ids, token_type_ids))


class ElectraGenerator(BertForMaskedLM):
    """A small ``BertForMaskedLM`` that reads and writes tokens through the discriminator's embeddings.

    ``config`` sets the generator's own width D_g (``generator_config``); ``embeddings`` (width D)
    are shared. The head is BERT's, its dense layer mapping ``D_g -> D``, its decoder tied to the
    shared token table.
    """

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings):
        super().__init__(config)
        self.embeddings = ProjectedEmbeddings(embeddings, config.hidden_size)
        self.head = factorized_mlm_head(config, embeddings.token.embedding_dim)  # D_g -> D, then the tied table
        init_and_tie(self.embeddings.projection, config.initializer_range)
        init_and_tie(self.head, config.initializer_range, self.head.decoder, embeddings.token)

    def selected_logits(self, input_ids, selected, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Logits ``[S, V]`` at the ``selected`` (boolean ``[B, L]``) positions, in row-major order.

        As ``mlm_loss``: the last layer's projection, feed-forward and the head run only there.
        """
        attention_mask = mask_if_padded(attention_mask)
        hidden = self.embeddings(input_ids, token_type_ids)  # [B, L, D_g]
        *first_blocks, last_block = self.encoder.blocks
        for block in first_blocks:
            hidden = block(hidden, attention_mask)
        return self.head(self.encoder.norm(last_block(hidden, attention_mask, rows=selected)))  # [S, V]


class ElectraDiscriminator(BertBackbone):
    """BERT's embeddings and encoder, then a dense layer, GELU and one logit per token: ``[B, L]`` -> ``[B, L]``.

    ``encode`` (BERT's) gives the contextual token vectors ``[B, L, D]`` that fine-tuning starts from.
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, 1)
        init_and_tie(self, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """One logit per token, ``[B, L]``: positive means "replaced"."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        return self.classifier(F.gelu(self.dense(hidden))).squeeze(-1)


@dataclass
class ElectraOutput:
    """One step's losses and what the discriminator saw."""

    loss: torch.Tensor  # generator MLM + weight * discriminator BCE
    generator_loss: torch.Tensor
    discriminator_loss: torch.Tensor
    corrupted_ids: torch.Tensor  # [B, L]: the input with generator samples at the masked positions
    replaced: torch.Tensor  # [B, L] float: the discriminator's targets


class ElectraForPretraining(nn.Module):
    """Generator and discriminator with shared embeddings; ``encode`` is the discriminator's."""

    def __init__(
        self,
        config: BertConfig,
        generator_width_fraction: float = GENERATOR_WIDTH_FRACTION,
        discriminator_weight: float = DISCRIMINATOR_WEIGHT,
    ):
        super().__init__()
        self.config = config
        self.generator_config = generator_config(config, generator_width_fraction)
        self.discriminator_weight = discriminator_weight
        self.discriminator = ElectraDiscriminator(config)
        self.generator = ElectraGenerator(self.generator_config, self.discriminator.embeddings)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return self.discriminator.encode(input_ids, attention_mask, token_type_ids)

    def forward(
        self,
        input_ids: torch.Tensor,
        masked_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ElectraOutput:
        """input_ids: the original ``[B, L]``; masked_ids, labels: a masker's output (``labels != -100`` where masked).

        ``generator`` (a ``torch.Generator``) seeds the generator network's samples.
        """
        if masked_ids.shape != input_ids.shape or labels.shape != input_ids.shape:
            raise ValueError(f"masked_ids and labels must have input_ids' shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        selected = labels != IGNORE_INDEX  # [B, L]
        logits = self.generator.selected_logits(masked_ids, selected, attention_mask, token_type_ids)  # [S, V]
        generator_loss = F.cross_entropy(logits.float(), labels[selected]) if logits.shape[0] else logits.sum()
        corrupted_ids = input_ids.clone()
        corrupted_ids[selected] = sample_replacements(logits, generator).to(input_ids.dtype)
        replaced = replaced_token_labels(input_ids, corrupted_ids, attention_mask)
        discriminator_logits = self.discriminator(corrupted_ids, attention_mask, token_type_ids)  # [B, L]
        loss = electra_loss(generator_loss, discriminator_logits, replaced, attention_mask, self.discriminator_weight)
        discriminator_loss = _replaced_token_loss(discriminator_logits.detach(), replaced, attention_mask)
        return ElectraOutput(loss, generator_loss.detach(), discriminator_loss, corrupted_ids, replaced)
