"""Checks for Lab 1 (the masker): each failure names the misconception it caught.

Randomized results are judged with binomial bounds: an observed count must lie within
5 standard deviations, sqrt(n p (1 - p)), of n p, which a correct function misses with
probability below 1e-6. Distributions are judged with a chi-square test at p-value 1e-4.
"""

from __future__ import annotations

import math

import torch
from scipy.stats import chisquare

from course_utils.checks import expect, expect_input_untouched, expect_tensor, passed
from course_utils.masking import IGNORE_INDEX, span_length_probabilities

PAD, UNK, CLS, SEP, MASK = range(5)
SPECIALS = (PAD, UNK, CLS, SEP, MASK)
SIGMAS = 5


def example_batch(rows: int = 64, seq: int = 128, real: int = 100, vocab: int = 100, seed: int = 0) -> torch.Tensor:
    """``[rows, seq]`` ids: [CLS] tokens [SEP], then [PAD]; ids 0-4 are the specials."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), vocab, (rows, seq), generator=generator)
    ids[:, 0], ids[:, real - 1], ids[:, real:] = CLS, SEP, PAD
    ids[:, real // 2] = MASK  # an already-masked token must not be selected either
    return ids


def binomial_bounds(n: int, p: float, sigmas: float = SIGMAS) -> tuple[float, float]:
    """The range of counts ``n p +- sigmas sqrt(n p (1 - p))``."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def expect_rate(count: int, n: int, p: float, misconception: str, hint: str = "") -> None:
    """``count`` out of ``n`` is within the binomial bounds for rate ``p``."""
    low, high = binomial_bounds(n, p)
    expect(
        low <= count <= high,
        f"{misconception}: observed {count / max(n, 1):.4f} over {n} draws, expected {p:g} "
        f"(5-sigma range {low / n:.4f}..{high / n:.4f})",
        hint,
    )


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_select_positions(select_positions) -> None:
    """``select_positions(input_ids, *, special_token_ids, mlm_probability, generator)`` -> bool ``[B, L]``."""
    ids = example_batch()
    selected = expect_input_untouched(
        select_positions, ids, special_token_ids=SPECIALS, mlm_probability=0.15, generator=_seeded(0)
    )
    expect_tensor(selected, "the selection", shape=ids.shape, dtype=torch.bool)
    passed("returns a bool [B, L] tensor and leaves input_ids alone")
    everything = select_positions(ids, special_token_ids=SPECIALS, mlm_probability=1.0, generator=_seeded(1))
    expect(
        not everything[ids == PAD].any(),
        "you selected a [PAD] position",
        "padding is not text: exclude every id in special_token_ids before drawing",
    )
    expect(
        not everything[torch.isin(ids, torch.tensor(SPECIALS))].any(),
        "you selected a special token ([CLS], [SEP] or [MASK])",
        "every id in special_token_ids is ineligible",
    )
    expect(
        everything[ids >= len(SPECIALS)].all(),
        "with mlm_probability=1 every ordinary token must be selected",
        "select where u < mlm_probability (u ~ U[0, 1) is always below 1)",
    )
    passed("special tokens and padding are never selected")
    eligible = ids >= len(SPECIALS)
    expect_rate(
        int(selected[eligible].sum()),
        int(eligible.sum()),
        0.15,
        "selection rate is not p",
        "select each eligible position independently with probability mlm_probability",
    )
    expect(
        not (selected == selected[:1]).all(),
        "every row got the same selection",
        "draw one number per position, torch.rand(input_ids.shape), not one per column",
    )
    passed("selects 15% of the eligible tokens, independently per position")
    again = select_positions(ids, special_token_ids=SPECIALS, mlm_probability=0.15, generator=_seeded(0))
    expect(
        torch.equal(again, selected),
        "the same generator seed gave a different selection",
        "pass generator=generator to torch.rand",
    )
    passed("reproducible with a generator")


def check_apply_80_10_10(apply_80_10_10) -> None:
    """``apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids, ..., generator)``."""
    vocab = 20
    ids = example_batch(rows=256, vocab=vocab)
    selected = (torch.rand(ids.shape, generator=_seeded(2)) < 0.5) & (ids >= len(SPECIALS))
    masked_ids = expect_input_untouched(
        apply_80_10_10,
        ids,
        selected,
        mask_token_id=MASK,
        vocab_size=vocab,
        special_token_ids=SPECIALS,
        generator=_seeded(3),
    )
    expect_tensor(masked_ids, "masked_ids", shape=ids.shape, dtype=ids.dtype)
    passed("returns new ids of the input's shape and dtype; the input is untouched")
    expect(
        torch.equal(masked_ids[~selected], ids[~selected]),
        "you changed a position that was not selected",
        "only selected positions may become [MASK] or a random token",
    )
    passed("unselected positions are unchanged")
    chosen, original = masked_ids[selected], ids[selected]
    n = len(chosen)
    expect_rate(
        int((chosen == MASK).sum()),
        n,
        0.8,
        "[MASK] share is not 80%",
        "one draw d per selected position: d < mask_replace_prob -> [MASK]",
    )
    expect(
        not torch.isin(chosen[chosen != MASK], torch.tensor(SPECIALS)).any(),
        "random token drawn from special ids",
        "draw from non_special_ids(vocab_size, special_token_ids), not from range(vocab_size)",
    )
    # A random draw equals the original id with probability 1/15: the random share seen is 10% * 14/15.
    expect_rate(
        int(((chosen != MASK) & (chosen != original)).sum()),
        n,
        0.1 * 14 / 15,
        "random share is not 10%",
        "the same draw d: mask_replace_prob <= d < mask_replace_prob + random_replace_prob -> random "
        "(two independent draws give 10% of the remaining 20%, i.e. 2%)",
    )
    expect_rate(
        int((chosen == original).sum()),
        n,
        0.1 + 0.1 / 15,
        "kept share is not 10%",
        "whatever is neither [MASK] nor random keeps its original token",
    )
    passed("80% [MASK], 10% random, 10% kept (5-sigma bounds)")
    random_ids = chosen[(chosen != MASK) & (chosen != original)]
    expect(
        set(random_ids.tolist()) == set(range(len(SPECIALS), vocab)),
        "random tokens do not cover the vocabulary",
        "draw uniformly over all non-special ids, a fresh draw for every position",
    )
    passed("random tokens are ordinary ids, spread over the whole vocabulary")
    only_mask = apply_80_10_10(
        ids,
        selected,
        mask_token_id=MASK,
        vocab_size=vocab,
        special_token_ids=SPECIALS,
        mask_replace_prob=1.0,
        random_replace_prob=0.0,
        generator=_seeded(4),
    )
    expect(
        (only_mask[selected] == MASK).all(),
        "mask_replace_prob is ignored",
        "with mask_replace_prob=1 every selected position becomes [MASK]",
    )
    passed("honours mask_replace_prob and random_replace_prob")


def check_build_labels(build_labels) -> None:
    """``build_labels(input_ids, selected)`` -> labels ``[B, L]``: the original id where selected, else -100."""
    ids = torch.tensor([[CLS, 7, 8, 9, SEP, PAD], [CLS, 5, 6, SEP, PAD, PAD]])
    selected = torch.tensor([[False, True, False, True, False, False], [False, False, True, False, False, False]])
    labels = expect_input_untouched(build_labels, ids, selected)
    expect_tensor(labels, "labels", shape=ids.shape)
    expect(
        not (labels[~selected] == 0).all(),
        "unselected positions hold 0, but 0 is a real token id ([PAD])",
        "use -100, the ignore_index of cross_entropy",
    )
    expect(
        (labels[~selected] == IGNORE_INDEX).all(),
        "loss targets set on unselected positions",
        "every unselected position must hold -100 so that cross_entropy ignores it",
    )
    expect(
        torch.equal(labels[selected], ids[selected]),
        "selected positions must hold the original token id",
        "the model has to predict what was there before masking",
    )
    passed("labels: original ids at the 3 selected positions, -100 elsewhere")
    logits = torch.randn(2, 6, 12, generator=_seeded(5))
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 12), labels.view(-1).long(), ignore_index=IGNORE_INDEX)
    by_hand = torch.nn.functional.cross_entropy(logits[selected], ids[selected])
    expect(
        torch.allclose(loss, by_hand), "cross_entropy(ignore_index=-100) does not score exactly the selected positions"
    )
    passed("cross_entropy(ignore_index=-100) scores exactly the selected positions")


def check_select_whole_words(select_whole_words) -> None:
    """``select_whole_words(input_ids, word_ids, *, special_token_ids, mlm_probability, generator)`` -> bool ``[B, L]``."""
    ids = example_batch(rows=256)
    word_ids = (torch.arange(ids.shape[1]) - 1).div(3, rounding_mode="floor").expand_as(ids).clone()
    word_ids[ids == CLS], word_ids[ids == SEP], word_ids[ids == PAD] = -1, -1, -1
    selected = expect_input_untouched(
        select_whole_words, ids, word_ids, special_token_ids=SPECIALS, mlm_probability=0.15, generator=_seeded(6)
    )
    expect_tensor(selected, "the selection", shape=ids.shape, dtype=torch.bool)
    everything = select_whole_words(
        ids, word_ids, special_token_ids=SPECIALS, mlm_probability=1.0, generator=_seeded(7)
    )
    expect(
        not everything[word_ids < 0].any(),
        "you selected a token outside any word (word id -1, e.g. [PAD])",
        "word id -1 marks tokens that belong to no word",
    )
    expect(
        not everything[torch.isin(ids, torch.tensor(SPECIALS))].any(),
        "you selected a special token",
        "special tokens stay ineligible even inside a word",
    )
    passed("tokens outside words and special tokens are never selected")
    in_word = (word_ids >= 0) & (ids >= len(SPECIALS))
    key = word_ids + (word_ids.max() + 1) * torch.arange(ids.shape[0])[:, None]  # one number per (row, word)
    counts = torch.zeros(int(key.max()) + 1).index_add_(0, key[in_word], torch.ones(int(in_word.sum())))
    hits = torch.zeros_like(counts).index_add_(0, key[in_word], selected[in_word].float())
    words = counts > 0
    expect(
        ((hits[words] == 0) | (hits[words] == counts[words])).all(),
        "tokens of one word were selected separately",
        "draw one number per (row, word) and give it to every token of the word (gather by word_ids)",
    )
    passed("all tokens of a word are selected together")
    expect_rate(
        int((hits[words] > 0).sum()),
        int(words.sum()),
        0.15,
        "word selection rate is not p",
        "each word is selected with probability mlm_probability",
    )
    passed("selects 15% of the words")


def check_sample_span_lengths(sample_span_lengths) -> None:
    """``sample_span_lengths(shape, *, p, max_length, generator)``: SpanBERT's truncated geometric lengths."""
    lengths = sample_span_lengths((200, 250), p=0.2, max_length=10, generator=_seeded(8))
    expect_tensor(lengths, "span lengths", shape=(200, 250), dtype=torch.long)
    expect(lengths.min() >= 1, "you drew a span of length 0", "span lengths start at 1: P(l) for l = 1..max_length")
    expect(lengths.max() <= 10, "a span is longer than max_length", "lengths run over 1..max_length only")
    passed("lengths are long integers in 1..10")
    counts = torch.bincount(lengths.flatten(), minlength=11)[1:]
    expected = span_length_probabilities(0.2, 10) * lengths.numel()
    expect(
        counts[-1] < expected[-1] * 1.5,
        "too many spans of length max_length: you clamped instead of truncating",
        "SpanBERT renormalizes p (1-p)^(l-1) over 1..max_length (mean 3.8); clamping piles the tail onto 10 (mean 4.46)",
    )
    result = chisquare(counts.numpy(), expected.numpy())
    expect(
        result.pvalue > 1e-4,
        f"span lengths do not follow the truncated geometric (chi-square p = {result.pvalue:.2g})",
        "P(length = l) is proportional to p (1 - p)^(l - 1) for l = 1..max_length",
    )
    passed(f"lengths follow the truncated Geometric(0.2), mean {lengths.float().mean():.2f} (SpanBERT: 3.8)")
    short = sample_span_lengths((1000,), p=0.5, max_length=3, generator=_seeded(9))
    expect(
        short.max() <= 3 and abs(short.float().mean().item() - 11 / 7) < 0.15,
        "p and max_length are ignored",
        "use the p and max_length arguments, not SpanBERT's constants",
    )
    passed("honours p and max_length")


# The reference code each exercise must not call: the grader ends a call into any of these with 0 points
# (course_utils.grading.worker). References of other exercises and earlier labs stay allowed.
REFERENCES = {
    "select_positions": ("course_utils.masking:select_positions",),
    "apply_80_10_10": ("course_utils.masking:apply_80_10_10",),
    "build_labels": ("course_utils.masking:build_labels",),
    "select_whole_words": ("course_utils.masking:select_whole_words",),
    "sample_span_lengths": ("course_utils.masking:sample_span_lengths",),
}
