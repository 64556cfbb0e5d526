"""BERT's masker and its variants: token, whole-word and span masking, and a dynamic-masking collator.

    masked_ids, labels = mask_tokens(input_ids, mask_token_id=4, vocab_size=V, special_token_ids=(0, 1, 2, 3, 4))

Every masker works in two steps. First it *selects* positions: single tokens
(``select_positions``, BERT), all the tokens of a word together (``select_whole_words``)
or spans of whole words with geometric lengths counted in words (``select_spans``,
SpanBERT); special tokens (pad, CLS, SEP, MASK, ...) are never selected. Then it applies the *80-10-10 rule* to the
selected positions (``apply_80_10_10``): 80% become [MASK], 10% a random non-special token
and 10% stay as they are. ``labels`` (``build_labels``) holds the original id at selected
positions and -100 elsewhere, ready for ``cross_entropy(ignore_index=-100)``.

Everything is vectorized over the batch (no Python loop over tokens; span masking loops
over the spans it draws, all rows at once), runs on the device
of ``input_ids``, never modifies its input, and is reproducible with a ``generator``
living on that device. ``MaskingCollator`` pads a list of sequences and masks it anew on
every call, as RoBERTa's dynamic masking does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

IGNORE_INDEX = -100
# One vocabulary layout for every lab: the text tokenizers and the EHR vocabulary both start with these.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
STRUCTURAL_IDS = (PAD_ID, CLS_ID, SEP_ID)  # the sequence's frame, not its content: never masked, never predicted
SPAN_P = 0.2  # SpanBERT's geometric parameter: mean span length 3.8 once truncated at 10
MAX_SPAN_LENGTH = 10
STRATEGIES = ("token", "whole_word", "span")


# --------------------------------------------------------------------------- validation


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_id_tensor(name: str, ids) -> None:
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex() or not ids.dtype.is_signed:
        kind = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a signed integer tensor [batch, seq] (labels need -100), got {kind}")


def validate_replacement_args(mask_token_id, vocab_size, special_token_ids, mask_replace_prob, random_replace_prob):
    """Raise ValueError, naming the argument, for an 80-10-10 rule that cannot be applied."""
    _check_probability("mask_replace_prob", mask_replace_prob)
    _check_probability("random_replace_prob", random_replace_prob)
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
        raise ValueError(
            f"mask_replace_prob + random_replace_prob must be <= 1, got {mask_replace_prob} + {random_replace_prob}"
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int) or not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be an int in [0, vocab_size={vocab_size}), got {mask_token_id!r}")
    _check_special_ids(special_token_ids, vocab_size)


def _check_special_ids(special_token_ids, vocab_size: int | None = None) -> None:
    ids = list(special_token_ids)
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"special_token_ids must be non-negative ints, got {ids!r}")
    if vocab_size is not None and any(i >= vocab_size for i in ids):
        raise ValueError(f"special_token_ids must lie in [0, vocab_size={vocab_size}), got {ids!r}")


def _check_ids_in_vocab(input_ids: torch.Tensor, vocab_size: int) -> None:
    if input_ids.numel():
        low, high = (int(v) for v in input_ids.aminmax())
        if low < 0 or high >= vocab_size:
            raise ValueError(f"vocab_size={vocab_size} does not cover the ids in input_ids (range {low}..{high})")


def _check_word_ids(input_ids: torch.Tensor, word_ids) -> None:
    _check_id_tensor("word_ids", word_ids)
    if word_ids.shape != input_ids.shape:
        raise ValueError(
            f"word_ids must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(word_ids.shape)}"
        )
    if word_ids.dim() != 2:
        raise ValueError(f"word_ids and input_ids must be 2-D [batch, seq], got shape {tuple(word_ids.shape)}")
    if word_ids.numel() and int(word_ids.min()) < -1:
        raise ValueError("word_ids must hold word numbers >= 0, or -1 for tokens outside any word")


def validate_masking_args(
    input_ids, mask_token_id, vocab_size, mlm_probability, mask_replace_prob, random_replace_prob, special_token_ids=()
):
    """Raise ValueError, naming the argument, for anything ``mask_tokens`` cannot honour."""
    _check_id_tensor("input_ids", input_ids)
    _check_probability("mlm_probability", mlm_probability)
    validate_replacement_args(mask_token_id, vocab_size, special_token_ids, mask_replace_prob, random_replace_prob)
    _check_ids_in_vocab(input_ids, vocab_size)


# --------------------------------------------------------------------------- the three steps


def eligible_positions(input_ids: torch.Tensor, special_token_ids: Sequence[int]) -> torch.Tensor:
    """True where ``input_ids`` holds an ordinary (non-special) id: ``[B, L]`` -> bool ``[B, L]``."""
    special = sorted(set(special_token_ids))
    if not special:
        return torch.ones_like(input_ids, dtype=torch.bool)
    if special == list(range(special[0], special[-1] + 1)):  # tokenizers number their specials 0..k-1
        above = input_ids > special[-1]
        return above if special[0] == 0 else above | (input_ids < special[0])
    return ~torch.isin(input_ids, torch.tensor(special, dtype=input_ids.dtype, device=input_ids.device))


def non_special_ids(vocab_size: int, special_token_ids: Sequence[int], device=None) -> torch.Tensor:
    """The ids a random replacement may draw: ``[0, vocab_size)`` minus the specials, as a 1-D tensor."""
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
    allowed[torch.as_tensor(list(special_token_ids), dtype=torch.long, device=device)] = False
    ids = allowed.nonzero().squeeze(1)
    if ids.numel() == 0:
        raise ValueError("special_token_ids cover the whole vocabulary; no id is left for random replacement")
    return ids


@functools.lru_cache(maxsize=32)
def _replacement_ids(vocab_size: int, special_token_ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``non_special_ids``, built once per vocabulary (callers only read it)."""
    return non_special_ids(vocab_size, special_token_ids, device)


def select_positions(
    input_ids: torch.Tensor,
    *,
    special_token_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Select each non-special position with probability ``mlm_probability``: ``[B, L]`` -> bool ``[B, L]``.

    One draw ``u = torch.rand(input_ids.shape)`` per position; a position is selected when
    it is not special and ``u < mlm_probability``.
    """
    _check_id_tensor("input_ids", input_ids)
    _check_probability("mlm_probability", mlm_probability)
    _check_special_ids(special_token_ids)
    u = torch.rand(input_ids.shape, device=input_ids.device, generator=generator)
    selected = u < mlm_probability
    selected &= eligible_positions(input_ids, special_token_ids)
    return selected


def _replace_selected(
    input_ids,
    positions,
    decision,
    *,
    mask_token_id,
    vocab_size,
    special_token_ids,
    mask_replace_prob,
    random_replace_prob,
    generator,
):
    """80-10-10 at the selected ``positions`` (``nonzero(as_tuple=True)`` of the selection, row-major),
    given one ``decision`` ~ U[0, 1) each ``[n]``: below ``mask_replace_prob`` -> [MASK], then up to
    ``mask_replace_prob + random_replace_prob`` -> a random non-special id, else kept. -> new ids ``[B, L]``.

    Only the selected positions are touched, so the work beyond finding them is ~15% of the batch.
    """
    to_mask = decision < mask_replace_prob  # [n]
    to_random = ~to_mask & (decision < mask_replace_prob + random_replace_prob)
    replacements = _replacement_ids(vocab_size, tuple(special_token_ids), input_ids.device)
    draws = torch.randint(len(replacements), (int(to_random.sum()),), device=input_ids.device, generator=generator)
    shown = input_ids[positions].masked_fill(to_mask, mask_token_id)
    shown[to_random] = replacements[draws].to(input_ids.dtype)
    masked_ids = input_ids.clone()
    masked_ids[positions] = shown
    return masked_ids


def apply_80_10_10(
    input_ids: torch.Tensor,
    selected: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: Sequence[int] = (),
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The 80-10-10 rule on the ``selected`` positions of ``input_ids`` ``[B, L]`` -> new ``masked_ids`` ``[B, L]``.

    The selected positions are taken in row-major order (``selected.nonzero()``). One draw each,
    ``d = torch.rand(n_selected)``: ``d < mask_replace_prob`` -> [MASK]; ``d < mask_replace_prob +
    random_replace_prob`` -> random; otherwise kept. The random ids are
    ``non_special_ids(...)[torch.randint(n_allowed, (n_random,))]``, in the same order.
    """
    _check_id_tensor("input_ids", input_ids)
    validate_replacement_args(mask_token_id, vocab_size, special_token_ids, mask_replace_prob, random_replace_prob)
    if not isinstance(selected, torch.Tensor) or selected.dtype != torch.bool or selected.shape != input_ids.shape:
        raise ValueError(f"selected must be a bool tensor shaped like input_ids {tuple(input_ids.shape)}")
    positions = selected.nonzero(as_tuple=True)
    decision = torch.rand(positions[0].shape, device=input_ids.device, generator=generator)
    return _replace_selected(
        input_ids,
        positions,
        decision,
        mask_token_id=mask_token_id,
        vocab_size=vocab_size,
        special_token_ids=special_token_ids,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        generator=generator,
    )


def build_labels(input_ids: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Loss targets: the original id where ``selected``, -100 elsewhere. ``[B, L]`` -> ``[B, L]``."""
    return torch.where(selected, input_ids, IGNORE_INDEX)


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of ``input_ids`` ``[B, L]`` -> ``(masked_ids [B, L], labels [B, L])``; the input is not modified.

    Exactly ``select_positions``, then ``apply_80_10_10``, then ``build_labels`` with the same
    ``generator`` (which must live on ``input_ids``' device); the same seed gives the same masks.
    """
    validate_masking_args(
        input_ids, mask_token_id, vocab_size, mlm_probability, mask_replace_prob, random_replace_prob, special_token_ids
    )
    selected = select_positions(
        input_ids, special_token_ids=special_token_ids, mlm_probability=mlm_probability, generator=generator
    )
    masked_ids = apply_80_10_10(
        input_ids,
        selected,
        mask_token_id=mask_token_id,
        vocab_size=vocab_size,
        special_token_ids=special_token_ids,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        generator=generator,
    )
    return masked_ids, build_labels(input_ids, selected)


# --------------------------------------------------------------------------- whole words


def select_whole_words(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    special_token_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Select whole words with probability ``mlm_probability``: ``[B, L]`` -> bool ``[B, L]``.

    ``word_ids`` ``[B, L]`` numbers the words of each row (0, 1, 2, ...; -1 for tokens outside
    any word, such as padding). One draw per (row, word), ``torch.rand((B, word_ids.max() + 1))``;
    every token of a word whose draw is below ``mlm_probability`` is selected, except special tokens.
    """
    _check_id_tensor("input_ids", input_ids)
    _check_word_ids(input_ids, word_ids)
    _check_probability("mlm_probability", mlm_probability)
    _check_special_ids(special_token_ids)
    words = int(word_ids.max()) + 1 if word_ids.numel() else 0
    word_draws = torch.rand((input_ids.shape[0], max(words, 1)), device=input_ids.device, generator=generator)
    token_draws = word_draws.gather(1, word_ids.clamp(min=0).long())  # [B, W] -> [B, L]
    return (token_draws < mlm_probability) & (word_ids >= 0) & eligible_positions(input_ids, special_token_ids)


def mask_whole_words(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-word masking (BERT, May 2019): ``select_whole_words``, then 80-10-10 per token, then labels.

    ``(input_ids [B, L], word_ids [B, L])`` -> ``(masked_ids [B, L], labels [B, L])``. As in
    BERT's release, each token of a selected word gets its own 80-10-10 decision.
    """
    validate_masking_args(
        input_ids, mask_token_id, vocab_size, mlm_probability, mask_replace_prob, random_replace_prob, special_token_ids
    )
    selected = select_whole_words(
        input_ids, word_ids, special_token_ids=special_token_ids, mlm_probability=mlm_probability, generator=generator
    )
    masked_ids = apply_80_10_10(
        input_ids,
        selected,
        mask_token_id=mask_token_id,
        vocab_size=vocab_size,
        special_token_ids=special_token_ids,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        generator=generator,
    )
    return masked_ids, build_labels(input_ids, selected)


# --------------------------------------------------------------------------- spans


def span_length_probabilities(p: float = SPAN_P, max_length: int = MAX_SPAN_LENGTH) -> torch.Tensor:
    """SpanBERT's length distribution: Geometric(p) on 1..max_length, renormalized. Index k holds P(length = k + 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"p must be a probability in (0, 1], got {p!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    lengths = torch.arange(1, max_length + 1, dtype=torch.float64)
    weights = p * (1 - p) ** (lengths - 1)
    return weights / weights.sum()


def sample_span_lengths(
    shape,
    *,
    p: float = SPAN_P,
    max_length: int = MAX_SPAN_LENGTH,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Span lengths in ``1..max_length`` drawn from ``span_length_probabilities``: a long tensor of ``shape``.

    One ``torch.multinomial(probabilities, numel, replacement=True)`` call, plus 1.
    """
    probabilities = span_length_probabilities(p, max_length).to(device=device, dtype=torch.float32)
    count = torch.Size(shape).numel()
    if count == 0:
        return torch.zeros(shape, dtype=torch.long, device=device)
    return torch.multinomial(probabilities, count, replacement=True, generator=generator).view(shape) + 1


def word_starts(word_ids: torch.Tensor) -> torch.Tensor:
    """True at the first token of each word: ``[B, L]`` -> bool ``[B, L]``.

    A word is a run of tokens sharing one word id >= 0; a token with a negative word id
    (``[CLS]``, ``[SEP]``, padding) belongs to no word.
    """
    previous = F.pad(word_ids[:, :-1], (1, 0), value=-1)  # [B, L]
    return (word_ids >= 0) & (word_ids != previous)


def select_spans(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    special_token_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    span_p: float = SPAN_P,
    max_span_length: int = MAX_SPAN_LENGTH,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SpanBERT selection of whole words: ``(input_ids [B, L], word_ids [B, L])`` ->
    ``(selected bool [B, L], span_index long [B, L], -1 off the spans)``.

    ``word_ids`` as for ``select_whole_words`` (a word is a run of one word id >= 0; -1 off
    words). Only the non-special tokens of words are eligible; each row has a budget of
    ``round(mlm_probability * n)`` tokens, ``n`` its eligible tokens. As in SpanBERT, a row
    repeats until no unselected word fits in what is left of its budget:

    1. draw a length ``l`` in words from ``sample_span_lengths``;
    2. draw a start word uniformly among the unselected words that fit in the budget;
    3. select that word and the next ``l - 1`` words of the row, stopping early at the end of
       the row, at a word already selected, or at the first word that would overspend the budget.

    Spans therefore start at word starts, cover whole words and never overlap (two may touch);
    a row never selects more than its budget. ``span_index`` numbers each row's spans in the
    order they were drawn (0 = the first). Rows are processed together, one span per step.
    """
    _check_id_tensor("input_ids", input_ids)
    _check_word_ids(input_ids, word_ids)
    _check_probability("mlm_probability", mlm_probability)
    _check_special_ids(special_token_ids)
    if isinstance(span_p, bool) or not isinstance(span_p, (int, float)) or not 0.0 < span_p <= 1.0:
        raise ValueError(f"span_p must be a probability in (0, 1], got {span_p!r}")
    if isinstance(max_span_length, bool) or not isinstance(max_span_length, int) or max_span_length < 1:
        raise ValueError(f"max_span_length must be a positive int (words), got {max_span_length!r}")
    device, (batch, seq) = input_ids.device, input_ids.shape
    if batch == 0 or seq == 0:
        return torch.zeros_like(input_ids, dtype=torch.bool), torch.full_like(input_ids, -1, dtype=torch.long)

    # Words in each row, numbered 0, 1, ... in order, and their eligible tokens.
    starts = word_starts(word_ids)  # [B, L]
    word_of_token = torch.where(word_ids >= 0, starts.cumsum(1) - 1, -1)  # [B, L]
    eligible = (word_of_token >= 0) & eligible_positions(input_ids, special_token_ids)  # [B, L]
    words = max(int(starts.sum(1).max()), 1)
    column = word_of_token.clamp(min=0)
    cost = torch.zeros((batch, words), dtype=torch.long, device=device)  # [B, W] eligible tokens per word
    cost.scatter_add_(1, column, eligible.long())
    word_count = starts.sum(1)  # [B]
    remaining = torch.round(cost.sum(1) * mlm_probability).long()  # [B] tokens left to select

    # Column W of the state is a sink for the words a span does not take.
    taken = torch.zeros((batch, words + 1), dtype=torch.bool, device=device)
    span_of_word = torch.full((batch, words + 1), -1, dtype=torch.long, device=device)
    offsets = torch.arange(max_span_length, device=device)  # [M]
    for span in range(words):  # each step selects at least one new word in every row that goes on
        fits = ~taken[:, :words] & (cost > 0) & (cost <= remaining[:, None])  # [B, W]
        going_on = fits.any(1)  # [B]
        if not going_on.any():
            break
        lengths = sample_span_lengths(
            (batch,), p=span_p, max_length=max_span_length, generator=generator, device=device
        )
        draws = torch.rand((batch, words), device=device, generator=generator)
        start = torch.where(fits, draws, -1.0).argmax(1)  # [B], uniform over the words that fit
        candidate = start[:, None] + offsets  # [B, M] the words the span may cover, in order
        in_row = candidate < word_count[:, None]
        candidate = torch.where(in_row, candidate, words)
        candidate_cost = cost.gather(1, candidate.clamp(max=words - 1)) * in_row
        joins = (
            going_on[:, None]
            & in_row
            & (offsets < lengths[:, None])
            & ~taken.gather(1, candidate)
            & (candidate_cost.cumsum(1) <= remaining[:, None])
        )
        joins = joins.long().cumprod(1).bool()  # a span ends at its first word that cannot join
        target = torch.where(joins, candidate, words)
        taken.scatter_(1, target, True)
        span_of_word.scatter_(1, target, span)
        remaining -= (candidate_cost * joins).sum(1)

    selected = eligible & taken.gather(1, column)
    span_index = torch.where(selected, span_of_word.gather(1, column), -1)
    return selected, span_index


def mask_spans(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    span_p: float = SPAN_P,
    max_span_length: int = MAX_SPAN_LENGTH,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SpanBERT masking: ``select_spans``, then 80-10-10 decided once per span, then labels.

    ``(input_ids [B, L], word_ids [B, L])`` -> ``(masked_ids [B, L], labels [B, L])``. As in
    SpanBERT, a whole span becomes [MASK], or random tokens, or stays as it is.
    """
    validate_masking_args(
        input_ids, mask_token_id, vocab_size, mlm_probability, mask_replace_prob, random_replace_prob, special_token_ids
    )
    selected, span_index = select_spans(
        input_ids,
        word_ids,
        special_token_ids=special_token_ids,
        mlm_probability=mlm_probability,
        span_p=span_p,
        max_span_length=max_span_length,
        generator=generator,
    )
    span_draws = torch.rand(input_ids.shape, device=input_ids.device, generator=generator)  # [B, at most L spans]
    positions = selected.nonzero(as_tuple=True)
    decision = span_draws[positions[0], span_index[positions]]  # one draw per span, shared by its tokens
    masked_ids = _replace_selected(
        input_ids,
        positions,
        decision,
        mask_token_id=mask_token_id,
        vocab_size=vocab_size,
        special_token_ids=special_token_ids,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        generator=generator,
    )
    return masked_ids, build_labels(input_ids, selected)


def mask_by_strategy(strategy: str, input_ids: torch.Tensor, word_ids: torch.Tensor | None = None, **options):
    """``mask_tokens``, ``mask_whole_words`` or ``mask_spans``, by name: one of ``STRATEGIES``.

    ``"whole_word"`` and ``"span"`` need ``word_ids`` ``[B, L]``; ``options`` are the maskers'
    keyword arguments (mask_token_id, vocab_size, special_token_ids, ...).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "token":
        return mask_tokens(input_ids, **options)
    if word_ids is None:
        raise ValueError(f"word_ids are needed for strategy={strategy!r} (a tokenizer's word_ids, -1 off words)")
    masker = mask_whole_words if strategy == "whole_word" else mask_spans
    return masker(input_ids, word_ids, **options)


# --------------------------------------------------------------------------- dynamic masking for a DataLoader


class MaskingCollator:
    """A DataLoader ``collate_fn`` that pads and masks anew on every batch (RoBERTa's dynamic masking).

        loader = DataLoader(sequences, batch_size=32, shuffle=True, collate_fn=MaskingCollator(
            mask_token_id=4, vocab_size=V, pad_token_id=0, special_token_ids=(0, 1, 2, 3, 4)))

    Examples are token id lists (or 1-D tensors), or mappings with ``input_ids`` and, for
    ``strategy="whole_word"`` or ``"span"``, ``word_ids`` (None or -1 outside words). Each batch is padded to
    a multiple of ``pad_to_multiple_of`` (8 suits tensor cores) and returned as a dict of
    ``input_ids``, ``attention_mask`` (1 = real token) and ``labels``, all ``[B, L]``.

    With ``generator`` and ``DataLoader(num_workers > 0)``, each worker receives a copy of the
    generator at every epoch; drawing from those copies would repeat the same masks across
    workers and epochs. A worker therefore masks with its own generator, seeded from one draw
    of that copy plus the seed the DataLoader gives this worker for this epoch
    (``get_worker_info().seed``): masks differ across workers and epochs, and a seeded
    DataLoader still repeats them run after run.
    """

    def __init__(
        self,
        *,
        mask_token_id: int,
        vocab_size: int,
        pad_token_id: int,
        special_token_ids: Sequence[int] = (),
        strategy: str = "token",
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        pad_to_multiple_of: int = 8,
        generator: torch.Generator | None = None,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int) or not 0 <= pad_token_id < vocab_size:
            raise ValueError(f"pad_token_id must be an int in [0, vocab_size={vocab_size}), got {pad_token_id!r}")
        _check_probability("mlm_probability", mlm_probability)
        validate_replacement_args(mask_token_id, vocab_size, special_token_ids, mask_replace_prob, random_replace_prob)
        self.pad_token_id = pad_token_id
        self.strategy = strategy
        self.pad_to_multiple_of = pad_to_multiple_of
        self.generator = generator
        self._worker_seed, self._worker_generator = None, None
        self.masking = dict(
            mask_token_id=mask_token_id,
            vocab_size=vocab_size,
            special_token_ids=tuple(sorted({*special_token_ids, pad_token_id})),
            mlm_probability=mlm_probability,
            mask_replace_prob=mask_replace_prob,
            random_replace_prob=random_replace_prob,
        )

    def _masking_generator(self) -> torch.Generator | None:
        """``generator`` in the main process; in a DataLoader worker, one seeded for this worker and epoch."""
        worker = torch.utils.data.get_worker_info()
        if self.generator is None or worker is None:
            return self.generator
        if worker.seed != self._worker_seed:
            draw = int(torch.randint(2**62, (), generator=self.generator))  # the same in every worker and epoch
            self._worker_seed = worker.seed
            self._worker_generator = torch.Generator().manual_seed((draw + worker.seed) % 2**63)
        return self._worker_generator

    def _pad(self, sequences: list[torch.Tensor], value: int) -> torch.Tensor:
        padded = pad_sequence(sequences, batch_first=True, padding_value=value)  # [B, longest]
        extra = -padded.shape[1] % self.pad_to_multiple_of
        return F.pad(padded, (0, extra), value=value)

    def __call__(self, examples: Sequence) -> dict[str, torch.Tensor]:
        if not isinstance(examples, Sequence) or isinstance(examples, (str, bytes)) or len(examples) == 0:
            raise ValueError("examples must be a non-empty list of token id lists (or of dicts with 'input_ids')")
        is_mapping = isinstance(examples[0], Mapping)
        sequences = [torch.as_tensor(e["input_ids"] if is_mapping else e, dtype=torch.long) for e in examples]
        if any(s.dim() != 1 for s in sequences):
            raise ValueError("examples must each be a 1-D sequence of token ids")
        input_ids = self._pad(sequences, self.pad_token_id)  # [B, L]
        attention_mask = self._pad([torch.ones(len(s), dtype=torch.long) for s in sequences], 0)
        word_ids = None
        if self.strategy != "token":
            if not is_mapping or "word_ids" not in examples[0]:
                raise ValueError(f"strategy={self.strategy!r} needs examples as dicts with 'word_ids'")
            words = [torch.tensor([-1 if w is None else w for w in e["word_ids"]], dtype=torch.long) for e in examples]
            word_ids = self._pad(words, -1)
        masked_ids, labels = mask_by_strategy(
            self.strategy, input_ids, word_ids, generator=self._masking_generator(), **self.masking
        )
        return {"input_ids": masked_ids, "attention_mask": attention_mask, "labels": labels}


# -------------------------------------------------------------------------- the course notes' loop, for comparison only


def notes_create_masked_lm_batch(tokens, mask_token_id, mask_prob=0.15, vocab_size=30000):
    """The course notes' masker, kept as it was (only its global MASK_TOKEN_ID became an argument) so
    that Lab 1 and ``benchmarks/bench_masking.py`` can show and time it.

    Returns ``(masked_tokens, targets, mask_positions)``: ``targets`` is the whole input and the
    notes' loss scores ``predictions[mask_positions]`` against ``targets[mask_positions]``. Do not
    use it: it selects padding and special tokens, draws its random ids from the whole vocabulary
    (specials included, as BERT's own data generator does) and loops over every token in Python.
    """
    masked_tokens = tokens.clone()
    targets = tokens.clone()
    mask_positions = torch.rand(tokens.shape) < mask_prob
    for i in range(tokens.shape[0]):
        for j in range(tokens.shape[1]):
            if mask_positions[i, j]:
                rand = torch.rand(1).item()
                if rand < 0.8:
                    masked_tokens[i, j] = mask_token_id
                elif rand < 0.9:
                    masked_tokens[i, j] = torch.randint(0, vocab_size, (1,)).item()
    return masked_tokens, targets, mask_positions
