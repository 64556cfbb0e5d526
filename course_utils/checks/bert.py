"""Checks for Lab 2 (BERT): each compares an exercise with the reference and names the likely mistake.

A wrong answer is first compared with the classic wrong variants (no ``1/sqrt(d)``,
masking queries instead of keys, ...); a match names that misconception.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks import expect, expect_close, expect_input_untouched, expect_tensor, gradients, passed
from course_utils.masking import IGNORE_INDEX
from course_utils.models.bert import BertConfig, BertEmbeddings, MaskedLMHead
from course_utils.models.transformer import MultiHeadSelfAttention, key_padding_mask


def _same(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4, equal_nan=False)


def _first_match(actual: torch.Tensor, variants: dict[str, torch.Tensor]) -> None:
    """Raise the misconception whose wrong variant ``actual`` reproduces, if any."""
    for misconception, wrong in variants.items():
        expect(not _same(actual, wrong), misconception)


# ----- Exercise 1: scaled dot-product attention with a padding mask --------------------------


def _attention_variants(q, k, v, attention_mask) -> dict[str, torch.Tensor]:
    scale = 1 / math.sqrt(q.shape[-1])
    keys = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L]
    queries = attention_mask.bool()[:, None, :, None]  # [B, 1, L, 1]
    scores = q @ k.transpose(-2, -1)  # [B, H, L, L]
    inf = float("-inf")
    return {
        "you forgot the 1/sqrt(d) scale: divide the scores q @ k^T by sqrt(head_dim) before the softmax": (
            scores.masked_fill(~keys, inf).softmax(-1) @ v
        ),
        "padding keys still get attention: the mask must hide the *columns* (keys), not the rows (queries)": (
            scores * scale
        )
        .masked_fill(~queries, inf)
        .softmax(-1)
        .nan_to_num(0.0)
        @ v,
        "the padding mask is not applied: padded keys still get attention": (scores * scale).softmax(-1) @ v,
        "softmax over the wrong axis: normalise over the keys (dim=-1), so each query's weights sum to 1": (
            scores * scale
        )
        .masked_fill(~keys, inf)
        .softmax(-2)
        .nan_to_num(0.0)
        @ v,
        "you filled masked scores with 0, which still leaves exp(0) = 1 of weight: fill with -inf (float('-inf'))": (
            scores * scale
        )
        .masked_fill(~keys, 0.0)
        .softmax(-1)
        @ v,
    }


def check_attention(attention) -> None:
    """``attention(q, k, v, attention_mask) -> [B, H, L, D/H]`` matches ``F.scaled_dot_product_attention``."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=generator) for _ in range(3))
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])

    out = expect_input_untouched(attention, q, k, v, None)
    expect_tensor(out, "attention(q, k, v, None)", shape=q.shape)
    _first_match(
        out, {m: w for m, w in _attention_variants(q, k, v, torch.ones(2, 6)).items() if "1/sqrt" in m or "axis" in m}
    )
    expect_close(
        out,
        F.scaled_dot_product_attention(q, k, v),
        "without a mask your attention differs from softmax(q k^T / sqrt(d)) v",
    )
    passed("unmasked attention matches F.scaled_dot_product_attention")

    out = expect_input_untouched(attention, q, k, v, attention_mask)
    expect_tensor(out, "attention(q, k, v, attention_mask)", shape=q.shape)
    expect(
        not torch.isnan(out).any(),
        "NaN in the output: a softmax row had only -inf scores; mask the keys (last axis), never whole query rows",
    )
    _first_match(out, _attention_variants(q, k, v, attention_mask))
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=key_padding_mask(attention_mask))
    expect_close(out, reference, "with a padding mask your attention differs from F.scaled_dot_product_attention")
    passed("masked attention matches F.scaled_dot_product_attention; padded keys get zero weight")


# ----- Exercise 2: multi-head self-attention --------------------------------------------------


def check_multi_head_self_attention(multi_head_self_attention) -> None:
    """``multi_head_self_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads, attention_mask)``."""
    torch.manual_seed(0)
    reference = MultiHeadSelfAttention(dim=16, num_heads=4).eval()
    x = torch.randn(2, 5, 16)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    weights = (reference.qkv.weight, reference.qkv.bias, reference.proj.weight, reference.proj.bias)

    with torch.no_grad():
        out = expect_input_untouched(multi_head_self_attention, x, *weights, 4, attention_mask)
        expect_tensor(out, "multi_head_self_attention(...)", shape=x.shape)
        expected = reference(x, attention_mask)
        one_head = MultiHeadSelfAttention(dim=16, num_heads=1).eval()
        one_head.load_state_dict(reference.state_dict())
        before_projection = F.linear(expected, torch.linalg.pinv(reference.proj.weight.double()).float()) - F.linear(
            reference.proj.bias, torch.linalg.pinv(reference.proj.weight.double()).float()
        )
        _first_match(
            out,
            {
                "you forgot the output projection (proj_weight, proj_bias) after merging the heads": before_projection,
                "the padding mask is not passed to attention: padded keys still get attention": reference(x),
                "all heads act as one: split D into num_heads heads of size D/num_heads before attention": one_head(
                    x, attention_mask
                ),
            },
        )
        expect_close(
            out,
            expected,
            "heads split or merged in the wrong order",
            hint="qkv -> view(B, L, 3, H, D/H) -> permute(2, 0, 3, 1, 4); merge with transpose(1, 2).flatten(2)",
        )
    passed("matches course_utils MultiHeadSelfAttention with the same weights, padding mask included")


# ----- Exercise 3: the embeddings sum ---------------------------------------------------------


def _embedding_parts(seed: int = 0):
    torch.manual_seed(seed)
    embeddings = BertEmbeddings(BertConfig(vocab_size=30, hidden_size=12, max_position_embeddings=10, dropout=0.0))
    with torch.no_grad():
        embeddings.norm.weight.uniform_(0.5, 1.5)
        embeddings.norm.bias.normal_()
    return embeddings


def check_bert_embeddings(bert_embeddings) -> None:
    """``bert_embeddings(input_ids, token_type_ids, token, position, segment, norm, dropout) -> [B, L, D]``."""
    embeddings = _embedding_parts()
    parts = (embeddings.token, embeddings.position, embeddings.segment, embeddings.norm)
    input_ids = torch.tensor([[2, 7, 8, 3, 9, 3], [2, 11, 3, 12, 3, 0]])
    token_type_ids = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]])
    positions = torch.arange(6)
    token, position, segment = (
        embeddings.token(input_ids),
        embeddings.position(positions),
        embeddings.segment(token_type_ids),
    )
    norm = embeddings.norm

    with torch.no_grad():
        out = expect_input_untouched(bert_embeddings, input_ids, token_type_ids, *parts, nn.Dropout(0.0))
        expect_tensor(out, "bert_embeddings(...)", shape=(2, 6, 12))
        _first_match(
            out,
            {
                "you left out the segment (token type) embedding": norm(token + position),
                "you left out the position embedding: without it attention cannot tell word order": norm(
                    token + segment
                ),
                "you forgot the LayerNorm after the sum": token + position + segment,
                "normalise the *sum*, not each embedding separately": norm(token) + norm(position) + norm(segment),
            },
        )
        expect_close(
            out, norm(token + position + segment), "your embeddings differ from LayerNorm(token + position + segment)"
        )
    passed("LayerNorm(token + position + segment) for a batch with two segments")

    dropout = nn.Dropout(0.5).train()
    with torch.no_grad():
        torch.manual_seed(1)
        out = bert_embeddings(input_ids, token_type_ids, *parts, dropout)
        torch.manual_seed(1)
        expected = dropout(norm(token + position + segment))
        torch.manual_seed(1)
        dropout_first = norm(dropout(token + position + segment))
    expect(not _same(out, dropout_first), "dropout comes last, after the LayerNorm")
    expect(not _same(out, norm(token + position + segment)), "you never applied the dropout module")
    expect_close(out, expected, "with dropout active your result differs from dropout(LayerNorm(sum))")
    passed("dropout is applied last")


# ----- Exercise 4: the MLM loss on selected positions only ------------------------------------


def check_masked_lm_loss(masked_lm_loss) -> None:
    """``masked_lm_loss(logits [B, L, V], labels [B, L]) -> scalar`` over the positions whose label is not -100."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=generator)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 3], labels[1, 4] = 4, 0, 6  # token id 0 is a legitimate target

    loss = expect_input_untouched(masked_lm_loss, logits, labels)
    expect_tensor(loss, "masked_lm_loss(...)", shape=())
    selected = labels != IGNORE_INDEX
    per_position = F.cross_entropy(logits[selected], labels[selected], reduction="none")
    _first_match(
        loss,
        {
            "you averaged over all B*L positions: divide by the number of selected positions only": per_position.sum()
            / labels.numel(),
            "you summed the losses: take the mean over the selected positions": per_position.sum(),
            "label 0 is a real token; only -100 marks a position without a target": per_position[
                labels[selected] != 0
            ].mean(),
        },
    )
    expect_close(loss, per_position.mean(), "your loss differs from the mean cross-entropy over the selected positions")
    passed("mean cross-entropy over the 3 selected positions of a [2, 5, 7] batch")


# ----- Exercise 5: the tied MLM head ----------------------------------------------------------


def check_mlm_head(mlm_head) -> None:
    """``mlm_head(hidden, dense, norm, token_embedding_weight, bias) -> [..., V]`` with the tied decoder."""
    torch.manual_seed(0)
    head = MaskedLMHead(BertConfig(vocab_size=11, hidden_size=8))
    embedding = nn.Embedding(11, 8)
    with torch.no_grad():
        head.decoder.bias.normal_()
        head.norm.weight.uniform_(0.5, 1.5)
    head.decoder.weight = embedding.weight
    hidden = torch.randn(2, 3, 8)
    arguments = (hidden, head.dense, head.norm, embedding.weight, head.decoder.bias)

    logits = expect_input_untouched(mlm_head, *arguments)
    expect_tensor(logits, "mlm_head(...)", shape=(2, 3, 11))
    with torch.no_grad():
        dense = head.dense(hidden)
        _first_match(
            logits,
            {
                "you forgot the GELU between the dense layer and the LayerNorm": F.linear(
                    head.norm(dense), embedding.weight, head.decoder.bias
                ),
                "you forgot the LayerNorm before the vocabulary projection": F.linear(
                    F.gelu(dense), embedding.weight, head.decoder.bias
                ),
                "the order is dense -> GELU -> LayerNorm, not LayerNorm before GELU": F.linear(
                    F.gelu(head.norm(dense)), embedding.weight, head.decoder.bias
                ),
                "you forgot the head's own bias": F.linear(head.norm(F.gelu(dense)), embedding.weight),
            },
        )
        expect_close(logits, head(hidden), "your logits differ from LayerNorm(GELU(dense(h))) @ E^T + bias")
    passed("dense -> GELU -> LayerNorm -> tied decoder with its own bias")

    _, (embedding_grad,) = gradients(mlm_head, *arguments, wrt=[embedding.weight])
    expect(
        embedding_grad is not None and embedding_grad.abs().sum() > 0,
        "no gradient reached the token embedding: multiply by token_embedding_weight itself (not a copy or .detach())",
    )
    passed("the gradient flows into the tied token-embedding matrix")


# The reference code each exercise must not call: the grader ends a call into any of these with 0 points
# (course_utils.grading.worker). References of other exercises and earlier labs stay allowed, and so does
# F.scaled_dot_product_attention in multi_head_self_attention, which the lab allows there.
SDPA = ("torch._C._nn:scaled_dot_product_attention", "torch:_native_multi_head_attention")
REFERENCES = {
    "attention": (*SDPA, "course_utils.models.transformer:MultiHeadSelfAttention.attention_probs"),
    "multi_head_self_attention": (
        "torch:_native_multi_head_attention",
        "course_utils.models.transformer:MultiHeadSelfAttention.forward",
    ),
    "bert_embeddings": ("course_utils.models.bert:BertEmbeddings.forward",),
    "masked_lm_loss": ("course_utils.models.bert:BertForMaskedLM.mlm_loss",),
    "mlm_head": ("course_utils.models.bert:MaskedLMHead.forward",),
}
