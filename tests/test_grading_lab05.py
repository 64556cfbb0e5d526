"""Lab 5 (the family around BERT) graded as the instructor grades it: other correct answers earn full marks,
the classic mistakes earn nothing and are named, and a call into the reference implementation earns nothing.

Each exercise lists its variants; the n-th variants of all exercises share one graded submission (exercises
are graded independently), so the lab is graded as often as the longest list is long.
"""

from __future__ import annotations

import pytest
from submissions import FULL, REFERENCE, grading_tests

pytestmark = pytest.mark.notebook

LAB = "lab05_objectives"

SAMPLER = """
import torch


def sample_replacements(generator_logits, generator=None):
    {body}
"""

LABELS = """
import torch


def replaced_token_labels(original_ids, corrupted_ids, attention_mask):
    return {body}
"""

ELECTRA_LOSS = """
import torch
import torch.nn.functional as F


def electra_loss(generator_mlm_loss, discriminator_logits, labels, attention_mask, discriminator_weight=50.0):
    {body}
"""

CAUSAL_MASK = """
import torch


def causal_attention_mask(attention_mask):
    length = attention_mask.shape[1]
    real = attention_mask.bool()
    {body}
"""

NEXT_TOKEN = """
import torch
import torch.nn.functional as F


def next_token_loss(logits, input_ids, attention_mask):
    {body}
"""

EMBEDDING = """
import torch.nn.functional as F


def factorized_embedding(input_ids, token_table, projection):
    {body}
"""

COUNT = """
from torch import nn


def factorized_embedding_parameters(vocab_size, embedding_size, hidden_size):
    {body}
"""

SHARED = """
import copy
import functools


def shared_layer_forward(block, hidden, num_layers, attention_mask=None):
    {body}
"""

PERMUTATION = """
import torch


def permutation_attention_masks(order, num_predict, attention_mask):
    batch, length = order.shape
    rank = order.argsort(dim=1)
    count = attention_mask.sum(1, keepdim=True)
    {body}
"""
LOOPS = """content = torch.zeros(batch, length, length, dtype=torch.bool)
    query = torch.zeros(batch, length, length, dtype=torch.bool)
    targets = torch.zeros(batch, length, dtype=torch.bool)
    for b in range(batch):
        n = int(count[b])
        for i in range(length):
            if i >= n:
                content[b, i, i] = True
                query[b, i] = True
                continue
            targets[b, i] = int(rank[b, i]) >= max(n - num_predict, 1)
            for j in range(n):
                content[b, i, j] = {content_rule}
                query[b, i, j] = {query_rule} if targets[b, i] else True
    return content, query, targets"""

# exercise -> {variant: (what it earns: FULL, or 0 points with this in the feedback line, solution cell)}
VARIANTS = {
    "sample_replacements": {
        "Gumbel-max with the generator's uniforms": (
            FULL,
            SAMPLER.format(
                body="uniform = torch.rand(generator_logits.shape, generator=generator, dtype=torch.float64)\n"
                "    return (generator_logits.detach().double() - torch.log(-torch.log(uniform))).argmax(-1)"
            ),
        ),
        "the argmax": ("you took the argmax", SAMPLER.format(body="return generator_logits.argmax(-1)")),
        "the logits used as probabilities": (
            "as if they were probabilities",
            SAMPLER.format(
                body="return torch.multinomial(generator_logits.detach(), 1, generator=generator).squeeze(1)"
            ),
        ),
        "a generator of its own, seeded once": (
            "two different generators gave the same draws",
            SAMPLER.format(
                body="own = torch.Generator().manual_seed(0)\n"
                "    return torch.multinomial(generator_logits.detach().softmax(-1), 1, generator=own).squeeze(1)"
            ),
        ),
        "the generator ignored": (
            "the same generator seed must give the same samples",
            SAMPLER.format(body="return torch.multinomial(generator_logits.detach().softmax(-1), 1).squeeze(1)"),
        ),
        "the reference electra.sample_replacements": (
            REFERENCE,
            "from course_utils.models.electra import sample_replacements\n",
        ),
    },
    "replaced_token_labels": {
        "a long tensor through torch.where": (
            FULL,
            LABELS.format(body="torch.where(attention_mask.bool(), (original_ids != corrupted_ids).long(), 0)"),
        ),
        "flipped: 1 = original": (
            "your labels are flipped",
            LABELS.format(body="((corrupted_ids == original_ids) & attention_mask.bool()).float()"),
        ),
        "padding not masked": (
            "a padding position is labelled replaced",
            LABELS.format(body="(corrupted_ids != original_ids).float()"),
        ),
        "a bool tensor": (FULL, LABELS.format(body="(corrupted_ids != original_ids) & (attention_mask == 1)")),
        "the reference electra.replaced_token_labels": (
            REFERENCE,
            "from course_utils.models.electra import replaced_token_labels\n",
        ),
    },
    "electra_loss": {
        "a stable BCE by hand, averaged over real tokens": (
            FULL,
            ELECTRA_LOSS.format(
                body="real = attention_mask.to(discriminator_logits.dtype)\n"
                "    per_token = F.softplus(discriminator_logits) - "
                "labels.to(discriminator_logits.dtype) * discriminator_logits\n"
                "    return generator_mlm_loss + discriminator_weight * (per_token * real).sum() / real.sum()"
            ),
        ),
        "no lambda": (
            "lambda is missing",
            ELECTRA_LOSS.format(
                body="real = attention_mask.bool()\n"
                "    return generator_mlm_loss + "
                "F.binary_cross_entropy_with_logits(discriminator_logits[real], labels[real].float())"
            ),
        ),
        "padding in the BCE": (
            "averaged over padding too",
            ELECTRA_LOSS.format(
                body="return generator_mlm_loss + discriminator_weight * "
                "F.binary_cross_entropy_with_logits(discriminator_logits, labels.float())"
            ),
        ),
        "the generator's loss detached": (
            "no gradient reaches generator_mlm_loss",
            ELECTRA_LOSS.format(
                body="real = attention_mask.bool()\n"
                "    bce = F.binary_cross_entropy_with_logits(discriminator_logits[real], labels[real].float())\n"
                "    return generator_mlm_loss.detach() + discriminator_weight * bce"
            ),
        ),
        "weighted BCE with reduction='sum'": (
            FULL,
            ELECTRA_LOSS.format(
                body="weight = attention_mask.float()\n"
                "    bce = F.binary_cross_entropy_with_logits(discriminator_logits, labels.float(), "
                "weight=weight, reduction='sum')\n"
                "    return generator_mlm_loss + discriminator_weight * bce / weight.sum()"
            ),
        ),
        "the reference electra.electra_loss": (REFERENCE, "from course_utils.models.electra import electra_loss\n"),
    },
    "causal_attention_mask": {
        "padded query rows all True": (
            FULL,
            CAUSAL_MASK.format(
                body="lower = torch.ones(length, length, dtype=torch.bool).tril()\n"
                "    return (lower & real[:, None, :]) | ~real[:, :, None]"
            ),
        ),
        "the upper triangle": (
            "a token can attend to a later token",
            CAUSAL_MASK.format(
                body="upper = torch.ones(length, length, dtype=torch.bool).triu()\n"
                "    return (upper & real[:, None, :]) | torch.eye(length, dtype=torch.bool)"
            ),
        ),
        "the lower triangle alone (right padding lies after every real query)": (
            FULL,
            CAUSAL_MASK.format(
                body="return torch.ones(length, length, dtype=torch.bool).tril().expand(len(real), length, length)"
            ),
        ),
        "padded query rows all False": (
            "is all False",
            CAUSAL_MASK.format(
                body="lower = torch.ones(length, length, dtype=torch.bool).tril()\n"
                "    return lower & real[:, None, :] & real[:, :, None]"
            ),
        ),
        "loops over queries and keys": (
            FULL,
            CAUSAL_MASK.format(
                body="mask = torch.zeros(len(real), length, length, dtype=torch.bool)\n"
                "    for b in range(len(real)):\n"
                "        for i in range(length):\n"
                "            for j in range(length):\n"
                "                mask[b, i, j] = bool(j <= i and real[b, i] and real[b, j]) or i == j\n"
                "    return mask"
            ),
        ),
        "the reference causal_lm.causal_attention_mask": (
            REFERENCE,
            "from course_utils.models.causal_lm import causal_attention_mask\n",
        ),
    },
    "next_token_loss": {
        "log-softmax and gather, a masked mean": (
            FULL,
            NEXT_TOKEN.format(
                body="log_probabilities = logits[:, :-1].log_softmax(-1)\n"
                "    picked = log_probabilities.gather(-1, input_ids[:, 1:, None])[..., 0]\n"
                "    real = attention_mask[:, 1:].to(picked.dtype)\n"
                "    return -(picked * real).sum() / real.sum()"
            ),
        ),
        "no shift": (
            "from its own position",
            NEXT_TOKEN.format(
                body="real = attention_mask.bool()\n    return F.cross_entropy(logits[real], input_ids[real])"
            ),
        ),
        "token id 0 taken for padding": (
            "you took token id 0 for padding",
            NEXT_TOKEN.format(
                body="real = input_ids[:, 1:] != 0\n"
                "    return F.cross_entropy(logits[:, :-1][real], input_ids[:, 1:][real])"
            ),
        ),
        "padding as a target": (
            "padding counts as a target",
            NEXT_TOKEN.format(
                body="return F.cross_entropy(logits[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())"
            ),
        ),
        "-100 targets, classes on dimension 1": (
            FULL,
            NEXT_TOKEN.format(
                body="targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)\n"
                "    return F.cross_entropy(logits[:, :-1].transpose(1, 2), targets)"
            ),
        ),
        "the reference causal_lm.next_token_loss": (
            REFERENCE,
            "from course_utils.models.causal_lm import next_token_loss\n",
        ),
    },
    "factorized_embedding": {
        "F.linear on the table's rows": (
            FULL,
            EMBEDDING.format(body="return F.linear(token_table.weight[input_ids], projection.weight, projection.bias)"),
        ),
        "no projection": ("your output has width E", EMBEDDING.format(body="return token_table(input_ids)")),
        "the reference FactorizedEmbedding.forward": (
            REFERENCE,
            EMBEDDING.format(
                body="from course_utils.models.albert import FactorizedEmbedding\n\n"
                "    holder = type('Holder', (), {'token': token_table, 'projection': projection})()\n"
                "    return FactorizedEmbedding.forward(holder, input_ids)"
            ),
        ),
    },
    "factorized_embedding_parameters": {
        "counted on real modules": (
            FULL,
            COUNT.format(
                body="modules = (nn.Embedding(vocab_size, embedding_size), nn.Linear(embedding_size, hidden_size))\n"
                "    return sum(p.numel() for module in modules for p in module.parameters())"
            ),
        ),
        "V x H": ("V x H is BERT's unfactorized table", COUNT.format(body="return vocab_size * hidden_size")),
        "no bias": (
            "the projection's bias",
            COUNT.format(body="return vocab_size * embedding_size + embedding_size * hidden_size"),
        ),
        "the reference albert.factorized_embedding_parameters": (
            REFERENCE,
            "from course_utils.models.albert import factorized_embedding_parameters\n",
        ),
    },
    "shared_layer_forward": {
        "functools.reduce": (
            FULL,
            SHARED.format(
                body="return functools.reduce(lambda h, _: block(h, attention_mask), range(num_layers), hidden)"
            ),
        ),
        "applied once": ("you applied the block once", SHARED.format(body="return block(hidden, attention_mask)")),
        "a deep copy per layer": (
            "you copied it",
            SHARED.format(
                body="for layer in [copy.deepcopy(block) for _ in range(num_layers)]:\n"
                "        hidden = layer(hidden, attention_mask)\n"
                "    return hidden"
            ),
        ),
        "the reference TransformerEncoder.forward": (
            REFERENCE,
            SHARED.format(
                body="from torch import nn\n"
                "    from course_utils.models.transformer import TransformerEncoder\n\n"
                "    encoder = TransformerEncoder(8, 1, 2)\n"
                "    encoder.blocks, encoder.norm = nn.ModuleList([block] * num_layers), nn.Identity()\n"
                "    return encoder(hidden, attention_mask)"
            ),
        ),
    },
    "permutation_attention_masks": {
        "loops, with other choices on the rows nobody reads": (
            FULL,
            PERMUTATION.format(
                body=LOOPS.format(content_rule="rank[b, j] <= rank[b, i]", query_rule="rank[b, j] < rank[b, i]")
            ),
        ),
        "positions instead of ranks": (
            "follows positions in the sentence",
            PERMUTATION.format(body=LOOPS.format(content_rule="j <= i", query_rule="rank[b, j] < rank[b, i]")),
        ),
        "a target's query sees itself": (
            "sees its own token",
            PERMUTATION.format(
                body=LOOPS.format(content_rule="rank[b, j] <= rank[b, i]", query_rule="rank[b, j] <= rank[b, i]")
            ),
        ),
        "the first K of the order": (
            "you picked the first ones",
            PERMUTATION.format(
                body=LOOPS.format(
                    content_rule="rank[b, j] <= rank[b, i]", query_rule="rank[b, j] < rank[b, i]"
                ).replace("int(rank[b, i]) >= max(n - num_predict, 1)", "int(rank[b, i]) < num_predict")
            ),
        ),
        "the reference permutation_lm.permutation_attention_masks": (
            REFERENCE,
            "from course_utils.models.permutation_lm import permutation_attention_masks\n",
        ),
    },
}


(
    graded,
    test_a_correct_alternative_earns_full_marks,
    test_a_classic_mistake_earns_zero_and_is_named,
    test_calling_the_reference_implementation_earns_zero,
) = grading_tests(LAB, VARIANTS)
