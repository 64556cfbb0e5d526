"""Lab 2 (BERT) graded as the instructor grades it: other correct answers earn full marks, the classic mistakes
earn nothing and are named, and a call into the reference implementation earns nothing.

Each exercise lists its variants; the n-th variants of all exercises share one graded submission (exercises
are graded independently), so the lab is graded as often as the longest list is long.
"""

from __future__ import annotations

import pytest
from submissions import FULL, REFERENCE, grading_tests

pytestmark = pytest.mark.notebook

LAB = "lab02_bert"

# exercise -> {variant: (what it earns: FULL, or 0 points with this in the feedback line, solution cell)}
VARIANTS = {
    "attention": {
        "an additive large-negative mask, via einsum": (
            FULL,
            """
def attention(q, k, v, attention_mask=None):
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / q.shape[-1] ** 0.5
    if attention_mask is not None:
        scores = scores + (1.0 - attention_mask.float())[:, None, None, :] * -1e9
    return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v)
""",
        ),
        "no 1/sqrt(d) scale": (
            "1/sqrt(d) scale",
            """
def attention(q, k, v, attention_mask=None):
    scores = q @ k.transpose(-2, -1)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1) @ v
""",
        ),
        "masking the queries instead of the keys": (
            "never whole query rows",
            """
import math

def attention(q, k, v, attention_mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask.bool()[:, None, :, None], float("-inf"))
    return scores.softmax(dim=-1) @ v
""",
        ),
        "F.scaled_dot_product_attention": (
            REFERENCE,
            """
def attention(q, k, v, attention_mask=None):
    mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
""",
        ),
    },
    "multi_head_self_attention": {
        "q, k, v by chunk, heads by reshape, the student's attention": (
            FULL,
            """
def multi_head_self_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads, attention_mask=None):
    B, L, D = x.shape
    qkv = (x @ qkv_weight.T + qkv_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(B, L, num_heads, D // num_heads).transpose(1, 2) for t in qkv)
    heads = attention(q, k, v, attention_mask)
    return heads.transpose(1, 2).reshape(B, L, D) @ proj_weight.T + proj_bias
""",
        ),
        "F.scaled_dot_product_attention, which the lab allows here": (
            FULL,
            """
def multi_head_self_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads, attention_mask=None):
    B, L, D = x.shape
    q, k, v = F.linear(x, qkv_weight, qkv_bias).view(B, L, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)
    mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(heads.transpose(1, 2).flatten(2), proj_weight, proj_bias)
""",
        ),
        "heads split by a reshape to [B, H, L, D/H] without a transpose": (
            "heads split or merged in the wrong order",
            """
def multi_head_self_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads, attention_mask=None):
    B, L, D = x.shape
    q, k, v = (t.reshape(B, num_heads, L, D // num_heads) for t in F.linear(x, qkv_weight, qkv_bias).chunk(3, dim=-1))
    mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(heads.transpose(1, 2).flatten(2), proj_weight, proj_bias)
""",
        ),
        "MultiHeadSelfAttention loaded with the weights": (
            REFERENCE,
            """
from course_utils.models.transformer import MultiHeadSelfAttention

def multi_head_self_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads, attention_mask=None):
    module = MultiHeadSelfAttention(x.shape[-1], num_heads)
    weights = {"qkv.weight": qkv_weight, "qkv.bias": qkv_bias, "proj.weight": proj_weight, "proj.bias": proj_bias}
    module.load_state_dict(weights)
    return module(x, attention_mask)
""",
        ),
    },
    "bert_embeddings": {
        "positions as the table's first L rows, summed in another order": (
            FULL,
            """
def bert_embeddings(input_ids, token_type_ids, token_embedding, position_embedding, segment_embedding, norm, dropout):
    positions = position_embedding.weight[: input_ids.shape[1]]  # rows 0 .. L-1, broadcast over the batch
    return dropout(norm(segment_embedding(token_type_ids) + positions + token_embedding(input_ids)))
""",
        ),
        "dropout before the LayerNorm": (
            "dropout comes last",
            """
def bert_embeddings(input_ids, token_type_ids, token_embedding, position_embedding, segment_embedding, norm, dropout):
    positions = torch.arange(input_ids.shape[1])
    return norm(dropout(token_embedding(input_ids) + position_embedding(positions) + segment_embedding(token_type_ids)))
""",
        ),
        "no position embedding": (
            "you left out the position embedding",
            """
def bert_embeddings(input_ids, token_type_ids, token_embedding, position_embedding, segment_embedding, norm, dropout):
    return dropout(norm(token_embedding(input_ids) + segment_embedding(token_type_ids)))
""",
        ),
        "BertEmbeddings.forward run on the given parts": (
            REFERENCE,
            """
from types import SimpleNamespace

from course_utils.models.bert import BertEmbeddings

def bert_embeddings(input_ids, token_type_ids, token_embedding, position_embedding, segment_embedding, norm, dropout):
    parts = SimpleNamespace(token=token_embedding, position=position_embedding, segment=segment_embedding, norm=norm,
                            dropout=dropout)
    return BertEmbeddings.forward(parts, input_ids, token_type_ids)
""",
        ),
    },
    "masked_lm_loss": {
        "summed cross-entropy divided by the number of selected positions": (
            FULL,
            """
def masked_lm_loss(logits, labels):
    selected = labels != -100
    return F.cross_entropy(logits[selected], labels[selected], reduction="sum") / selected.sum()
""",
        ),
        "cross-entropy over every position with ignore_index=-100": (
            FULL,
            """
def masked_lm_loss(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
""",
        ),
        "averaged over all B*L positions": (
            "you averaged over all B*L positions",
            """
def masked_lm_loss(logits, labels):
    selected = labels != -100
    return F.cross_entropy(logits[selected], labels[selected], reduction="sum") / labels.numel()
""",
        ),
        "label 0 taken for 'no target'": (
            "label 0 is a real token",
            """
def masked_lm_loss(logits, labels):
    selected = labels > 0
    return F.cross_entropy(logits[selected], labels[selected])
""",
        ),
    },
    "mlm_head": {
        "matmul with the transposed embedding, functional GELU and LayerNorm": (
            FULL,
            """
def mlm_head(hidden, dense, norm, token_embedding_weight, bias):
    h = F.gelu(hidden @ dense.weight.T + dense.bias)
    h = F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return h @ token_embedding_weight.T + bias
""",
        ),
        "no GELU": (
            "you forgot the GELU",
            """
def mlm_head(hidden, dense, norm, token_embedding_weight, bias):
    return F.linear(norm(dense(hidden)), token_embedding_weight, bias)
""",
        ),
        "a detached embedding weight": (
            "no gradient reached the token embedding",
            """
def mlm_head(hidden, dense, norm, token_embedding_weight, bias):
    return F.linear(norm(F.gelu(dense(hidden))), token_embedding_weight.detach(), bias)
""",
        ),
        "MaskedLMHead.forward with the tied decoder": (
            REFERENCE,
            """
from types import SimpleNamespace

from course_utils.models.bert import MaskedLMHead

def mlm_head(hidden, dense, norm, token_embedding_weight, bias):
    parts = SimpleNamespace(dense=dense, norm=norm, decoder=lambda h: F.linear(h, token_embedding_weight, bias))
    return MaskedLMHead.forward(parts, hidden)
""",
        ),
    },
}


(
    graded,
    test_a_correct_alternative_earns_full_marks,
    test_a_classic_mistake_earns_zero_and_is_named,
    test_calling_the_reference_implementation_earns_zero,
) = grading_tests(LAB, VARIANTS)
