"""course_utils.masking: BERT's 15% / 80-10-10 masker, whole-word and span masking, the collator.

Randomized claims are checked statistically over many draws. A count is checked against the
checks' exact binomial range (``course_utils.checks.binomial_range`` at the course's one
false-failure rate ``FALSE_FAILURE``): a correct masker fails each such assertion with probability
at most ``FALSE_FAILURE``, and a test with k of them at most k times that. Uniformity uses a
chi-square test that a correct masker fails with probability 1e-4 (p-value threshold).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
from scipy.stats import chisquare

from course_utils import masking
from course_utils.checks import FALSE_FAILURE, binomial_range
from course_utils.checks.masking import word_counts
from course_utils.masking import (
    IGNORE_INDEX,
    MaskingCollator,
    apply_80_10_10,
    build_labels,
    mask_by_strategy,
    mask_spans,
    mask_tokens,
    mask_whole_words,
    non_special_ids,
    sample_span_lengths,
    select_positions,
    select_spans,
    select_whole_words,
    span_length_probabilities,
    word_starts,
)

PAD, UNK, CLS, SEP, MASK = range(5)
SPECIALS = (PAD, UNK, CLS, SEP, MASK)
VOCAB = 1000
ORDINARY = VOCAB - len(SPECIALS)  # the ids a random replacement draws from


def batch(rows=64, seq=128, vocab=VOCAB, real=100, seed=0):
    """[CLS] w ... w [SEP] [PAD] ...: ``real`` tokens per row, the rest padding; ``[rows, seq]``."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), vocab, (rows, seq), generator=generator)
    ids[:, 0], ids[:, real - 1], ids[:, real:] = CLS, SEP, PAD
    return ids


def masked(ids, seed=0, **overrides):
    options = dict(
        mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=SPECIALS, generator=torch.Generator().manual_seed(seed)
    )
    return mask_tokens(ids, **{**options, **overrides})


def within_range(count, n, p_low, p_high=None):
    """``count`` of ``n`` lies in the exact binomial range of a share in ``[p_low, p_high]`` (false failure
    ``FALSE_FAILURE``)."""
    low, high = binomial_range(n, p_low, p_high, alpha=FALSE_FAILURE)
    return low <= count <= high


# --------------------------------------------------------------------------- token masking: statistics


@pytest.mark.parametrize("p", [0.15, 0.4])
def test_selection_rate_matches_mlm_probability(p):
    ids = batch(rows=256)
    _, labels = masked(ids, mlm_probability=p)
    eligible = ids >= len(SPECIALS)
    selected = int((labels != IGNORE_INDEX).sum())
    assert within_range(selected, int(eligible.sum()), p), selected / int(eligible.sum())


def test_replacement_shares_are_80_10_10():
    ids = batch(rows=512)
    masked_ids, labels = masked(ids, mlm_probability=0.5)
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    to_mask = int((masked_ids[selected] == MASK).sum())
    to_random = int(((masked_ids != ids) & (masked_ids != MASK))[selected].sum())
    kept = int((masked_ids == ids)[selected].sum())
    # A random draw equal to the original id reads as "kept": 1/995 of the 10% random ones, at most.
    assert within_range(to_mask, n, 0.8), to_mask / n
    assert within_range(to_random, n, 0.1 * (1 - 1 / ORDINARY), 0.1), to_random / n
    assert within_range(kept, n, 0.1, 0.1 + 0.1 / ORDINARY), kept / n


def test_custom_replacement_shares_are_honoured():
    ids = batch(rows=512)
    masked_ids, labels = masked(ids, mlm_probability=0.5, mask_replace_prob=0.3, random_replace_prob=0.6)
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    assert within_range(int((masked_ids[selected] == MASK).sum()), n, 0.3)
    assert within_range(int((masked_ids == ids)[selected].sum()), n, 0.1, 0.1 + 0.6 / ORDINARY)


def test_random_replacements_are_uniform_over_non_special_ids():
    vocab = 40
    ids = batch(rows=1024, vocab=vocab)
    masked_ids, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=vocab,
        special_token_ids=SPECIALS,
        mlm_probability=1.0,
        mask_replace_prob=0.0,
        random_replace_prob=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    draws = masked_ids[labels != IGNORE_INDEX]
    assert not torch.isin(draws, torch.tensor(SPECIALS)).any(), "random token drawn from special ids"
    counts = torch.bincount(draws, minlength=vocab)[len(SPECIALS) :]
    # ~100k draws over 35 ids; chi-square against the uniform distribution, p-value threshold 1e-4.
    assert chisquare(counts.numpy()).pvalue > 1e-4


def test_random_replacements_avoid_specials_that_are_not_contiguous():
    specials = (0, 7, 19)
    ids = torch.full((64, 64), 3)
    masked_ids, _ = mask_tokens(
        ids,
        mask_token_id=7,
        vocab_size=20,
        special_token_ids=specials,
        mlm_probability=1.0,
        mask_replace_prob=0.0,
        random_replace_prob=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert not torch.isin(masked_ids, torch.tensor(specials)).any()
    assert set(masked_ids.unique().tolist()) == set(range(20)) - set(specials)


# --------------------------------------------------------------------------- token masking: invariants


def test_special_tokens_are_never_selected():
    ids = batch()
    _, labels = masked(ids, mlm_probability=1.0)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    assert (labels[special] == IGNORE_INDEX).all()
    assert (labels[~special] == ids[~special]).all(), "with mlm_probability=1 every other token is selected"


def test_labels_are_minus_100_exactly_off_the_selected_positions():
    ids = batch()
    selected = select_positions(ids, special_token_ids=SPECIALS, generator=torch.Generator().manual_seed(3))
    _, labels = masked(ids, seed=3)
    assert torch.equal(labels != IGNORE_INDEX, selected)
    assert torch.equal(labels[selected], ids[selected])


def test_unselected_positions_are_unchanged():
    ids = batch()
    masked_ids, labels = masked(ids)
    assert torch.equal(masked_ids[labels == IGNORE_INDEX], ids[labels == IGNORE_INDEX])


def test_input_is_not_modified():
    ids = batch()
    before = ids.clone()
    masked(ids, mlm_probability=1.0)
    assert torch.equal(ids, before)


def test_mask_tokens_is_select_then_80_10_10_then_labels():
    ids = batch()
    generator = torch.Generator().manual_seed(5)
    selected = select_positions(ids, special_token_ids=SPECIALS, generator=generator)
    expected = apply_80_10_10(
        ids, selected, mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=SPECIALS, generator=generator
    )
    masked_ids, labels = masked(ids, seed=5)
    assert torch.equal(masked_ids, expected)
    assert torch.equal(labels, build_labels(ids, selected))


def test_same_generator_seed_gives_same_masks_and_another_seed_does_not():
    ids = batch()
    first, second, other = masked(ids, seed=7), masked(ids, seed=7), masked(ids, seed=8)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other[1])


def test_output_keeps_the_input_dtype_and_shape():
    ids = batch().to(torch.int32)
    masked_ids, labels = masked(ids)
    assert masked_ids.dtype == labels.dtype == torch.int32
    assert masked_ids.shape == labels.shape == ids.shape


def test_mlm_probability_zero_selects_nothing():
    ids = batch()
    masked_ids, labels = masked(ids, mlm_probability=0.0)
    assert (labels == IGNORE_INDEX).all() and torch.equal(masked_ids, ids)


def test_empty_batch_is_fine():
    masked_ids, labels = masked(torch.zeros((0, 16), dtype=torch.long))
    assert masked_ids.shape == labels.shape == (0, 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_masks_on_the_device_of_the_input():
    ids = batch().cuda()
    masked_ids, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=SPECIALS,
        generator=torch.Generator("cuda").manual_seed(0),
    )
    assert masked_ids.device == labels.device == ids.device
    assert (labels[ids < len(SPECIALS)] == IGNORE_INDEX).all()


BAD_ARGUMENTS = [
    ("mlm_probability", dict(mlm_probability=-0.1)),
    ("mlm_probability", dict(mlm_probability=1.5)),
    ("mask_replace_prob", dict(mask_replace_prob=1.2)),
    ("random_replace_prob", dict(random_replace_prob=-0.1)),
    ("mask_replace_prob + random_replace_prob", dict(mask_replace_prob=0.7, random_replace_prob=0.4)),
    ("input_ids", dict(input_ids=torch.rand(2, 8))),
    ("input_ids", dict(input_ids=torch.ones(2, 8, dtype=torch.bool))),
    ("input_ids", dict(input_ids=torch.ones(2, 8, dtype=torch.uint8))),
    ("input_ids", dict(input_ids=[[5, 6, 7]])),
    ("vocab_size", dict(vocab_size=50)),
    ("vocab_size", dict(vocab_size=0)),
    ("vocab_size", dict(input_ids=torch.tensor([[-3, 5]]))),
    ("mask_token_id", dict(mask_token_id=VOCAB)),
    ("special_token_ids", dict(special_token_ids=(0, VOCAB + 3))),
]


@pytest.mark.parametrize(
    "argument, bad", BAD_ARGUMENTS, ids=[f"{name}:{list(bad.values())[0]!r}"[:40] for name, bad in BAD_ARGUMENTS]
)
def test_bad_input_raises_value_error_naming_the_argument(argument, bad):
    options = dict(input_ids=batch(rows=2), mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=SPECIALS)
    options.update(bad)
    input_ids = options.pop("input_ids")
    with pytest.raises(ValueError, match=argument.replace("+", r"\+")):
        mask_tokens(input_ids, **options)


def test_special_ids_covering_the_vocabulary_raise():
    with pytest.raises(ValueError, match="special_token_ids"):
        non_special_ids(5, SPECIALS)


# --------------------------------------------------------------------------- whole words


def word_numbering(rows=256, seq=128, real=100, word_length=3):
    """Words of ``word_length`` tokens after [CLS]; -1 on [CLS], [SEP] and padding. ``[rows, seq]``."""
    word_ids = (torch.arange(seq) - 1).div(word_length, rounding_mode="floor").expand(rows, seq).clone()
    word_ids[:, 0], word_ids[:, real - 1 :] = -1, -1
    return word_ids


def test_whole_word_masking_selects_all_tokens_of_a_word_together():
    ids, word_ids = batch(rows=256), word_numbering()
    _, labels = mask_whole_words(
        ids,
        word_ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=SPECIALS,
        generator=torch.Generator().manual_seed(0),
    )
    selected = (labels != IGNORE_INDEX).float()
    words = word_ids.clamp(min=0) + 1000 * torch.arange(256)[:, None]  # one number per (row, word)
    in_word = word_ids >= 0
    per_word = torch.zeros(1000 * 256).scatter_reduce(0, words[in_word], selected[in_word], "amin", include_self=False)
    per_word_any = torch.zeros(1000 * 256).scatter_reduce(
        0, words[in_word], selected[in_word], "amax", include_self=False
    )
    assert torch.equal(per_word, per_word_any), "a word was only partly selected"
    assert (labels[word_ids < 0] == IGNORE_INDEX).all()


def test_whole_word_selection_rate_per_word_matches_p():
    ids, word_ids = batch(rows=512), word_numbering(rows=512)
    selected = select_whole_words(ids, word_ids, special_token_ids=SPECIALS, generator=torch.Generator().manual_seed(1))
    first_tokens = (word_ids >= 0) & (word_ids != torch.nn.functional.pad(word_ids[:, :-1], (1, 0), value=-1))
    words = int(first_tokens.sum())
    assert within_range(int(selected[first_tokens].sum()), words, 0.15)


def test_whole_word_masking_never_selects_special_tokens():
    ids, word_ids = batch(), word_numbering(rows=64)
    ids[:, 10] = UNK  # a special token inside a word
    selected = select_whole_words(ids, word_ids, special_token_ids=SPECIALS, mlm_probability=1.0)
    assert not selected[torch.isin(ids, torch.tensor(SPECIALS))].any()


@pytest.mark.parametrize(
    "word_ids", [torch.zeros(3, 3, dtype=torch.long), torch.full((64, 128), -2), torch.zeros(64, 128)]
)
def test_bad_word_ids_raise_value_error(word_ids):
    with pytest.raises(ValueError, match="word_ids"):
        select_whole_words(batch(), word_ids)


# --------------------------------------------------------------------------- spans


def words_of_one_to_three_tokens(rows, seq=128, real=120, seed=0, same_layout=False):
    """``(ids, word_ids)`` ``[rows, seq]``: [CLS], words of 1-3 tokens, [SEP], padding; word id -1 off words."""
    ids = batch(rows=rows, seq=seq, real=real, seed=seed)
    sizes = torch.randint(1, 4, (1 if same_layout else rows, seq), generator=torch.Generator().manual_seed(seed + 1))
    word_ends = sizes.cumsum(1).expand(rows, seq).contiguous()  # word k covers positions [end(k-1), end(k)) + 1
    word_ids = torch.searchsorted(word_ends, (torch.arange(seq) - 1).expand(rows, seq).contiguous(), right=True)
    word_ids[:, 0], word_ids[:, real - 1 :] = -1, -1
    return ids, word_ids


def spans(ids, word_ids, seed=0, **options):
    return select_spans(
        ids, word_ids, special_token_ids=SPECIALS, generator=torch.Generator().manual_seed(seed), **options
    )


def per_span(span_index, values, reduce):
    """``reduce`` ("amin", "amax" or "sum") of ``values`` over each (row, span): a ``[rows, L]`` table, row-major."""
    rows, seq = span_index.shape
    key = (span_index + seq * torch.arange(rows)[:, None])[span_index >= 0]
    table = torch.zeros(rows * seq, dtype=values.dtype)
    table = table.scatter_reduce(0, key, values[span_index >= 0], reduce, include_self=False)
    used = torch.zeros(rows * seq, dtype=torch.bool).index_fill_(0, key, True)
    return table.view(rows, seq), used.view(rows, seq)


def test_span_lengths_follow_the_truncated_geometric_distribution():
    lengths = sample_span_lengths((200_000,), generator=torch.Generator().manual_seed(0))
    assert lengths.min() >= 1 and lengths.max() <= 10
    counts = torch.bincount(lengths, minlength=11)[1:].numpy()
    expected = span_length_probabilities().numpy() * len(lengths)
    assert chisquare(counts, expected).pvalue > 1e-4
    assert abs(lengths.float().mean().item() - 3.8) < 0.02  # SpanBERT's mean span length; sd of the mean is 0.006


def test_spans_start_at_word_starts_and_cover_whole_words():
    ids, word_ids = words_of_one_to_three_tokens(rows=512)
    selected, span_index = spans(ids, word_ids, mlm_probability=0.3)
    in_word = (word_ids >= 0) & (ids >= len(SPECIALS))
    tokens, hits = word_counts(word_ids, in_word, selected)
    assert ((hits == 0) | (hits == tokens)).all(), "a word was only partly selected"
    assert torch.equal(span_index >= 0, selected)
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    first, used = per_span(span_index, positions, "amin")
    last, _ = per_span(span_index, positions, "amax")
    size, _ = per_span(span_index, torch.ones_like(positions), "sum")
    rows = torch.arange(len(ids))[:, None].expand_as(first)
    assert word_starts(word_ids)[rows[used], first[used]].all(), "a span starts inside a word"
    assert torch.equal((last - first + 1)[used], size[used]), "a span is not one contiguous run of tokens"


def test_spans_never_select_special_tokens_or_tokens_outside_words():
    ids, word_ids = words_of_one_to_three_tokens(rows=64)
    ids[:, 7] = UNK  # a special token inside a word
    selected, _ = spans(ids, word_ids, mlm_probability=1.0)
    assert torch.equal(selected, (word_ids >= 0) & (ids >= len(SPECIALS)))


@pytest.mark.parametrize("p", [0.15, 0.5])
def test_span_masking_stays_within_the_budget_and_stops_only_when_no_word_fits(p):
    ids, word_ids = words_of_one_to_three_tokens(rows=512)
    ids[:, 7] = UNK
    selected, _ = spans(ids, word_ids, mlm_probability=p)
    eligible = (word_ids >= 0) & (ids >= len(SPECIALS))
    budget = torch.round(eligible.sum(1) * p).long()
    left = budget - selected.sum(1)
    assert (left >= 0).all(), "a row selected more tokens than its budget"
    # Every word left unselected is too large for what is left of its row's budget.
    word_size = torch.zeros_like(ids).scatter_add_(1, word_ids.clamp(min=0), eligible.long())  # [B, words]
    size_at_token = word_size.gather(1, word_ids.clamp(min=0))
    assert (size_at_token[eligible & ~selected] > left[:, None].expand_as(ids)[eligible & ~selected]).all()


def test_span_masking_spends_the_whole_budget_when_every_word_is_one_token():
    ids = batch(rows=128)
    word_ids = torch.where(ids >= len(SPECIALS), torch.arange(ids.shape[1]), -1)
    selected, _ = spans(ids, word_ids)
    assert torch.equal(selected.sum(1), torch.round((ids >= len(SPECIALS)).sum(1) * 0.15).long())


def test_span_lengths_in_words_follow_the_truncated_geometric_distribution():
    # Each row's first span is a fresh length draw, cut only by the end of the row (the budget,
    # 35 tokens, holds any 10 words of at most 3 tokens): keep the spans that start 10 or more
    # words before the end. About 3,400 lengths; exact binomial ranges, FALSE_FAILURE per length.
    ids, word_ids = words_of_one_to_three_tokens(rows=4096, seed=3)
    _, span_index = spans(ids, word_ids, seed=4, mlm_probability=0.3)
    starts = word_starts(word_ids)
    word_number = starts.cumsum(1) - 1
    first_span = span_index == 0
    words_in_first_span = (first_span & starts).sum(1)
    first_word = torch.where(first_span, word_number, ids.shape[1]).min(1).values
    lengths = words_in_first_span[starts.sum(1) - first_word >= 10]
    assert len(lengths) > 3000
    counts = torch.bincount(lengths, minlength=11)[1:].tolist()
    for length, (count, probability) in enumerate(zip(counts, span_length_probabilities().tolist()), start=1):
        low, high = binomial_range(len(lengths), probability, alpha=FALSE_FAILURE)
        assert low <= count <= high, (length, count, len(lengths) * probability)


def test_first_span_starts_at_a_uniformly_random_word():
    # Every row has the same 57 words; the first span's start word is uniform over them.
    # Exact binomial range for each word's count, FALSE_FAILURE / 57 each, FALSE_FAILURE in all.
    ids, word_ids = words_of_one_to_three_tokens(rows=8192, seed=5, same_layout=True)
    _, span_index = spans(ids, word_ids, seed=6)
    words = int(word_starts(word_ids)[0].sum())
    word_number = word_starts(word_ids).cumsum(1) - 1
    first_word = torch.where(span_index == 0, word_number, ids.shape[1]).min(1).values
    counts = torch.bincount(first_word, minlength=words)
    assert len(counts) == words
    low, high = binomial_range(len(ids), 1 / words, alpha=FALSE_FAILURE / words)
    assert ((counts >= low) & (counts <= high)).all(), (counts.min(), counts.max(), low, high)


def test_span_selection_is_reproducible_with_a_generator():
    ids, word_ids = words_of_one_to_three_tokens(rows=64)
    first, again, other = spans(ids, word_ids, seed=7), spans(ids, word_ids, seed=7), spans(ids, word_ids, seed=8)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_span_selection_handles_an_empty_batch_and_rows_without_words():
    empty = torch.zeros((0, 16), dtype=torch.long)
    selected, span_index = spans(empty, empty)
    assert selected.shape == span_index.shape == (0, 16)
    ids = batch(rows=4)
    selected, span_index = spans(ids, torch.full_like(ids, -1), mlm_probability=1.0)
    assert not selected.any() and (span_index == -1).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_span_masking_runs_on_the_device_of_the_input():
    ids, word_ids = words_of_one_to_three_tokens(rows=64)
    masked_ids, labels = mask_spans(
        ids.cuda(),
        word_ids.cuda(),
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=SPECIALS,
        generator=torch.Generator("cuda").manual_seed(0),
    )
    assert masked_ids.is_cuda and labels.is_cuda
    selected = (labels != IGNORE_INDEX).cpu()
    tokens, hits = word_counts(word_ids, (word_ids >= 0) & (ids >= len(SPECIALS)), selected)
    assert hits.sum() > 0 and ((hits == 0) | (hits == tokens)).all()


def test_span_masking_overall_rate_is_15_percent():
    ids = batch(rows=256)
    word_ids = torch.where(ids >= len(SPECIALS), torch.arange(ids.shape[1]), -1)
    _, labels = mask_spans(
        ids,
        word_ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=SPECIALS,
        generator=torch.Generator().manual_seed(0),
    )
    rate = (labels != IGNORE_INDEX).sum() / (ids >= len(SPECIALS)).sum()
    assert abs(rate - 0.15) < 0.005  # only rounding of each row's 98 * 0.15 = 14.7 -> 15 moves it


def test_span_masking_replaces_whole_spans_alike():
    ids, word_ids = words_of_one_to_three_tokens(rows=256)
    masked_ids, labels = mask_spans(
        ids,
        word_ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=SPECIALS,
        mlm_probability=0.3,
        generator=torch.Generator().manual_seed(4),
    )
    selected, span_index = spans(ids, word_ids, seed=4, mlm_probability=0.3)
    assert torch.equal(labels != IGNORE_INDEX, selected), "labels and selection use the same draws"
    is_mask = (masked_ids == MASK).long()
    fewest, used = per_span(span_index, is_mask, "amin")
    most, _ = per_span(span_index, is_mask, "amax")
    assert torch.equal(fewest[used], most[used]), "a span was partly [MASK]"
    # One draw per span, so the [MASK] spans (not tokens) are Binomial(spans, 0.8). A correct masker
    # falls outside this exact binomial range with probability at most FALSE_FAILURE.
    low, high = binomial_range(int(used.sum()), 0.8, alpha=FALSE_FAILURE)
    assert low <= int(most[used].sum()) <= high, (int(most[used].sum()), int(used.sum()))


def test_mask_by_strategy_passes_word_ids_to_the_span_masker():
    ids, word_ids = words_of_one_to_three_tokens(rows=32)
    options = dict(mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=SPECIALS)
    by_name = mask_by_strategy("span", ids, word_ids, generator=torch.Generator().manual_seed(9), **options)
    direct = mask_spans(ids, word_ids, generator=torch.Generator().manual_seed(9), **options)
    assert torch.equal(by_name[0], direct[0]) and torch.equal(by_name[1], direct[1])


@pytest.mark.parametrize(
    "argument, call",
    [
        ("input_ids", lambda: select_spans(torch.ones(4), torch.ones(4, dtype=torch.long))),
        ("word_ids", lambda: select_spans(batch(), torch.zeros(64, 127, dtype=torch.long))),
        ("word_ids", lambda: select_spans(torch.ones(4, dtype=torch.long), torch.ones(4, dtype=torch.long))),
        (
            "mlm_probability",
            lambda: mask_spans(
                batch(), word_numbering(rows=64), mask_token_id=MASK, vocab_size=VOCAB, mlm_probability=1.5
            ),
        ),
        ("span_p", lambda: select_spans(batch(), word_numbering(rows=64), span_p=1.5)),
        ("max_span_length", lambda: select_spans(batch(), word_numbering(rows=64), max_span_length=0)),
        ("p", lambda: sample_span_lengths((3,), p=0.0)),
        ("max_length", lambda: sample_span_lengths((3,), max_length=0)),
        (
            "mask_replace_prob",
            lambda: mask_whole_words(
                batch(), word_numbering(rows=64), mask_token_id=MASK, vocab_size=VOCAB, mask_replace_prob=-1.0
            ),
        ),
        ("strategy", lambda: mask_by_strategy("words", batch(), mask_token_id=MASK, vocab_size=VOCAB)),
        ("word_ids", lambda: mask_by_strategy("whole_word", batch(), mask_token_id=MASK, vocab_size=VOCAB)),
        ("word_ids", lambda: mask_by_strategy("span", batch(), mask_token_id=MASK, vocab_size=VOCAB)),
    ],
)
def test_span_and_whole_word_maskers_reject_bad_arguments(argument, call):
    with pytest.raises(ValueError, match=argument):
        call()


# --------------------------------------------------------------------------- the collator


def collator(**overrides):
    return MaskingCollator(
        **{
            **dict(
                mask_token_id=MASK,
                vocab_size=VOCAB,
                pad_token_id=PAD,
                special_token_ids=SPECIALS,
                generator=torch.Generator().manual_seed(0),
            ),
            **overrides,
        }
    )


SEQUENCES = [[CLS, *range(10, 10 + n), SEP] for n in (5, 17, 30)]


def test_collator_pads_to_a_multiple_of_8_with_the_right_attention_mask():
    out = collator()(SEQUENCES)
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert out["input_ids"].shape == (3, 32)
    assert out["attention_mask"].sum(1).tolist() == [len(s) for s in SEQUENCES]
    assert (out["input_ids"][out["attention_mask"] == 0] == PAD).all()
    assert (out["labels"][out["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_collator_masks_anew_on_every_call():
    make = collator(mlm_probability=0.5)
    sequences = [list(range(10, 110))] * 4
    first, second = make(sequences), make(sequences)
    assert not torch.equal(first["labels"], second["labels"])


@pytest.mark.parametrize("strategy", ["token", "whole_word", "span"])
def test_collator_strategies_select_only_real_tokens(strategy):
    examples = [{"input_ids": s, "word_ids": [None, *[i // 2 for i in range(len(s) - 2)], None]} for s in SEQUENCES]
    out = collator(strategy=strategy, mlm_probability=0.5)(examples)
    selected = out["labels"] != IGNORE_INDEX
    assert selected.any()
    assert not selected[out["attention_mask"] == 0].any()
    assert torch.equal(out["attention_mask"].bool() | ~selected, torch.ones_like(selected))


@pytest.mark.parametrize("strategy", ["whole_word", "span"])
def test_collator_word_strategies_need_word_ids(strategy):
    with pytest.raises(ValueError, match="word_ids"):
        collator(strategy=strategy)(SEQUENCES)


def test_collator_works_as_a_dataloader_collate_fn():
    loader = torch.utils.data.DataLoader(SEQUENCES * 4, batch_size=4, collate_fn=collator())
    shapes = [b["input_ids"].shape[1] % 8 for b in loader]
    assert shapes == [0, 0, 0]


def masks_over_two_epochs(collate):
    """The selected positions of every batch, ``[B, L]`` each, over two epochs of a seeded two-worker DataLoader."""
    loader = torch.utils.data.DataLoader(
        [list(range(10, 110))] * 8,  # identical rows: only the random draws tell the batches apart
        batch_size=2,
        shuffle=True,
        num_workers=2,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    return [batch["labels"] != IGNORE_INDEX for _ in range(2) for batch in loader]


def test_collator_masks_differ_across_dataloader_workers_and_epochs():
    """Each worker gets a copy of the collator's generator at every epoch; masks must not repeat."""
    masks = masks_over_two_epochs(collator(mlm_probability=0.5))
    assert len(masks) == 8
    assert len({tuple(mask.flatten().tolist()) for mask in masks}) == 8, "two batches drew the same masks"
    again = masks_over_two_epochs(collator(mlm_probability=0.5))
    assert all(torch.equal(a, b) for a, b in zip(masks, again)), "the same seeds must give the same masks"


@pytest.mark.parametrize(
    "argument, bad",
    [
        ("strategy", dict(strategy="words")),
        ("pad_to_multiple_of", dict(pad_to_multiple_of=0)),
        ("pad_token_id", dict(pad_token_id=-1)),
        ("mlm_probability", dict(mlm_probability=2.0)),
    ],
)
def test_collator_rejects_bad_settings(argument, bad):
    with pytest.raises(ValueError, match=argument):
        collator(**bad)


def test_collator_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="examples"):
        collator()([])


# --------------------------------------------------------------------------- the course notes' loop, and the notebook


def test_seed_loop_selects_padding_and_special_tokens_and_scores_them():
    ids = batch(rows=8)
    _, targets, positions = masking.notes_create_masked_lm_batch(ids, MASK, mask_prob=1.0, vocab_size=VOCAB)
    scored = targets[positions]  # what the notes' loss compares predictions[mask_positions] with
    assert positions[ids == PAD].all() and positions[ids == CLS].all(), "the notes' masker selects padding and [CLS]"
    assert (scored == PAD).any() and (scored == SEP).any()
    assert torch.equal(targets, ids), "the notes' targets are the whole input, scored only at mask_positions"


SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "lab01_masking" / "lab01_masking.ipynb"
EXERCISES = ("select_positions", "apply_80_10_10", "build_labels", "select_whole_words", "sample_span_lengths")


@pytest.fixture(scope="module")
def notebook_functions():
    """The exercise functions as the solution notebook defines them (its solution cells, executed here)."""
    notebook = nbformat.read(SOLUTION, as_version=4)
    namespace: dict = {}
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            exec(compile(cell.source, f"{SOLUTION.name}:{cell.id}", "exec"), namespace)
    assert all(name in namespace for name in EXERCISES), "an exercise is missing from the solution notebook"
    return namespace


def test_solution_notebook_agrees_with_the_reference(notebook_functions):
    nb = notebook_functions
    ids, word_ids = batch(), word_numbering(rows=64)

    def same_draws(function, *args, **kwargs):
        return function(*args, **kwargs, generator=torch.Generator().manual_seed(11))

    selected = same_draws(select_positions, ids, special_token_ids=SPECIALS, mlm_probability=0.3)
    assert torch.equal(
        same_draws(nb["select_positions"], ids, special_token_ids=SPECIALS, mlm_probability=0.3), selected
    )
    replacement = dict(mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=SPECIALS)
    assert torch.equal(
        same_draws(nb["apply_80_10_10"], ids, selected, **replacement),
        same_draws(apply_80_10_10, ids, selected, **replacement),
    )
    assert torch.equal(nb["build_labels"](ids, selected), build_labels(ids, selected))
    assert torch.equal(
        same_draws(nb["select_whole_words"], ids, word_ids, special_token_ids=SPECIALS),
        same_draws(select_whole_words, ids, word_ids, special_token_ids=SPECIALS),
    )
    assert torch.equal(
        same_draws(nb["sample_span_lengths"], (50, 7), p=0.3, max_length=6),
        same_draws(sample_span_lengths, (50, 7), p=0.3, max_length=6),
    )


# --------------------------------------------------------------------------- pictures


def test_viewer_html_colours_mask_random_and_kept_tokens():
    from course_utils.viz.masking import STATUS_COLOURS, masked_html

    page = masked_html(
        ["[CLS]", "the", "cat", "sat", "down"], ["[CLS]", "[MASK]", "dog", "sat", "down"], [-100, 5, 6, 7, -100]
    )
    assert page.count(STATUS_COLOURS["mask"]) == 2 and page.count(STATUS_COLOURS["random"]) == 2  # token + legend
    assert page.count(STATUS_COLOURS["kept"]) == 2 and "<s>cat</s>" in page


@pytest.mark.parametrize("strategy", ["token", "whole_word", "span"])
def test_masking_viewer_redraws_for_every_strategy(strategy):
    from course_utils.viz.masking import masking_viewer

    viewer = masking_viewer()
    controls, strategy_buttons, view = viewer.children
    probability = controls.children[0]
    strategy_buttons.value = strategy
    probability.value = 1.0
    tokens = view.value.split("<div>selected")[0]
    assert (
        tokens.count("background") == tokens.count("<span") - 2
    ), "with p = 1 every token but [CLS] and [SEP] is coloured"
    probability.value = 0.0
    assert "background" not in view.value.split("<div>selected")[0]


def test_rate_and_speed_plots_draw():
    import matplotlib.pyplot as plt

    from course_utils.viz.masking import plot_rates_with_bands

    fig = plot_rates_with_bands({"selected": [15, 14, 30]}, {"selected": [100, 100, 100]}, {"selected": 0.15})
    assert "67% inside" in fig.axes[0].get_title()  # 30 of 100 lies outside the 95% band
    plt.close(fig)


def test_speed_plot_labels_its_ticks_with_batch_sizes_and_time_units():
    import matplotlib.pyplot as plt

    from course_utils.viz.masking import duration_label, plot_speed

    assert [duration_label(s) for s in (3.0, 0.5, 2e-5, 1e-3)] == ["3 s", "500 ms", "20 µs", "1 ms"]
    for times in ({"loop": [2e-3, 8e-3, 3e-2], "vectorized": [2e-5, 3e-5, 6e-5]}, {"loop": [2e-4, 4e-4, 7e-4]}):
        fig = plot_speed([1, 4, 16], times, seq_len=8)
        fig.canvas.draw()
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        assert [label.get_text() for label in ax.get_xticklabels()] == ["1", "4", "16"]
        shown = [label.get_text() for label in ax.get_yticklabels() if low <= label.get_position()[1] <= high]
        assert len(shown) >= 2 and all(text.split()[-1] in ("ns", "µs", "ms", "s") for text in shown), shown
        plt.close(fig)
