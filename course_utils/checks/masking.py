"""Checks for Lab 1 (the masker): each failure names the misconception it caught.

Random results are judged by what the exercise promises (each position selected independently
with probability p, ...), never by the order in which a function draws its random numbers.
Every statistical assertion uses exact binomial quantiles (``course_utils.checks.binomial_range``):
a correct function fails one with probability at most ``FALSE_FAILURE`` over seeds (the course's
one policy, ``course_utils.checks.FALSE_FAILURE``), and a test cell (visible check and hidden tests
together) fails correct work with probability at most the sum over its assertions, below 1e-6 in
every cell. Comparing two draws (rows that should differ, two seeds that should differ) fails a
correct function with a probability given where it is made, always below 1e-12.
"""

from __future__ import annotations

import torch
from scipy.stats import binom

from course_utils.checks import (
    FALSE_FAILURE,
    binomial_range,
    expect,
    expect_binomial,
    expect_input_untouched,
    expect_tensor,
    passed,
)
from course_utils.masking import IGNORE_INDEX, span_length_probabilities

PAD, UNK, CLS, SEP, MASK = range(5)
SPECIALS = (PAD, UNK, CLS, SEP, MASK)


def example_batch(rows: int = 64, seq: int = 128, real: int = 100, vocab: int = 100, seed: int = 0) -> torch.Tensor:
    """``[rows, seq]`` ids: [CLS] tokens [SEP], then [PAD]; ids 0-4 are the specials."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), vocab, (rows, seq), generator=generator)
    ids[:, 0], ids[:, real - 1], ids[:, real:] = CLS, SEP, PAD
    ids[:, real // 2] = MASK  # an already-masked token must not be selected either
    return ids


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _special(ids: torch.Tensor, special_token_ids) -> torch.Tensor:
    return torch.isin(ids, torch.tensor(list(special_token_ids), dtype=ids.dtype))


def expect_count(count, n, p: float, misconception: str, hint: str = "", alpha: float = FALSE_FAILURE) -> None:
    """``count`` successes out of ``n`` independent trials of probability ``p``: ``expect_binomial`` with one ``p``
    (the name the lab's hidden tests use)."""
    expect_binomial(count, n, p, None, misconception, hint, alpha=alpha)


def expect_counts_vary(
    counts: torch.Tensor, n: int, p: float, misconception: str, hint: str = "", alpha: float = FALSE_FAILURE
) -> None:
    """``counts`` are independent Binomial(n, p) draws, one per row: no value may occur in more rows than chance
    allows. A count that is a fixed share of every row fails. Each value's frequency is at most Binomial(rows,
    the largest probability of one value); ``alpha / (n + 1)`` per value, so ``alpha`` in all."""
    largest = float(binom.pmf(torch.arange(n + 1).numpy(), n, p).max())
    limit = int(binom.isf(alpha / (n + 1), len(counts), largest))  # P(frequency > limit) <= alpha / (n + 1)
    rows, value = torch.bincount(counts.long().flatten()).max(0)
    expect(
        int(rows) <= limit,
        f"{misconception}: {int(rows)} of {len(counts)} rows hold exactly {int(value)}, chance allows {limit}",
        hint,
    )


def expect_seeded(function, *args, what: str, **kwargs) -> None:
    """The same generator seed gives the same result, and another seed another result (the generator is used).
    Callers state the chance that two seeds agree for a correct function."""
    first = function(*args, generator=_seeded(0), **kwargs)
    again = function(*args, generator=_seeded(0), **kwargs)
    other = function(*args, generator=_seeded(1), **kwargs)
    expect(
        torch.equal(first, again),
        f"the same generator seed gave a different {what}",
        "draw every random number with generator=generator, not from the global random state",
    )
    expect(
        not torch.equal(first, other),
        f"two different generator seeds gave the same {what}: the generator is not used",
        "pass generator=generator to every random draw, and do not reseed inside the function",
    )


def word_counts(word_ids: torch.Tensor, eligible: torch.Tensor, selected: torch.Tensor):
    """For each (row, word) holding an ``eligible`` token: ``(eligible tokens, selected eligible tokens)``, 1-D."""
    key = word_ids + (word_ids.max() + 1) * torch.arange(word_ids.shape[0])[:, None]  # one number per (row, word)
    ones = torch.ones(int(eligible.sum()))
    tokens = torch.zeros(int(key.max()) + 1).index_add_(0, key[eligible], ones)
    hits = torch.zeros_like(tokens).index_add_(0, key[eligible], selected[eligible].float())
    words = tokens > 0
    return tokens[words], hits[words]


def expect_span_lengths(lengths: torch.Tensor, p: float, max_length: int, alpha: float = FALSE_FAILURE) -> None:
    """Each length's count is Binomial(n, P(length)) under the truncated Geometric(p): ``alpha / max_length`` each."""
    probabilities = span_length_probabilities(p, max_length).tolist()
    counts = torch.bincount(lengths.flatten().long(), minlength=max_length + 1)[1:].tolist()
    n = lengths.numel()
    _, most = binomial_range(n, probabilities[-1], alpha=alpha / max_length)  # the longest length's range
    expect(
        counts[-1] <= most,
        f"too many spans of length max_length={max_length}: you clamped instead of truncating "
        f"({counts[-1]} of {n}, a correct function draws at most {most})",
        "SpanBERT renormalizes p (1-p)^(l-1) over 1..max_length; clamping a geometric draw piles its whole "
        "tail onto max_length",
    )
    for length, (count, probability) in enumerate(zip(counts, probabilities), start=1):
        expect_binomial(
            count,
            n,
            probability,
            None,
            f"span lengths do not follow the truncated Geometric({p:g}) on 1..{max_length}, length {length}",
            "P(length = l) is proportional to p (1 - p)^(l - 1) for l = 1..max_length",
            alpha=alpha / max_length,
        )


def check_select_positions(select_positions) -> None:
    """``select_positions(input_ids, *, special_token_ids, mlm_probability, generator)`` -> bool ``[B, L]``."""
    ids = example_batch()  # 64 rows, each with 97 ordinary tokens at the same places
    selected = expect_input_untouched(
        select_positions, ids, special_token_ids=SPECIALS, mlm_probability=0.15, generator=_seeded(0)
    )
    expect_tensor(selected, "the selection", shape=ids.shape, dtype=torch.bool)
    passed("returns a bool [B, L] tensor and leaves input_ids alone")
    everything = select_positions(ids, special_token_ids=SPECIALS, mlm_probability=1.0, generator=_seeded(1))
    expect(
        not everything[ids == PAD].any(),
        "you selected a [PAD] position",
        "padding is not text: exclude every id in special_token_ids",
    )
    expect(
        not everything[_special(ids, SPECIALS)].any(),
        "you selected a special token ([CLS], [SEP] or [MASK])",
        "every id in special_token_ids is ineligible, not only [PAD]",
    )
    ordinary = ~_special(ids, SPECIALS)
    expect(
        everything[ordinary].all(),
        "with mlm_probability=1 every ordinary token must be selected",
        "each eligible position is selected with probability mlm_probability",
    )
    passed("special tokens and padding are never selected")
    # 6208 ordinary positions, each selected with probability 0.15: exact binomial range, false failure FALSE_FAILURE.
    expect_count(
        selected[ordinary].sum(),
        ordinary.sum(),
        0.15,
        "selection rate is not mlm_probability",
        "select each eligible position independently with probability mlm_probability",
    )
    # Each row's count is Binomial(97, 0.15): no count may repeat in more rows than chance allows (FALSE_FAILURE).
    expect_counts_vary(
        selected.sum(1),
        int(ordinary[0].sum()),
        0.15,
        "every row got (nearly) the same number of selected tokens",
        "select each position independently with probability mlm_probability, not exactly 15% of every row: "
        "the count varies from row to row",
    )
    # Two rows agree with probability 0.745^97 < 1e-12 (0.745 = 0.85^2 + 0.15^2 per ordinary position).
    expect(
        not (selected == selected[:1]).all(),
        "every row got the same selection",
        "draw for every position of the batch, not one draw per column shared by the rows",
    )
    passed("selects 15% of the eligible tokens, independently per position")
    # Two seeds agree with probability 0.745^6208 (< 1e-300).
    expect_seeded(select_positions, ids, what="selection", special_token_ids=SPECIALS, mlm_probability=0.15)
    passed("reproducible with a generator, and the generator is used")


def check_apply_80_10_10(apply_80_10_10) -> None:
    """``apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids, ..., generator)``."""
    vocab = 20  # 15 ordinary ids, 5 to 19
    ids = example_batch(rows=256, vocab=vocab)
    selected = (torch.rand(ids.shape, generator=_seeded(2)) < 0.5) & ~_special(ids, SPECIALS)
    rule = dict(mask_token_id=MASK, vocab_size=vocab, special_token_ids=SPECIALS)
    masked_ids = expect_input_untouched(apply_80_10_10, ids, selected, generator=_seeded(3), **rule)
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
    expect(
        not _special(chosen[chosen != MASK], SPECIALS).any(),
        "random token drawn from special ids",
        "draw from non_special_ids(vocab_size, special_token_ids), not from range(vocab_size)",
    )
    # About 12,400 selected positions. Each, independently: [MASK] with probability 0.8; a random id (one of 15,
    # so 1/15 of them equal the original and read as kept) with 0.1; kept with 0.1. Exact binomial ranges,
    # false failure FALSE_FAILURE each.
    expect_count(
        (chosen == MASK).sum(),
        n,
        0.8,
        "[MASK] share is not mask_replace_prob (80%)",
        "one decision per selected position: [MASK] with probability mask_replace_prob",
    )
    expect_count(
        ((chosen != MASK) & (chosen != original)).sum(),
        n,
        0.1 * 14 / 15,
        "random share is not random_replace_prob (10%)",
        "each selected position becomes random with probability random_replace_prob; two independent draws "
        "('80% [MASK], then 10% random') give 10% of the remaining 20%, i.e. 2%",
    )
    expect_count(
        (chosen == original).sum(),
        n,
        0.1 + 0.1 / 15,
        "kept share is not 10%",
        "whatever is neither [MASK] nor random keeps its original token",
    )
    passed("80% [MASK], 10% random, 10% kept (exact binomial ranges)")
    # An ordinary id is missing with probability below 15 (1 - 0.1 / 15 * 14 / 15)^12000 < 1e-30.
    random_ids = chosen[(chosen != MASK) & (chosen != original)]
    expect(
        set(random_ids.tolist()) == set(range(len(SPECIALS), vocab)),
        "random tokens do not cover the vocabulary",
        "draw uniformly over all non-special ids, a fresh draw for every position",
    )
    passed("random tokens are ordinary ids, spread over the whole vocabulary")
    only_mask = apply_80_10_10(
        ids, selected, mask_replace_prob=1.0, random_replace_prob=0.0, generator=_seeded(4), **rule
    )
    expect(
        (only_mask[selected] == MASK).all(),
        "mask_replace_prob is ignored",
        "with mask_replace_prob=1 every selected position becomes [MASK]",
    )
    passed("honours mask_replace_prob and random_replace_prob")
    # Two seeds agree at a selected position with probability below 0.7: at all 12,400 below 1e-300.
    expect_seeded(apply_80_10_10, ids, selected, what="masked ids", **rule)
    passed("reproducible with a generator, and the generator is used")


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
    labels32 = build_labels(ids.int(), selected)
    expect(
        isinstance(labels32, torch.Tensor) and labels32.dtype == torch.int32 and torch.equal(labels32.long(), labels),
        "labels do not keep the dtype of input_ids (int32 in, int32 out)",
        "build them from input_ids, e.g. torch.where(selected, input_ids, -100)",
    )
    passed("labels keep the dtype of input_ids")
    logits = torch.randn(2, 6, 12, generator=_seeded(5))
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 12), labels.view(-1).long(), ignore_index=IGNORE_INDEX)
    by_hand = torch.nn.functional.cross_entropy(logits[selected], ids[selected])
    expect(
        torch.allclose(loss, by_hand), "cross_entropy(ignore_index=-100) does not score exactly the selected positions"
    )
    passed("cross_entropy(ignore_index=-100) scores exactly the selected positions")


def check_select_whole_words(select_whole_words) -> None:
    """``select_whole_words(input_ids, word_ids, *, special_token_ids, mlm_probability, generator)``
    -> bool ``[B, L]``."""
    ids = example_batch(rows=256)
    word_ids = (torch.arange(ids.shape[1]) - 1).div(3, rounding_mode="floor").expand_as(ids).clone()  # 3 per word
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
        not everything[_special(ids, SPECIALS)].any(),
        "you selected a special token",
        "special tokens stay ineligible even inside a word",
    )
    in_word = (word_ids >= 0) & ~_special(ids, SPECIALS)
    expect(
        everything[in_word].all(),
        "with mlm_probability=1 every ordinary token of every word must be selected",
        "each word is selected with probability mlm_probability, and then all its non-special tokens are",
    )
    passed("tokens outside words and special tokens are never selected")
    tokens, hits = word_counts(word_ids, in_word, selected)
    expect(
        ((hits == 0) | (hits == tokens)).all(),
        "tokens of one word were selected separately",
        "draw once per (row, word) and give that draw to every token of the word (gather by word_ids)",
    )
    passed("all tokens of a word are selected together")
    # 8448 words with an ordinary token, each selected with probability 0.15: exact range, false failure FALSE_FAILURE.
    expect_count(
        (hits > 0).sum(),
        len(tokens),
        0.15,
        "word selection rate is not mlm_probability",
        "each (row, word) is selected with probability mlm_probability",
    )
    # The rows share their word layout; two rows agree with probability 0.745^33 < 1e-4, all 256 below 1e-1000.
    expect(
        not (selected == selected[:1]).all(),
        "every row got the same selection",
        "word 3 of row 0 and word 3 of row 1 are different words: draw once per (row, word)",
    )
    passed("selects 15% of the words, independently per row")
    # Two seeds agree with probability 0.745^8448 (< 1e-300).
    expect_seeded(select_whole_words, ids, word_ids, what="selection", special_token_ids=SPECIALS, mlm_probability=0.15)
    passed("reproducible with a generator, and the generator is used")


def check_sample_span_lengths(sample_span_lengths) -> None:
    """``sample_span_lengths(shape, *, p, max_length, generator)``: SpanBERT's truncated geometric lengths."""
    lengths = sample_span_lengths((200, 250), p=0.2, max_length=10, generator=_seeded(8))
    expect_tensor(lengths, "span lengths", shape=(200, 250), dtype=torch.long)
    expect(lengths.min() >= 1, "you drew a span of length 0", "span lengths start at 1: P(l) for l = 1..max_length")
    expect(lengths.max() <= 10, "a span is longer than max_length", "lengths run over 1..max_length only")
    passed("lengths are long integers in 1..10")
    # 50,000 lengths: each length's count against its exact binomial range, FALSE_FAILURE / 10 each, so
    # FALSE_FAILURE for all ten.
    expect_span_lengths(lengths, 0.2, 10)
    passed(f"lengths follow the truncated Geometric(0.2), mean {lengths.float().mean():.2f} (SpanBERT: 3.8)")
    short = sample_span_lengths((100, 100), p=0.5, max_length=3, generator=_seeded(9))
    expect(
        isinstance(short, torch.Tensor) and short.shape == (100, 100) and short.max() <= 3,
        "p and max_length are ignored",
        "use the p and max_length arguments, not SpanBERT's constants",
    )
    # 10,000 lengths from P = (4, 2, 1) / 7: false failure FALSE_FAILURE.
    expect_span_lengths(short, 0.5, 3)
    passed("honours p and max_length")
    # Two seeds agree on 2,000 lengths with probability (sum of P(l)^2 < 0.15)^2000 (< 1e-300).
    expect_seeded(sample_span_lengths, (2000,), what="span lengths", p=0.2, max_length=10)
    passed("reproducible with a generator, and the generator is used")


# The reference code each exercise must not call: the grader ends a call into any of these with 0 points
# (course_utils.grading.worker). References of other exercises and earlier labs stay allowed.
REFERENCES = {
    "select_positions": ("course_utils.masking:select_positions",),
    "apply_80_10_10": ("course_utils.masking:apply_80_10_10",),
    "build_labels": ("course_utils.masking:build_labels",),
    "select_whole_words": ("course_utils.masking:select_whole_words",),
    "sample_span_lengths": ("course_utils.masking:sample_span_lengths",),
}
