"""Lab 1's grading: other correct ways to write each exercise earn full marks, known mistakes earn nothing.

Random exercises are graded on what they promise (rates, invariants, reproducibility), so an
implementation that draws its random numbers in another order than the reference still passes.
Each submission graded here answers every exercise with a different variant, so six gradings
cover them all; the visible checks are also run directly on each variant, which is quick.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import pytest
from submissions import full_marks, grade, points, submission

from course_utils.checks import Misconception
from course_utils.checks import masking as checks

LAB = "lab01_masking"

# ----------------------------------------------------------------------------- correct alternatives

CORRECT = {
    ("select_positions", "bernoulli"): """
import torch

def select_positions(input_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    chances = torch.full(input_ids.shape, float(mlm_probability), device=input_ids.device)
    drawn = torch.bernoulli(chances, generator=generator).bool()
    specials = torch.tensor(list(special_token_ids), dtype=input_ids.dtype, device=input_ids.device)
    return drawn & ~torch.isin(input_ids, specials)
""",
    ("select_positions", "uniform threshold, loop over special ids"): """
import torch

def select_positions(input_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    eligible = torch.ones_like(input_ids, dtype=torch.bool)
    for token in special_token_ids:
        eligible &= input_ids != token
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    return eligible & (u < mlm_probability)
""",
    ("apply_80_10_10", "one draw per position of the full shape"): """
import torch
from course_utils.masking import non_special_ids

def apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids=(),
                   mask_replace_prob=0.8, random_replace_prob=0.1, generator=None):
    d = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    to_mask = selected & (d < mask_replace_prob)
    to_random = selected & ~to_mask & (d < mask_replace_prob + random_replace_prob)
    allowed = non_special_ids(vocab_size, special_token_ids, input_ids.device)
    picks = allowed[torch.randint(len(allowed), input_ids.shape, generator=generator, device=input_ids.device)]
    masked_ids = torch.where(to_random, picks.to(input_ids.dtype), input_ids)
    return masked_ids.masked_fill(to_mask, mask_token_id)
""",
    ("apply_80_10_10", "Hugging Face style, multinomial random ids"): """
import torch

def apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids=(),
                   mask_replace_prob=0.8, random_replace_prob=0.1, generator=None):
    masked_ids = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, float(mask_replace_prob)), generator=generator).bool()
    to_mask &= selected
    of_the_rest = random_replace_prob / (1 - mask_replace_prob) if mask_replace_prob < 1 else 0.0
    to_random = torch.bernoulli(torch.full(input_ids.shape, min(of_the_rest, 1.0)), generator=generator).bool()
    to_random &= selected & ~to_mask
    masked_ids[to_mask] = mask_token_id
    weights = torch.ones(vocab_size)
    weights[list(special_token_ids)] = 0
    count = int(to_random.sum())
    if count:
        picks = torch.multinomial(weights, count, replacement=True, generator=generator)
        masked_ids[to_random] = picks.to(input_ids.dtype)
    return masked_ids
""",
    ("build_labels", "clone and masked_fill"): """
def build_labels(input_ids, selected):
    return input_ids.clone().masked_fill(~selected, -100)
""",
    ("build_labels", "torch.where with a scalar"): """
import torch

def build_labels(input_ids, selected):
    return torch.where(selected, input_ids, -100)
""",
    ("select_whole_words", "bernoulli per (row, word)"): """
import torch

def select_whole_words(input_ids, word_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    chances = torch.full((input_ids.shape[0], int(word_ids.max()) + 1), float(mlm_probability))
    words = torch.bernoulli(chances, generator=generator).bool()
    tokens = words.gather(1, word_ids.clamp(min=0).long())
    specials = torch.tensor(list(special_token_ids), dtype=input_ids.dtype)
    return tokens & (word_ids >= 0) & ~torch.isin(input_ids, specials)
""",
    ("select_whole_words", "python loop over words"): """
import torch

def select_whole_words(input_ids, word_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    selected = torch.zeros(input_ids.shape, dtype=torch.bool)
    for row in range(input_ids.shape[0]):
        for word in word_ids[row].unique().tolist():
            if word >= 0 and torch.rand(1, generator=generator).item() < mlm_probability:
                selected[row] |= word_ids[row] == word
    for token in special_token_ids:
        selected &= input_ids != token
    return selected
""",
    ("sample_span_lengths", "inverse CDF"): """
import torch

def sample_span_lengths(shape, *, p=0.2, max_length=10, generator=None):
    lengths = torch.arange(1, max_length + 1, dtype=torch.float64)
    weights = p * (1 - p) ** (lengths - 1)
    cumulative = (weights / weights.sum()).cumsum(0)
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.searchsorted(cumulative, u, right=True).clamp(max=max_length - 1) + 1
""",
    ("sample_span_lengths", "multinomial on unnormalized weights"): """
import torch

def sample_span_lengths(shape, *, p=0.2, max_length=10, generator=None):
    weights = torch.tensor([p * (1 - p) ** k for k in range(max_length)], dtype=torch.float64)
    count = 1
    for size in shape:
        count *= size
    return torch.multinomial(weights, count, replacement=True, generator=generator).reshape(shape) + 1
""",
}

# ----------------------------------------------------------------------------- known mistakes


class Mistake(NamedTuple):
    source: str
    feedback: str  # what the first line of the feedback names
    visible: bool  # whether the visible check already catches it


WRONG = {
    ("select_positions", "exactly 15% of every row"): Mistake(
        """
import torch

def select_positions(input_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(list(special_token_ids), dtype=input_ids.dtype))
    scores = torch.rand(input_ids.shape, generator=generator).masked_fill(special, 2.0)
    count = ((~special).sum(1, keepdim=True) * mlm_probability).round().long()
    return scores.argsort(1).argsort(1) < count
""",
        "every row got (nearly) the same number of selected tokens",
        True,
    ),
    ("select_positions", "[CLS] and [SEP] selected, only [PAD] excluded"): Mistake(
        """
import torch

def select_positions(input_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    return (torch.rand(input_ids.shape, generator=generator) < mlm_probability) & (input_ids != 0)
""",
        "you selected a special token ([CLS], [SEP] or [MASK])",
        True,
    ),
    ("select_positions", "special ids hard-coded as >= 5"): Mistake(
        """
import torch

def select_positions(input_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    return (torch.rand(input_ids.shape, generator=generator) < mlm_probability) & (input_ids >= 5)
""",
        "the selection is not exactly the ordinary tokens",
        False,
    ),
    ("apply_80_10_10", "two independent draws"): Mistake(
        """
import torch
from course_utils.masking import non_special_ids

def apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids=(),
                   mask_replace_prob=0.8, random_replace_prob=0.1, generator=None):
    to_mask = selected & (torch.rand(input_ids.shape, generator=generator) < mask_replace_prob)
    to_random = selected & ~to_mask & (torch.rand(input_ids.shape, generator=generator) < random_replace_prob)
    allowed = non_special_ids(vocab_size, special_token_ids)
    picks = allowed[torch.randint(len(allowed), input_ids.shape, generator=generator)].to(input_ids.dtype)
    return torch.where(to_random, picks, input_ids).masked_fill(to_mask, mask_token_id)
""",
        "random share is not random_replace_prob",
        True,
    ),
    ("apply_80_10_10", "80-10-10 over all tokens"): Mistake(
        """
import torch
from course_utils.masking import non_special_ids

def apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids=(),
                   mask_replace_prob=0.8, random_replace_prob=0.1, generator=None):
    d = torch.rand(input_ids.shape, generator=generator)
    allowed = non_special_ids(vocab_size, special_token_ids)
    picks = allowed[torch.randint(len(allowed), input_ids.shape, generator=generator)].to(input_ids.dtype)
    masked_ids = torch.where(d < mask_replace_prob + random_replace_prob, picks, input_ids)
    return masked_ids.masked_fill(d < mask_replace_prob, mask_token_id)
""",
        "you changed a position that was not selected",
        True,
    ),
    ("apply_80_10_10", "random ids from the whole vocabulary"): Mistake(
        """
import torch

def apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids=(),
                   mask_replace_prob=0.8, random_replace_prob=0.1, generator=None):
    d = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (d < mask_replace_prob)
    to_random = selected & ~to_mask & (d < mask_replace_prob + random_replace_prob)
    picks = torch.randint(vocab_size, input_ids.shape, generator=generator).to(input_ids.dtype)
    return torch.where(to_random, picks, input_ids).masked_fill(to_mask, mask_token_id)
""",
        "random token drawn from special ids",
        True,
    ),
    ("apply_80_10_10", "special ids hard-coded as range(5)"): Mistake(
        """
import torch

def apply_80_10_10(input_ids, selected, *, mask_token_id, vocab_size, special_token_ids=(),
                   mask_replace_prob=0.8, random_replace_prob=0.1, generator=None):
    d = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (d < mask_replace_prob)
    to_random = selected & ~to_mask & (d < mask_replace_prob + random_replace_prob)
    allowed = torch.tensor([token for token in range(vocab_size) if token not in range(5)])
    picks = allowed[torch.randint(len(allowed), input_ids.shape, generator=generator)].to(input_ids.dtype)
    return torch.where(to_random, picks, input_ids).masked_fill(to_mask, mask_token_id)
""",
        "random token drawn from special ids (special_token_ids=(0, 3, 17, 29))",
        False,
    ),
    ("build_labels", "0 instead of -100"): Mistake(
        """
import torch

def build_labels(input_ids, selected):
    return torch.where(selected, input_ids, 0)
""",
        "unselected positions hold 0",
        True,
    ),
    ("select_whole_words", "tokens selected independently"): Mistake(
        """
import torch

def select_whole_words(input_ids, word_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(list(special_token_ids), dtype=input_ids.dtype))
    u = torch.rand(input_ids.shape, generator=generator)
    return (u < mlm_probability) & (word_ids >= 0) & ~special
""",
        "tokens of one word were selected separately",
        True,
    ),
    ("select_whole_words", "special ids hard-coded as 0..4"): Mistake(
        """
import torch

def select_whole_words(input_ids, word_ids, *, special_token_ids=(), mlm_probability=0.15, generator=None):
    draws = torch.rand((input_ids.shape[0], int(word_ids.max()) + 1), generator=generator)
    tokens = draws.gather(1, word_ids.clamp(min=0).long()) < mlm_probability
    return tokens & (word_ids >= 0) & ~torch.isin(input_ids, torch.arange(5, dtype=input_ids.dtype))
""",
        "the selection is not exactly the non-special tokens inside words",
        False,
    ),
    ("sample_span_lengths", "clamped geometric"): Mistake(
        """
import math
import torch

def sample_span_lengths(shape, *, p=0.2, max_length=10, generator=None):
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    geometric = torch.floor(torch.log1p(-u) / math.log1p(-p)) + 1
    return geometric.clamp(max=max_length).long()
""",
        "you clamped instead of truncating",
        True,
    ),
}

EXERCISES = ("select_positions", "apply_80_10_10", "build_labels", "select_whole_words", "sample_span_lengths")


def variants_of(exercise: str) -> list[tuple[str, str]]:
    return [key for key in (*CORRECT, *WRONG) if key[0] == exercise]


SUBMISSIONS = max(len(variants_of(exercise)) for exercise in EXERCISES)


def slot(key: tuple[str, str]) -> int:
    """Which submission answers ``key``'s exercise with ``key``'s variant."""
    return variants_of(key[0]).index(key)


def source(key: tuple[str, str]) -> str:
    return CORRECT[key] if key in CORRECT else WRONG[key].source


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """``graded(i)``: the report of submission ``i``, graded once."""

    @functools.cache
    def grade_slot(index: int):
        answers = {exercise: source(key) for exercise in EXERCISES for key in variants_of(exercise)[index : index + 1]}
        return grade(submission(tmp_path_factory.mktemp(f"submission{index}"), LAB, answers))

    return grade_slot


def define(key: tuple[str, str]):
    namespace: dict = {}
    exec(compile(source(key), f"<{key[1]}>", "exec"), namespace)
    return namespace[key[0]]


def names(keys):
    return [f"{exercise}: {variant}" for exercise, variant in keys]


def test_every_exercise_has_two_correct_alternatives_and_six_gradings_cover_all_variants():
    assert all(len([key for key in CORRECT if key[0] == exercise]) >= 2 for exercise in EXERCISES)
    assert SUBMISSIONS <= 6


@pytest.mark.parametrize("key", list(CORRECT), ids=names(CORRECT))
def test_visible_check_passes_a_correct_alternative(key):
    getattr(checks, f"check_{key[0]}")(define(key))


VISIBLE = [key for key in WRONG if WRONG[key].visible]


@pytest.mark.parametrize("key", VISIBLE, ids=names(VISIBLE))
def test_visible_check_names_the_mistake(key):
    with pytest.raises(Misconception) as failure:
        getattr(checks, f"check_{key[0]}")(define(key))
    assert WRONG[key].feedback in str(failure.value).splitlines()[0]


@pytest.mark.notebook
@pytest.mark.parametrize("key", list(CORRECT), ids=names(CORRECT))
def test_correct_alternative_earns_full_marks(key, graded):
    report = graded(slot(key))
    cell = f"test_{key[0]}"
    messages = {c.cell_id: c.message for c in report.cells}
    assert points(report)[cell] == full_marks(report)[cell] > 0, messages[cell]


@pytest.mark.notebook
@pytest.mark.parametrize("key", list(WRONG), ids=names(WRONG))
def test_known_mistake_earns_nothing_and_is_named(key, graded):
    report = graded(slot(key))
    cell = f"test_{key[0]}"
    messages = {c.cell_id: c.message for c in report.cells}
    assert points(report)[cell] == 0, f"{key[1]} earned points"
    assert messages[cell].startswith("Misconception: ") and WRONG[key].feedback in messages[cell], messages[cell]
