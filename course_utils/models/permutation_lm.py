"""Permutation language modelling (XLNet, Yang et al., 2019) with two-stream attention (Lab 5).

    order = sample_factorization_order(attention_mask, input_ids=input_ids)  # [B, L]: positions in predicting order
    model = PermutationLM(BertConfig(vocab_size=V))
    loss = model.permutation_loss(input_ids, attention_mask, order, num_predict=2)
    hidden = model.encode(input_ids, attention_mask)                   # plain bidirectional encoder

Each sequence gets a random *factorization order*, a permutation of its real positions, and the
model predicts the last ``num_predict`` tokens of that order, each from the tokens that come
before it in the order (wherever they stand in the sentence). As in XLNet, the structural tokens
([CLS], [SEP], [PAD]: ``masking.STRUCTURAL_IDS``) are never predicted: ``sample_factorization_order``
puts [CLS] and [SEP] first, so that every target sees them, and ``PermutationLM`` drops any that an
order still makes a target. ``permutation_attention_masks`` turns the order into who-sees-whom:

* the **content stream** ``h`` is an ordinary encoder whose position ``i`` sees the positions
  ``j`` with ``rank(j) <= rank(i)``, itself included;
* the **query stream** ``g`` knows a position but not its token: it starts from a learned vector
  plus the position embedding, and position ``i`` sees ``h`` at ``rank(j) < rank(i)`` only. The
  prediction for a target comes from ``g``, so a target never sees its own token.

Both streams run through the same blocks (``two_stream_block``): the queries of ``g`` use the
block's query projection, the keys and values always come from ``h``. As in XLNet's code the
query stream is computed only at the predicted positions. Left out from XLNet: relative
positional encodings, segment recurrence (Transformer-XL memory) and the partial prediction of
a span chosen before the permutation; the positions here are BERT's absolute ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.masking import STRUCTURAL_IDS, eligible_positions
from course_utils.models.bert import BertBackbone, BertConfig, MaskedLMHead
from course_utils.models.transformer import TransformerBlock, init_and_tie


def _check_keep_mask(attention_mask) -> None:
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        shape = getattr(attention_mask, "shape", type(attention_mask))
        raise ValueError(f"attention_mask must be a [batch, seq] keep-mask (1 = real token), got {shape}")


def sample_factorization_order(
    attention_mask: torch.Tensor, generator: torch.Generator | None = None, input_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """A random factorization order per sequence: ``[B, L]`` keep-mask -> ``order`` ``[B, L]`` (long).

    ``order[b, t]`` is the position predicted at step ``t``. The real positions come first, in a
    uniformly random order; the padding positions follow, in their own order, so they never take
    part. With ``input_ids`` ``[B, L]``, the structural tokens ([CLS], [SEP]) lead the order, each
    row's other real positions following in a uniformly random order: every target sees them, and
    none of them is among the last ``num_predict`` while a row has ``num_predict`` other tokens.
    ``generator`` lives on the mask's device.
    """
    _check_keep_mask(attention_mask)
    batch, length = attention_mask.shape
    keys = torch.rand(batch, length, device=attention_mask.device, generator=generator)  # [0, 1): real positions
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids must be a tensor of attention_mask's shape {tuple(attention_mask.shape)}")
        frame = ~eligible_positions(input_ids, STRUCTURAL_IDS)
        keys = torch.where(frame, keys - 1.0, keys)  # [-1, 0): [CLS] and [SEP] first
    padding_keys = 1.0 + torch.arange(length, device=attention_mask.device) / length  # [1, 2): padding, kept in order
    keys = torch.where(attention_mask.bool(), keys, padding_keys)
    return keys.argsort(dim=1)


def order_ranks(order: torch.Tensor) -> torch.Tensor:
    """The inverse permutation: ``rank[b, order[b, t]] = t``. ``[B, L]`` -> ``[B, L]``."""
    steps = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, steps)


def permutation_attention_masks(
    order: torch.Tensor, num_predict: int, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Who sees whom under a factorization order: ``(content_mask, query_mask, targets)``.

    order: ``[B, L]``, a permutation of ``0..L-1`` per row listing every real position before any
    padding position (``sample_factorization_order``); num_predict: K; attention_mask ``[B, L]``.

    * ``content_mask`` ``[B, L, L]``: position ``i`` sees ``j`` iff ``rank(j) <= rank(i)``;
    * ``query_mask`` ``[B, L, L]``: ``i`` sees ``j`` iff ``rank(j) < rank(i)``, except that the
      first position of the order, which nothing precedes, sees itself (SDPA returns NaN for a
      query that sees nothing; that position is never a target);
    * ``targets`` ``[B, L]`` bool: the last ``min(K, n - 1)`` real positions of the order, for a
      row with ``n`` real tokens.

    Padding comes last in the order, so no real position ever sees padding.
    """
    _check_keep_mask(attention_mask)
    if not isinstance(order, torch.Tensor) or order.shape != attention_mask.shape or order.is_floating_point():
        raise ValueError(f"order must be an integer tensor of attention_mask's shape {tuple(attention_mask.shape)}")
    if isinstance(num_predict, bool) or not isinstance(num_predict, int) or num_predict < 1:
        raise ValueError(f"num_predict must be a positive int, got {num_predict!r}")
    length = order.shape[1]
    steps = torch.arange(length, device=order.device)
    if not torch.equal(order.sort(dim=1).values, steps.expand_as(order)):
        raise ValueError("order must hold a permutation of 0..L-1 in every row")
    real = attention_mask.bool()
    count = real.sum(1, keepdim=True)  # [B, 1]: n
    if not torch.equal(real.gather(1, order), steps < count):
        raise ValueError("order must list every real position before any padding position")
    rank = order_ranks(order)  # [B, L]
    content_mask = rank[:, None, :] <= rank[:, :, None]  # [B, i, j]: rank(j) <= rank(i)
    query_mask = (rank[:, None, :] < rank[:, :, None]) | (
        (rank == 0)[:, :, None] & torch.eye(length, dtype=torch.bool, device=order.device)
    )
    first_target = torch.clamp(count - num_predict, min=1)  # [B, 1]: the first target's rank
    targets = real & (rank >= first_target)
    return content_mask, query_mask, targets


def target_slots(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather each row's targets into ``K`` slots: ``(positions [B, K], valid [B, K])``, K = most targets in a row.

    Slots hold the target positions in increasing order, so the valid slots read row by row
    follow ``targets.nonzero()``. A row with fewer targets fills its spare slots with non-target
    positions, marked invalid.
    """
    batch, length = targets.shape
    counts = targets.sum(1)  # [B]
    slots = max(int(counts.max()) if batch else 0, 1)
    positions = torch.arange(length, device=targets.device)
    sort_keys = torch.where(targets, positions, positions + length)  # targets first, each group in position order
    slot_positions = sort_keys.argsort(dim=1)[:, :slots]  # [B, K]
    valid = torch.arange(slots, device=targets.device) < counts[:, None]
    return slot_positions, valid


def two_stream_block(
    block: TransformerBlock,
    h: torch.Tensor,
    g: torch.Tensor,
    content_mask: torch.Tensor | None,
    query_mask: torch.Tensor,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One shared block on both streams: ``h [B, L, D]``, ``g [B, K, D]`` -> ``(h', g')``.

    ``content_mask`` ``[B, L, L]`` (None: skip the content stream, as in the last layer, and return
    ``h' = None``); ``query_mask`` ``[B, K, L]``: which keys each query-stream position sees. The
    queries of both streams come from the block's query projection; the keys and values only from
    ``h``. Everything else (output projection, residuals, norms, feed-forward) is the block's own,
    in its pre- or post-LN layout. With ``g = h`` and ``query_mask = content_mask`` both outputs
    equal ``block(h, content_mask)``.
    """
    attention = block.attention
    length, width = h.shape[1], h.shape[2]
    stacked = g if content_mask is None else torch.cat([h, g], dim=1)  # [B, Q, D]: the rows that get updated
    mask = query_mask if content_mask is None else torch.cat([content_mask, query_mask], dim=1)  # [B, Q, L]
    queries_in = block.norm1(stacked) if block.norm_first else stacked
    keys_in = block.norm1(h) if block.norm_first else h
    q_weight, kv_weight = attention.qkv.weight.split([width, 2 * width])
    q_bias, kv_bias = attention.qkv.bias.split([width, 2 * width])
    heads, head_size = attention.num_heads, width // attention.num_heads
    q = F.linear(queries_in, q_weight, q_bias).unflatten(-1, (heads, head_size)).transpose(1, 2)  # [B, H, Q, D/H]
    k, v = F.linear(keys_in, kv_weight, kv_bias).view(-1, length, 2, heads, head_size).permute(2, 0, 3, 1, 4)
    dropout = attention.dropout if block.training else 0.0
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], dropout_p=dropout)  # [B, H, Q, D/H]
    attended = attention.proj(attended.transpose(1, 2).flatten(2))  # [B, Q, D]
    if block.norm_first:
        x = stacked + block.dropout(attended)
        x = x + block.dropout(block.ffn(block.norm2(x)))
    else:
        x = block.norm1(stacked + block.dropout(attended))
        x = block.norm2(x + block.dropout(block.ffn(x)))
    if content_mask is None:
        return None, x
    return x[:, :length], x[:, length:]


class PermutationLM(BertBackbone):
    """BERT's embeddings, post-LN encoder and tied head, trained as a two-stream permutation LM.

    ``query_vector`` is the query stream's learned start (in place of a token embedding).
    ``encode`` (BERT's) is the content stream with no permutation, for fine-tuning: ``[B, L, D]``.
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.head = MaskedLMHead(config)
        self.query_vector = nn.Parameter(torch.zeros(config.hidden_size))
        init_and_tie(self, config.initializer_range, self.head.decoder, self.embeddings.token)
        nn.init.trunc_normal_(self.query_vector, std=config.initializer_range)

    def query_embedding(self, positions: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """The query stream's start at ``positions`` ``[B, K]``: learned vector + position + segment, ``[B, K, D]``."""
        embeddings = self.embeddings
        summed = self.query_vector + embeddings.position(positions) + embeddings.segment(token_type_ids)
        return embeddings.dropout(embeddings.norm(summed))

    def forward(self, input_ids, attention_mask, order, num_predict: int, token_type_ids=None):
        """Logits at the targets: ``(logits [S, V], targets [B, L] bool)``, rows in ``targets.nonzero()`` order.

        ``order`` ``[B, L]`` and ``num_predict`` as in ``permutation_attention_masks``; the targets are its
        targets less any structural token ([CLS], [SEP], [PAD]), which XLNet never predicts either.
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got {getattr(input_ids, 'shape', type(input_ids))}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        content_mask, query_mask, targets = permutation_attention_masks(order, num_predict, attention_mask)
        targets = targets & eligible_positions(input_ids, STRUCTURAL_IDS)
        positions, valid = target_slots(targets)  # [B, K]
        query_mask = query_mask.gather(1, positions[:, :, None].expand(-1, -1, query_mask.shape[2]))  # [B, K, L]
        h = self.embeddings(input_ids, token_type_ids)  # [B, L, D]
        g = self.query_embedding(positions, token_type_ids.gather(1, positions))  # [B, K, D]
        *first_blocks, last_block = self.encoder.blocks
        for block in first_blocks:
            h, g = two_stream_block(block, h, g, content_mask, query_mask)
        _, g = two_stream_block(last_block, h, g, None, query_mask)  # nobody reads the last content layer
        logits = self.head(self.encoder.norm(g[valid]))  # [S, V]
        return logits, targets

    def permutation_loss(self, input_ids, attention_mask, order, num_predict: int, token_type_ids=None) -> torch.Tensor:
        """Mean cross-entropy of the targets' tokens, predicted from the query stream (0 with no target)."""
        logits, targets = self(input_ids, attention_mask, order, num_predict, token_type_ids)
        if logits.shape[0] == 0:
            return logits.sum()
        return F.cross_entropy(logits.float(), input_ids[targets])
