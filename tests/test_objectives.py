"""Lab 5's objectives: ELECTRA, causal LM, ALBERT, permutation LM and the comparison driver (FLOPs: test_flops.py).

Each loss and mask is checked against a slow loop over positions on tiny inputs. Randomized
functions are checked statistically: each test states its bound, chosen so that a correct
implementation fails with probability below 1e-6.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import FALSE_FAILURE, binomial_range
from course_utils.experiments.core import FineTuning
from course_utils.experiments.objective_comparison import (
    FACT_CHECK_HELD_OUT_CAPITAL_TEMPLATES,
    FACT_CHECK_HELD_OUT_LANGUAGE_TEMPLATES,
    PAIR_METRICS,
    agreement_pairs,
    answer_ranks,
    auc,
    build_model,
    candidate_scores,
    capital_candidates,
    chance_floor,
    compare_objectives,
    comparison_config,
    fact_check_metric,
    fact_check_task,
    phrasing_prior,
    probe_batch,
    probe_metrics,
    reading,
    sentence_scores,
)
from course_utils.masking import IGNORE_INDEX, SEP_ID, STRUCTURAL_IDS, eligible_positions, mask_tokens
from course_utils.models.albert import (
    AlbertConfig,
    AlbertForMaskedLM,
    FactorizedEmbedding,
    SharedLayerEncoder,
    albert_parameter_count,
    bert_parameter_count,
    factorized_embedding_parameters,
)
from course_utils.models.bert import BertConfig, BertForMaskedLM
from course_utils.models.causal_lm import CausalLM, causal_attention_mask, next_token_loss, sequence_log_likelihood
from course_utils.models.electra import (
    ElectraForPretraining,
    electra_loss,
    generator_config,
    replaced_token_labels,
    sample_replacements,
)
from course_utils.models.flops import OBJECTIVES
from course_utils.models.permutation_lm import (
    PermutationLM,
    order_ranks,
    permutation_attention_masks,
    sample_factorization_order,
    two_stream_block,
)
from course_utils.models.transformer import TransformerBlock
from course_utils.text import (
    CAPITAL_TEMPLATES,
    COUNTRIES,
    LANGUAGE_TEMPLATES,
    CorpusShares,
    FactProbe,
    make_corpus,
    train_tokenizer,
)

V = 40
SPECIALS = (0, 1, 2, 3, 4)
SMALL = dict(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, max_position_embeddings=12)


def small_config(**overrides) -> BertConfig:
    return BertConfig(**(SMALL | dict(dropout=0.0) | overrides))


def padded_batch(seed: int = 0):
    """Three rows of 8 tokens: full, 6 real, 3 real ([CLS] ... [SEP] then [PAD])."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, V, (3, 8), generator=generator)
    attention_mask = torch.ones(3, 8, dtype=torch.long)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    input_ids[:, 0] = 2
    input_ids[attention_mask == 0] = 0
    return input_ids, attention_mask


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial norms and biases, so that a missing piece shows in the outputs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


# --------------------------------------------------------------------------- ELECTRA


def test_replaced_token_labels_match_a_loop_and_a_sample_equal_to_the_original_counts_as_original():
    original, attention_mask = padded_batch()
    corrupted = original.clone()
    corrupted[0, 1] = (original[0, 1] + 1) % V  # replaced
    corrupted[0, 2] = original[0, 2]  # "sampled" the original token: not replaced
    corrupted[1, 4] = (original[1, 4] + 3) % V
    corrupted[2, 6] = 7  # a padding position that differs: never a positive label
    labels = replaced_token_labels(original, corrupted, attention_mask)
    expected = torch.zeros(3, 8)
    for b in range(3):
        for t in range(8):
            expected[b, t] = float(attention_mask[b, t] == 1 and corrupted[b, t] != original[b, t])
    assert labels.dtype == torch.float32
    assert torch.equal(labels, expected)
    assert labels[0, 2] == 0 and labels[2, 6] == 0


def test_sampling_passes_no_gradient_to_the_generator():
    config = small_config()
    model = ElectraForPretraining(config)
    input_ids, attention_mask = padded_batch()
    masked_ids, labels = mask_tokens(
        input_ids,
        mask_token_id=4,
        vocab_size=V,
        special_token_ids=SPECIALS,
        mlm_probability=0.5,
        generator=torch.Generator().manual_seed(1),
    )
    selected = labels != IGNORE_INDEX
    logits = model.generator.selected_logits(masked_ids, selected, attention_mask)
    samples = sample_replacements(logits, torch.Generator().manual_seed(2))
    assert not samples.requires_grad and not samples.is_floating_point()
    corrupted = input_ids.clone()
    corrupted[selected] = samples
    discriminator_logits = model.discriminator(corrupted, attention_mask)
    replaced = replaced_token_labels(input_ids, corrupted, attention_mask)
    F.binary_cross_entropy_with_logits(discriminator_logits, replaced).backward()
    generator_only = [*model.generator.encoder.parameters(), *model.generator.embeddings.projection.parameters()]
    assert all(parameter.grad is None for parameter in generator_only), "the discriminator's loss reached the generator"
    assert model.discriminator.embeddings.token.weight.grad is not None


def reference_bce(logits, labels, attention_mask) -> torch.Tensor:
    terms = []
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if attention_mask[b, t]:
                p = torch.sigmoid(logits[b, t])
                terms.append(-(labels[b, t] * torch.log(p) + (1 - labels[b, t]) * torch.log(1 - p)))
    return torch.stack(terms).mean()


def test_electra_loss_is_mlm_plus_lambda_times_bce_over_real_tokens():
    _, attention_mask = padded_batch()
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 8, generator=generator)
    labels = (torch.rand(3, 8, generator=generator) < 0.3).float() * attention_mask
    mlm = torch.tensor(2.5)
    bce = reference_bce(logits, labels, attention_mask)
    assert torch.allclose(electra_loss(mlm, logits, labels, attention_mask), mlm + 50.0 * bce, atol=1e-5)
    assert torch.allclose(electra_loss(mlm, logits, labels, attention_mask, 1.0), mlm + bce, atol=1e-6)
    moved = logits.clone()
    moved[attention_mask == 0] += 100.0  # padding logits must not count
    assert torch.allclose(electra_loss(mlm, moved, labels, attention_mask), mlm + 50.0 * bce, atol=1e-5)


def test_sample_replacements_follows_the_softmax():
    # 20,000 draws over 6 tokens. Each token's count is Binomial(20000, p_k); the checks' exact binomial
    # range, FALSE_FAILURE per token, keeps the false-failure rate below 6 * FALSE_FAILURE over the 6 counts.
    # Taking the argmax would put every draw on token 0; ignoring the logits, 1/6 on each.
    probabilities = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.07, 0.03])
    draws = 20_000
    logits = probabilities.log().expand(draws, -1) + 3.0  # softmax is shift-invariant
    samples = sample_replacements(logits, torch.Generator().manual_seed(0))
    assert samples.shape == (draws,) and samples.dtype == torch.long
    counts = torch.bincount(samples, minlength=6)
    for token, p in enumerate(probabilities.tolist()):
        low, high = binomial_range(draws, p, alpha=FALSE_FAILURE)
        assert low <= counts[token] <= high, (token, int(counts[token]), draws * p)


def test_sample_replacements_draws_through_the_generator_passed_in():
    logits = torch.zeros(200, 10)
    torch.manual_seed(0)
    first = sample_replacements(logits, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    second = sample_replacements(logits, torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    again = sample_replacements(logits, torch.Generator().manual_seed(1))
    # 200 uniform draws over 10 tokens agree in every row with probability 10^-200
    assert not torch.equal(first, second), "different generators must give different draws"
    assert torch.equal(first, again), "the same generator seed must give the same draws, whatever the global state"
    assert sample_replacements(logits[:1], torch.Generator().manual_seed(0)).shape == (1,)


def test_electra_step_matches_a_reference_built_from_its_parts():
    config = small_config()
    model = perturbed(ElectraForPretraining(config, generator_width_fraction=0.5))
    input_ids, attention_mask = padded_batch()
    masked_ids, labels = mask_tokens(
        input_ids,
        mask_token_id=4,
        vocab_size=V,
        special_token_ids=SPECIALS,
        mlm_probability=0.4,
        generator=torch.Generator().manual_seed(5),
    )
    output = model(input_ids, masked_ids, labels, attention_mask, generator=torch.Generator().manual_seed(6))
    selected = labels != IGNORE_INDEX
    assert torch.equal(output.corrupted_ids[~selected], input_ids[~selected]), "only masked positions are resampled"
    assert torch.equal(output.replaced, replaced_token_labels(input_ids, output.corrupted_ids, attention_mask))
    with torch.no_grad():
        generator_logits = model.generator(masked_ids, attention_mask)  # full logits, every position
        mlm = F.cross_entropy(generator_logits[selected], labels[selected])
        bce = reference_bce(model.discriminator(output.corrupted_ids, attention_mask), output.replaced, attention_mask)
    assert torch.allclose(output.loss, mlm + 50.0 * bce, atol=1e-4)
    assert torch.allclose(output.discriminator_loss, bce, atol=1e-5)


def test_generator_is_a_narrow_bert_sharing_the_discriminators_embeddings():
    config = small_config(hidden_size=32, num_heads=4, intermediate_size=64)
    model = ElectraForPretraining(config)
    small = generator_config(config)
    assert (small.hidden_size, small.num_heads, small.intermediate_size, small.num_layers) == (8, 1, 16, 2)
    assert isinstance(model.generator, BertForMaskedLM)
    assert model.generator.embeddings.shared is model.discriminator.embeddings
    assert model.generator.head.decoder.weight is model.discriminator.embeddings.token.weight


# --------------------------------------------------------------------------- causal LM


def test_causal_mask_matches_a_loop_and_never_leaves_a_row_empty():
    _, attention_mask = padded_batch()
    mask = causal_attention_mask(attention_mask)
    assert mask.shape == (3, 8, 8) and mask.dtype == torch.bool
    for b in range(3):
        for i in range(8):
            for j in range(8):
                if attention_mask[b, i]:
                    assert mask[b, i, j] == bool(j <= i and attention_mask[b, j]), (b, i, j)
                else:
                    assert mask[b, i, j] == (i == j), (b, i, j)


def test_changing_a_later_token_leaves_earlier_logits_exactly_unchanged():
    model = perturbed(CausalLM(small_config()))
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        before = model(input_ids, attention_mask)
        for position in range(1, 6):
            changed = input_ids.clone()
            changed[:2, position] = (changed[:2, position] + 7) % V
            after = model(changed, attention_mask)
            assert torch.equal(after[:2, :position], before[:2, :position]), f"position {position} leaked backwards"
            assert not torch.allclose(after[:2, position], before[:2, position]), "the changed token must count"


def test_next_token_loss_matches_a_loop_over_positions():
    input_ids, attention_mask = padded_batch()
    logits = torch.randn(3, 8, V, generator=torch.Generator().manual_seed(4))
    terms = [
        -logits[b, t].log_softmax(-1)[input_ids[b, t + 1]]
        for b in range(3)
        for t in range(7)
        if attention_mask[b, t + 1]
    ]
    assert torch.allclose(next_token_loss(logits, input_ids, attention_mask), torch.stack(terms).mean(), atol=1e-6)
    model = perturbed(CausalLM(small_config()))
    with torch.no_grad():
        full = next_token_loss(model(input_ids, attention_mask), input_ids, attention_mask)
        assert torch.allclose(model.next_token_loss(input_ids, attention_mask), full, atol=1e-6)


def test_next_token_loss_takes_padding_from_the_mask_not_from_token_id_zero():
    input_ids, attention_mask = padded_batch()
    logits = torch.randn(3, 8, V, generator=torch.Generator().manual_seed(4))
    reference = next_token_loss(logits, input_ids, attention_mask)
    changed = input_ids.clone()
    changed[changed == 0] = 9  # padding with another id: the loss ignores it all the same
    assert torch.allclose(next_token_loss(logits, changed, attention_mask), reference)
    zero = input_ids.clone()
    zero[0, 3] = 0  # a real token with id 0 is predicted like any other
    expected = reference + (-logits[0, 2].log_softmax(-1)[0] + logits[0, 2].log_softmax(-1)[input_ids[0, 3]]) / int(
        attention_mask[:, 1:].sum()
    )
    assert torch.allclose(next_token_loss(logits, zero, attention_mask), expected, atol=1e-6)
    one_row = next_token_loss(logits[1:2], input_ids[1:2], attention_mask[1:2])
    terms = [-logits[1, t].log_softmax(-1)[input_ids[1, t + 1]] for t in range(5)]
    assert torch.allclose(one_row, torch.stack(terms).mean(), atol=1e-6)


def test_sequence_log_likelihood_sums_next_token_log_probabilities_over_real_tokens():
    model = perturbed(CausalLM(small_config()))
    input_ids, attention_mask = padded_batch()
    scores = sequence_log_likelihood(model, input_ids, attention_mask)
    with torch.no_grad():
        log_probs = model(input_ids, attention_mask).log_softmax(-1)
    for b in range(3):
        expected = sum(log_probs[b, t - 1, input_ids[b, t]] for t in range(1, 8) if attention_mask[b, t])
        assert torch.allclose(scores[b], expected, atol=1e-5)


# --------------------------------------------------------------------------- ALBERT


def albert_config(**overrides) -> AlbertConfig:
    return AlbertConfig(**(SMALL | dict(dropout=0.0, num_layers=3, embedding_size=6) | overrides))


def test_one_parameter_tensor_serves_all_layers():
    model = AlbertForMaskedLM(albert_config())
    blocks = model.encoder.blocks
    assert len(blocks) == 3
    for name, parameter in blocks[0].named_parameters():
        for block in blocks[1:]:
            assert dict(block.named_parameters())[name].data_ptr() == parameter.data_ptr(), name
    one_block = sum(p.numel() for p in TransformerBlock(16, 2, mlp_dim=24).parameters())
    assert sum(p.numel() for p in model.encoder.parameters()) == one_block


def test_shared_encoder_applies_the_same_block_depth_times():
    torch.manual_seed(0)
    encoder = SharedLayerEncoder(16, 4, 2, mlp_dim=24, norm_first=False).eval()
    x = torch.randn(2, 5, 16)
    expected = x
    for _ in range(4):
        expected = encoder.blocks[0](expected)
    assert torch.allclose(encoder(x), expected, atol=1e-6)


@pytest.mark.parametrize("overrides", [dict(), dict(embedding_size=16, num_layers=1, type_vocab_size=1)])
def test_parameter_counts_match_the_formulas(overrides):
    config = albert_config(**overrides)
    assert albert_parameter_count(config) == sum(p.numel() for p in AlbertForMaskedLM(config).parameters())
    bert = small_config(num_layers=config.num_layers, type_vocab_size=config.type_vocab_size)
    assert bert_parameter_count(bert) == sum(p.numel() for p in BertForMaskedLM(bert).parameters())
    embedding = FactorizedEmbedding(V, 6, 16)
    assert (
        factorized_embedding_parameters(V, 6, 16)
        == sum(p.numel() for p in embedding.parameters())
        == V * 6 + 6 * 16 + 16
    )


def test_factorized_embedding_is_a_lookup_then_a_projection():
    embedding = FactorizedEmbedding(V, 6, 16)
    ids, _ = padded_batch()
    expected = embedding.token.weight[ids] @ embedding.projection.weight.T + embedding.projection.bias
    assert torch.allclose(embedding(ids), expected, atol=1e-6)


def test_albert_base_sizes_give_the_papers_parameter_counts():
    # ALBERT paper, Table 1: BERT-base 108M, ALBERT-base 12M (V = 30,000, H = 768, E = 128, 12 layers).
    base = dict(
        vocab_size=30_000,
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    assert 107e6 < bert_parameter_count(BertConfig(**base)) < 111e6
    assert 11e6 < albert_parameter_count(AlbertConfig(**base, embedding_size=128)) < 13e6


def test_albert_fast_mlm_loss_equals_the_loss_of_its_full_logits():
    model = perturbed(AlbertForMaskedLM(albert_config()))
    input_ids, attention_mask = padded_batch()
    masked_ids, labels = mask_tokens(
        input_ids,
        mask_token_id=4,
        vocab_size=V,
        special_token_ids=SPECIALS,
        mlm_probability=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    selected = labels != IGNORE_INDEX
    with torch.no_grad():
        full = F.cross_entropy(model(masked_ids, attention_mask)[selected], labels[selected])
        assert torch.allclose(model.mlm_loss(masked_ids, labels, attention_mask), full, atol=1e-5)


# --------------------------------------------------------------------------- permutation LM


def test_sampled_orders_are_permutations_with_padding_last():
    _, attention_mask = padded_batch()
    order = sample_factorization_order(attention_mask, torch.Generator().manual_seed(0))
    assert torch.equal(order.sort(1).values, torch.arange(8).expand(3, 8))
    counts = attention_mask.sum(1)
    for b in range(3):
        assert set(order[b, : counts[b]].tolist()) == set(range(int(counts[b])))
        assert order[b, counts[b] :].tolist() == list(range(int(counts[b]), 8))


def test_every_real_position_leads_the_order_equally_often():
    # 6 real positions, 12,000 orders: each position comes first ~Binomial(12000, 1/6) times;
    # the checks' exact range, FALSE_FAILURE per position, keeps the false-failure rate below 6 * FALSE_FAILURE.
    draws = 12_000
    attention_mask = torch.ones(draws, 8, dtype=torch.long)
    attention_mask[:, 6:] = 0
    first = sample_factorization_order(attention_mask, torch.Generator().manual_seed(1))[:, 0]
    counts = torch.bincount(first, minlength=8)
    low, high = binomial_range(draws, 1 / 6, alpha=FALSE_FAILURE)
    assert all(low <= c <= high for c in counts[:6].tolist()), counts
    assert counts[6:].sum() == 0


def test_permutation_masks_match_a_loop_over_the_order():
    input_ids, attention_mask = padded_batch()
    order = sample_factorization_order(attention_mask, torch.Generator().manual_seed(2))
    content, query, targets = permutation_attention_masks(order, 2, attention_mask)
    rank = {(b, int(order[b, t])): t for b in range(3) for t in range(8)}
    for b in range(3):
        n = int(attention_mask[b].sum())
        for i in range(8):
            assert targets[b, i] == (i < 8 and attention_mask[b, i] == 1 and rank[b, i] >= max(n - 2, 1))
            for j in range(8):
                assert content[b, i, j] == (rank[b, j] <= rank[b, i]), (b, i, j)
                expected_query = rank[b, j] < rank[b, i] or (rank[b, i] == 0 and i == j)
                assert query[b, i, j] == expected_query, (b, i, j)
            if targets[b, i]:  # a target sees neither itself nor any token at or after it in the order
                assert not any(query[b, i, j] for j in range(8) if rank[b, j] >= rank[b, i])
                assert all(attention_mask[b, j] for j in range(8) if query[b, i, j])
    assert targets.sum(1).tolist() == [2, 2, 2]


def test_two_stream_block_with_equal_streams_is_the_block():
    torch.manual_seed(0)
    _, attention_mask = padded_batch()
    mask = causal_attention_mask(attention_mask)
    x = torch.randn(3, 8, 16)
    for norm_first in (False, True):
        block = perturbed(TransformerBlock(16, 2, mlp_dim=24, norm_first=norm_first))
        with torch.no_grad():
            h, g = two_stream_block(block, x, x, mask, mask)
            expected = block(x, mask)
            assert torch.allclose(h, expected, atol=1e-5) and torch.allclose(g, expected, atol=1e-5)
            _, g_only = two_stream_block(block, x, x, None, mask)
            assert torch.allclose(g_only, expected, atol=1e-5)


def reference_permutation_loss(model: PermutationLM, input_ids, attention_mask, order, num_predict) -> torch.Tensor:
    """Two-stream attention written out one query at a time, with explicit softmax over the allowed keys."""
    embeddings, blocks = model.embeddings, model.encoder.blocks

    def update(block, state, allowed_keys, keys_from):
        attention, width = block.attention, state.shape[0]
        heads, size = attention.num_heads, width // attention.num_heads
        w, bias = attention.qkv.weight, attention.qkv.bias
        q = (w[:width] @ state + bias[:width]).view(heads, size)
        k = (keys_from[allowed_keys] @ w[width : 2 * width].T + bias[width : 2 * width]).view(-1, heads, size)
        v = (keys_from[allowed_keys] @ w[2 * width :].T + bias[2 * width :]).view(-1, heads, size)
        weights = torch.softmax(torch.einsum("hd,khd->hk", q, k) / math.sqrt(size), dim=-1)
        attended = attention.proj(torch.einsum("hk,khd->hd", weights, v).reshape(width))
        out = block.norm1(state + attended)
        return block.norm2(out + block.ffn(out))

    losses = []
    for b in range(input_ids.shape[0]):
        n = int(attention_mask[b].sum())
        rank = {int(order[b, t]): t for t in range(input_ids.shape[1])}
        real = [int(order[b, t]) for t in range(n)]
        h = embeddings(input_ids[b : b + 1])[0]  # [L, D]
        targets = [p for p in real if rank[p] >= max(n - num_predict, 1) and int(input_ids[b, p]) not in STRUCTURAL_IDS]
        g = {p: model.query_embedding(torch.tensor([[p]]), torch.zeros(1, 1, dtype=torch.long))[0, 0] for p in targets}
        for block in blocks:
            new_g = {p: update(block, g[p], [j for j in real if rank[j] < rank[p]], h) for p in targets}
            h = torch.stack(
                [
                    (
                        update(block, h[i], [j for j in real if rank[j] <= rank[i]], h)
                        if i in rank and rank[i] < n
                        else h[i]
                    )
                    for i in range(len(h))
                ]
            )
            g = new_g
        for p in targets:
            losses.append(F.cross_entropy(model.head(g[p])[None], input_ids[b, p : p + 1]))
    return torch.stack(losses).mean()


def test_permutation_loss_matches_a_loop_over_targets():
    model = perturbed(PermutationLM(small_config()))
    input_ids, attention_mask = padded_batch()
    order = sample_factorization_order(attention_mask, torch.Generator().manual_seed(3))
    with torch.no_grad():
        loss = model.permutation_loss(input_ids, attention_mask, order, 3)
        assert torch.allclose(loss, reference_permutation_loss(model, input_ids, attention_mask, order, 3), atol=1e-5)


def test_the_permutation_lm_never_predicts_cls_sep_or_pad_as_xlnet_never_does():
    model = PermutationLM(small_config())
    input_ids, attention_mask = padded_batch()
    input_ids[0, 7], input_ids[1, 5] = SEP_ID, SEP_ID  # rows: [CLS] 6 tokens [SEP]; [CLS] 4 [SEP] [PAD]...; [CLS] 2
    frame = ~eligible_positions(input_ids, STRUCTURAL_IDS)
    generator = torch.Generator().manual_seed(5)
    framed_targets = 0
    with torch.no_grad():
        for _ in range(50):  # any order, even one that ends on [CLS] or [SEP]
            order = sample_factorization_order(attention_mask, generator)
            framed_targets += int(permutation_attention_masks(order, 3, attention_mask)[2][frame].sum())
            logits, targets = model(input_ids, attention_mask, order, 3)
            assert not targets[frame].any() and logits.shape[0] == targets.sum()
        assert framed_targets > 0, "no order put [CLS] or [SEP] among the last 3: the test shows nothing"
        for _ in range(20):  # ordered with input_ids: [CLS] and [SEP] lead, and the targets stay min(3, n - 2)
            order = sample_factorization_order(attention_mask, generator, input_ids=input_ids)
            assert sorted(order[0, :2].tolist()) == [0, 7] and sorted(order[1, :2].tolist()) == [0, 5]
            assert order[2, 0] == 0
            _, targets = model(input_ids, attention_mask, order, 3)
            assert targets.sum(1).tolist() == [3, 3, 2]


def test_changing_a_target_token_leaves_its_own_prediction_unchanged():
    model = perturbed(PermutationLM(small_config()))
    input_ids, attention_mask = padded_batch()
    order = sample_factorization_order(attention_mask, torch.Generator().manual_seed(4))
    ranks = order_ranks(order)
    with torch.no_grad():
        before, targets = model(input_ids, attention_mask, order, 2)
        rows = targets.nonzero().tolist()
        for index, (b, position) in enumerate(rows):
            changed = input_ids.clone()
            changed[b, position] = 5 + (changed[b, position] - 4) % (V - 5)  # another ordinary token, still a target
            after, _ = model(changed, attention_mask, order, 2)
            assert torch.equal(after[index], before[index]), f"target {(b, position)} saw its own token"
            earlier = int(order[b, 0])  # the first token of the order: every target sees it
            changed = input_ids.clone()
            changed[b, earlier] = 5 + (changed[b, earlier] - 4) % (V - 5)
            assert not torch.allclose(model(changed, attention_mask, order, 2)[0][index], before[index])
        assert all(ranks[b, p] >= 1 for b, p in rows)


# --------------------------------------------------------------------------- the downstream task and the driver


def phrasings(text: str, templates) -> set[int]:
    """Indices of the ``templates`` that can produce ``text``."""
    found = set()
    for index, template in enumerate(templates):
        pattern = re.escape(template)
        for slot in ("{city}", "{country}", "{language}"):
            pattern = pattern.replace(re.escape(slot), r"\w+")
        if re.fullmatch(pattern, text):
            found.add(index)
    return found


def test_fact_check_test_phrasings_never_appear_in_fine_tuning():
    task = fact_check_task(seed=0)
    held_out_capital = set(FACT_CHECK_HELD_OUT_CAPITAL_TEMPLATES)
    held_out_language = set(FACT_CHECK_HELD_OUT_LANGUAGE_TEMPLATES)
    for text, _ in task.train:
        assert not phrasings(text, CAPITAL_TEMPLATES) & held_out_capital, text
        assert not phrasings(text, LANGUAGE_TEMPLATES) & held_out_language, text
    for text, _ in task.test:
        used = phrasings(text, CAPITAL_TEMPLATES) | {100 + i for i in phrasings(text, LANGUAGE_TEMPLATES)}
        assert used and used <= held_out_capital | {100 + i for i in held_out_language}, text
    for split in (task.train, task.test):
        assert 2 * sum(label for _, label in split) == len(split)
    facts = {(country, city) for country, city, _ in COUNTRIES}
    for text, label in task.test + task.train:
        words = set(text.split())
        if "capital" in words or "governed" in words or "government" in words:
            assert label == any({country, city} <= words for country, city in facts), text


@pytest.fixture(scope="module")
def probe_setup():
    corpus = make_corpus(1_000, seed=0)
    tokenizer = train_tokenizer(corpus.train)
    config = BertConfig(**(SMALL | dict(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=32)))
    _, candidate_ids = capital_candidates(tokenizer)
    return tokenizer, config, probe_batch(tokenizer, corpus.probes[:3]), candidate_ids[:5]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_probe_scores_match_a_loop_over_candidates(objective, probe_setup):
    tokenizer, config, batch, candidate_ids = probe_setup
    if objective == "albert":
        config = AlbertConfig(**(config.__dict__ | dict(embedding_size=8)))
    model = perturbed(build_model(objective, comparison_config("ci"), config))
    scores = candidate_scores(objective, model, batch, candidate_ids)
    assert scores.shape == (3, 5)
    with torch.no_grad():
        for b in range(3):
            ids, mask = batch["input_ids"][b : b + 1], batch["attention_mask"][b : b + 1]
            blank = int(batch["blank"][b].nonzero())
            for c, candidate in enumerate(candidate_ids.tolist()):
                filled = ids.clone()
                filled[0, blank] = candidate
                if objective in ("mlm", "albert"):
                    expected = model(ids, mask)[0, blank, candidate]
                elif objective == "electra":
                    expected = -model.discriminator(filled, mask)[0, blank]
                elif objective == "causal":
                    expected = sequence_log_likelihood(model, filled, mask)[0]
                else:  # the blank is predicted last, from every other real token; its own token is never seen
                    real = [p for p in range(ids.shape[1]) if mask[0, p] and p != blank]
                    order = torch.tensor([real + [blank] + list(range(len(real) + 1, ids.shape[1]))])
                    logits, targets = model(filled, mask, order, 1)
                    assert targets[0].nonzero().flatten().tolist() == [blank]
                    expected = logits[0, candidate]
                assert torch.allclose(scores[b, c], expected, atol=1e-4), (b, c)


def test_driver_returns_one_row_per_objective_with_the_expected_columns():
    recipe = FineTuning(max_steps=4, eval_every=2, patience=2, batch_size=4)
    config = comparison_config("ci", num_sentences=600, label_budgets=(8,), finetune=recipe, budget_mlm_steps=4)
    comparison = compare_objectives(config, device=torch.device("cpu"))
    table = comparison.table
    assert table["objective"].tolist() == list(OBJECTIVES)
    metrics = [
        *probe_metrics(),
        fact_check_metric(8),
        "pretraining_seconds",
        *(f"untrained_{metric}" for metric in probe_metrics()),
        *PAIR_METRICS,
    ]
    expected = [
        "objective",
        "parameters",
        "steps",
        "flops_per_step",
        "sentence_rows",
        *[f"{m}_{s}" for m in metrics for s in ("mean", "sd", "low", "high")],
        "n",
    ]
    assert table.columns.tolist() == expected
    assert (table["n"] == len(config.seeds)).all()
    spent = table["steps"] * table["flops_per_step"]
    budget = comparison.budget_flops
    assert ((spent <= budget * (1 + 1e-6)) & (spent + table["flops_per_step"] > budget)).all()
    assert table.loc[table["objective"] == "mlm", "steps"].item() == config.budget_mlm_steps
    assert table[[f"{metric}_mean" for metric in probe_metrics()]].stack().between(0, 1).all()
    assert set(comparison.curves["objective"]) == set(OBJECTIVES)
    curves = comparison.curves
    assert (curves.loc[curves["step"] == 0, "probe_mrr"].notna()).all(), "the untrained model is probed at step 0"
    assert curves["loss"].notna().any() and curves["probe_top1"].notna().any()
    held_out = comparison.probe_table("held-out")
    assert {"top1", "mrr", "untrained mrr", "prior mrr", "chance mrr"} <= set(held_out.columns)
    sentences = reading(comparison)
    assert sentences[0].startswith("Ranked by held-out mrr")
    assert sum(sentence.startswith(f"{o} - mlm") for o in OBJECTIVES for sentence in sentences) == len(OBJECTIVES) - 1
    assert table[[f"{metric}_mean" for metric in PAIR_METRICS]].stack().between(0, 1).all()
    electra = comparison.electra
    assert electra["seed"].tolist() == list(config.seeds)
    assert electra.drop(columns=["objective", "seed"]).stack().between(0, 1).all()
    assert len(comparison.electra_table()) == 1 and len(comparison.scoring_table()) == len(OBJECTIVES)


# --------------------------------------------------------------------------- sentence scores and minimal pairs


def test_pseudo_log_likelihood_matches_a_loop_masking_one_token_at_a_time(probe_setup):
    tokenizer, config, _, _ = probe_setup
    model = perturbed(build_model("mlm", comparison_config("ci"), config))
    sentences = ["paris is the capital of france .", "the dog is sleeping ."]
    scores, rows = sentence_scores("mlm", model, tokenizer, sentences)
    mask_id = tokenizer.token_to_id("[MASK]")
    expected, count = [], 0
    with torch.no_grad():
        for sentence in sentences:
            ids = torch.tensor([tokenizer.encode(sentence).ids])
            total = 0.0
            for position in range(1, ids.shape[1] - 1):  # not [CLS], not [SEP]
                masked = ids.clone()
                masked[0, position] = mask_id
                total += model(masked, torch.ones_like(ids))[0, position].log_softmax(-1)[ids[0, position]].item()
                count += 1
            expected.append(total)
    assert torch.allclose(scores, torch.tensor(expected), atol=1e-4)
    assert rows == count


def test_agreement_pairs_are_balanced_so_a_verb_preference_alone_scores_one_half():
    pairs = agreement_pairs()
    singular_good = sum(any(f" {verb} " in good for verb in ("is", "was", "likes", "has")) for good, _ in pairs)
    assert 2 * singular_good == len(pairs)
    assert all(good.split()[:5] == bad.split()[:5] and good != bad for good, bad in pairs)  # "the dog near the trees"


def test_auc_is_the_chance_a_positive_outscores_a_negative():
    assert auc(torch.tensor([0.9, 0.8, 0.1]), torch.tensor([1, 1, 0])) == 1.0
    assert auc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.5
    assert auc(torch.tensor([0.2, 0.9, 0.4, 0.3]), torch.tensor([1, 0, 1, 0])) == 0.25


# --------------------------------------------------------------------------- the probe's floors


def test_answer_ranks_count_ties_half_and_chance_is_the_mean_reciprocal_rank_of_a_random_order():
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    assert answer_ranks(scores, torch.tensor([2, 0])).tolist() == [2.0, 2.0]
    floor = chance_floor(24)
    assert floor["top1"] == pytest.approx(1 / 24)
    assert floor["mrr"] == pytest.approx(sum(1 / k for k in range(1, 25)) / 24)


def test_phrasing_prior_ranks_capitals_by_their_frequency_in_the_phrasing():
    template = CAPITAL_TEMPLATES[0]
    (a, city_a, _), (b, city_b, _), (c, city_c, _) = COUNTRIES[:3]
    train = [template.format(country=a, city=city_a)] * 3 + [template.format(country=b, city=city_b)] * 2
    probes = [FactProbe(template.format(country=country, city="[MASK]"), city, country)
              for country, city in ((a, city_a), (b, city_b), (c, city_c))]
    # ranks 1 and 2, then city_c ties with the 21 other unseen capitals: rank 3 + 21 / 2
    result = phrasing_prior(train, probes)
    assert result["top1"] == pytest.approx(1 / 3)
    assert result["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 13.5) / 3)


def test_the_phrasing_prior_of_the_course_split_is_zero_on_held_out_pairs():
    corpus = make_corpus(5_000, seed=0, shares=CorpusShares(0.85, 0.06, 0.05))
    assert phrasing_prior(corpus.train, corpus.probes)["top1"] == 0.0
    assert phrasing_prior(corpus.train, corpus.seen_probes)["top1"] > 0.0


def test_default_shares_leave_lab_2s_corpus_unchanged_and_dense_shares_are_fact_dense():
    default, explicit = make_corpus(2_000, seed=3), make_corpus(2_000, seed=3, shares=CorpusShares())
    assert default.train == explicit.train and default.heldout == explicit.heldout
    dense = make_corpus(2_000, seed=3, shares=CorpusShares(0.85, 0.06, 0.05))
    capital = lambda corpus: sum("capital" in s or "govern" in s for s in corpus.train) / 2_000  # noqa: E731
    assert capital(dense) > capital(default) + 0.2


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "argument, call",
    [
        ("generator_logits", lambda: sample_replacements(torch.zeros(3))),
        (
            "corrupted_ids",
            lambda: replaced_token_labels(
                torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 3)
            ),
        ),
        (
            "attention_mask",
            lambda: replaced_token_labels(
                torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), torch.ones(3)
            ),
        ),
        (
            "discriminator_logits",
            lambda: electra_loss(torch.tensor(1.0), torch.zeros(4), torch.zeros(4), torch.ones(4)),
        ),
        (
            "generator_mlm_loss",
            lambda: electra_loss(torch.zeros(2), torch.zeros(1, 4), torch.zeros(1, 4), torch.ones(1, 4)),
        ),
        ("width_fraction", lambda: generator_config(small_config(), 1.5)),
        ("attention_mask", lambda: causal_attention_mask(torch.ones(2, 3, 3))),
        ("logits", lambda: next_token_loss(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3))),
        (
            "input_ids",
            lambda: next_token_loss(torch.zeros(2, 3, V), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 3)),
        ),
        ("embedding_size", lambda: FactorizedEmbedding(V, 0, 16)),
        ("embedding_size", lambda: albert_config(embedding_size=-1)),
        ("config", lambda: albert_parameter_count(small_config())),
        ("depth", lambda: SharedLayerEncoder(16, 0, 2)),
        ("num_predict", lambda: permutation_attention_masks(torch.arange(4).expand(2, 4), 0, torch.ones(2, 4))),
        ("order", lambda: permutation_attention_masks(torch.zeros(2, 4, dtype=torch.long), 1, torch.ones(2, 4))),
        (
            "order",
            lambda: permutation_attention_masks(
                torch.arange(4).expand(2, 4), 1, torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
            ),
        ),
        ("attention_mask", lambda: sample_factorization_order(torch.ones(4))),
        ("objectives", lambda: comparison_config("ci", objectives=("mlm", "gpt"))),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=argument):
        call()
