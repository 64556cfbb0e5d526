"""BEHRT token sequences: special tokens, one patient's events as tokens with ages and visits, the vocabulary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import meds
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from course_utils.masking import SPECIAL_TOKENS, UNK_ID

MAX_AGE = 120  # ages are clamped to [0, MAX_AGE] years
DAY = np.timedelta64(1, "D")


def is_birth_code(code: str) -> bool:
    """``MEDS_BIRTH`` or a qualified ``MEDS_BIRTH//...``: the MEDS standard allows both."""
    return code == meds.birth_code or code.startswith(f"{meds.birth_code}//")


class EHRSequence(NamedTuple):
    """One patient as BEHRT sees it: parallel lists, one entry per token."""

    tokens: list[str]
    ages: list[int]  # whole years since the birth event (0 if the subject has none)
    visits: list[int]  # 0 for [CLS] and the first visit, 1 for the second, ...
    segments: list[int]  # visit index % 2: BEHRT's alternating A/B segments


def patient_sequence(times, tokens: Sequence[str], visit_gap: np.timedelta64 = DAY) -> EHRSequence:
    """One patient's events (sorted by time, static rows with NaT first) -> ``EHRSequence``.

    The birth event (``MEDS_BIRTH`` or ``MEDS_BIRTH//...``) sets the ages and is not a token;
    static (timeless) events join the first visit.
    A new visit starts where the gap to the previous event exceeds ``visit_gap``, so events at the
    same timestamp always share a visit. Output: ``[CLS]``, then each visit's tokens followed by
    ``[SEP]``; ``[CLS]`` takes the first event's age, each ``[SEP]`` the age and visit of the events before it.
    """
    times = np.asarray(times, dtype="datetime64[us]")
    tokens = list(tokens)
    if len(times) != len(tokens):
        raise ValueError(f"times and tokens must have the same length, got {len(times)} and {len(tokens)}")
    is_birth = np.array([is_birth_code(token) for token in tokens], dtype=bool)
    birth = times[is_birth][0] if is_birth.any() else None
    times = times[~is_birth]
    tokens = [token for token, birth_row in zip(tokens, is_birth) if not birth_row]
    if not tokens:
        raise ValueError("the patient has no events besides the birth; expected at least one event")
    dated = ~np.isnat(times)
    if dated.any():
        first_dated = int(np.argmax(dated))
        if (
            dated[:first_dated].any()
            or not dated[first_dated:].all()
            or (np.diff(times[first_dated:]) < np.timedelta64(0)).any()
        ):
            raise ValueError("times must be sorted ascending, static events (NaT) first, as MEDS stores them")
        times = np.where(dated, times, times[first_dated])
        new_visit = np.concatenate([[True], np.diff(times) > visit_gap])
        visit_of_event = np.cumsum(new_visit) - 1
    else:
        visit_of_event = np.zeros(len(tokens), dtype=np.int64)
    if birth is not None and dated.any():
        age_of_event = np.clip(((times - birth) / DAY / 365.25).astype(np.int64), 0, MAX_AGE)
    else:
        age_of_event = np.zeros(len(tokens), dtype=np.int64)

    out = EHRSequence(["[CLS]"], [int(age_of_event[0])], [0], [0])
    for index, token in enumerate(tokens):
        _append(out, token, int(age_of_event[index]), int(visit_of_event[index]))
        if index + 1 == len(tokens) or visit_of_event[index + 1] != visit_of_event[index]:
            _append(out, "[SEP]", int(age_of_event[index]), int(visit_of_event[index]))
    return out


def _append(sequence: EHRSequence, token: str, age: int, visit: int) -> None:
    sequence.tokens.append(token)
    sequence.ages.append(age)
    sequence.visits.append(visit)
    sequence.segments.append(visit % 2)


def truncate_left(sequence: EHRSequence, max_len: int) -> EHRSequence:
    """Keep ``[CLS]`` and the most recent ``max_len - 1`` tokens (BEHRT); visits renumbered from 0."""
    if not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"max_len must be an int >= 2 (room for [CLS] and one event), got {max_len!r}")
    if len(sequence.tokens) <= max_len:
        return sequence
    keep = slice(len(sequence.tokens) - (max_len - 1), None)
    visits = sequence.visits[keep]
    first = visits[0]
    ages = sequence.ages[keep]
    renumbered = [visit - first for visit in visits]
    return EHRSequence(
        ["[CLS]", *sequence.tokens[keep]], [ages[0], *ages], [0, *renumbered], [0, *(v % 2 for v in renumbered)]
    )


def fit_value_bins(events: pa.Table, num_bins: int = 3) -> dict[str, np.ndarray]:
    """Per code with numeric values, the ``num_bins - 1`` inner quantile edges (fit on training events).

    Null and NaN values are left out, and so are birth rows: a birth is never binned.
    """
    if not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}")
    valued = events.filter(pc.invert(pc.is_nan(events["numeric_value"])))  # a null gives null, which drops the row too
    valued = valued.select(["code", "numeric_value"]).to_pandas()
    valued = valued[~valued["code"].map(is_birth_code)]
    quantiles = np.linspace(0, 1, num_bins + 1)[1:-1]
    return {
        code: np.quantile(group.to_numpy(np.float64), quantiles)
        for code, group in valued.groupby("code")["numeric_value"]
    }


def event_tokens(codes: Sequence[str], values: np.ndarray, bins: dict[str, np.ndarray]) -> list[str]:
    """Codes -> tokens: ``code//Q{k}`` for a value in the k-th quantile bin of its code, else the bare code."""
    values = np.asarray(values, dtype=np.float64)
    tokens = list(codes)
    for index in np.flatnonzero(~np.isnan(values)):
        edges = bins.get(tokens[index])
        if edges is not None:
            tokens[index] = f"{tokens[index]}//Q{int(np.searchsorted(edges, values[index], side='right')) + 1}"
    return tokens


def _event_columns(events: pa.Table, bins: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A sorted MEDS events table -> ``(subject_ids, times, tokens)``, one entry per row."""
    subject_ids = events["subject_id"].to_numpy()
    if (np.diff(subject_ids) < 0).any():
        raise ValueError("events must be sorted by subject_id, as MEDS stores them (read_meds_dataset sorts them)")
    times = events["time"].to_numpy(zero_copy_only=False).astype("datetime64[us]")
    values = events["numeric_value"].to_numpy(zero_copy_only=False).astype(np.float64)
    return subject_ids, times, event_tokens(events["code"].to_pylist(), values, bins)


def build_sequences(events: pa.Table, bins: dict[str, np.ndarray], visit_gap=DAY) -> dict[int, EHRSequence]:
    """Every subject's whole timeline, ``{subject_id: EHRSequence}``, from a sorted MEDS events table.

    A subject with no event besides the birth is left out.
    """
    subject_ids, times, tokens = _event_columns(events, bins)
    starts = np.flatnonzero(np.diff(subject_ids, prepend=subject_ids[:1] - 1))  # each subject's first row
    bounds = np.append(starts, len(subject_ids))
    return {
        int(subject_ids[start]): patient_sequence(times[start:stop], tokens[start:stop], visit_gap)
        for start, stop in zip(bounds[:-1], bounds[1:])
        if not all(is_birth_code(token) for token in tokens[start:stop])
    }


def build_labelled_sequences(
    events: pa.Table, bins: dict[str, np.ndarray], labels: pa.Table, visit_gap=DAY
) -> dict[int, EHRSequence]:
    """One sequence per row of a MEDS label table: ``{label row: EHRSequence}``.

    Row ``i`` (``labels["subject_id"][i]``, ``labels["prediction_time"][i]``) gets its subject's
    events up to and including that prediction time (MEDS label semantics); static rows always
    count. A subject may have several rows, one per prediction time. A row whose subject has no
    event by then besides the birth is left out.
    """
    subject_ids, times, tokens = _event_columns(events, bins)
    label_subjects = labels["subject_id"].to_numpy()
    prediction_times = labels["prediction_time"].to_numpy(zero_copy_only=False).astype("datetime64[us]")
    sequences = {}
    for row, (subject, prediction_time) in enumerate(zip(label_subjects, prediction_times)):
        start, stop = np.searchsorted(subject_ids, subject, "left"), np.searchsorted(subject_ids, subject, "right")
        static = int(np.isnat(times[start:stop]).sum())  # MEDS puts a subject's static rows first
        stop = start + static + int(np.searchsorted(times[start + static : stop], prediction_time, "right"))
        if not all(is_birth_code(token) for token in tokens[start:stop]):
            sequences[row] = patient_sequence(times[start:stop], tokens[start:stop], visit_gap)
    return sequences


class Vocabulary:
    """Token <-> id: the five special tokens first, then every token seen at least ``min_count`` times."""

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"tokens must start with the special tokens {SPECIAL_TOKENS}")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def fit(cls, sequences: Iterable[EHRSequence], min_count: int = 1) -> "Vocabulary":
        """Count tokens over ``sequences`` (the training split) and keep the frequent ones, most frequent first."""
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive int, got {min_count!r}")
        counts = Counter(token for sequence in sequences for token in sequence.tokens if token not in SPECIAL_TOKENS)
        kept = sorted((token for token, count in counts.items() if count >= min_count), key=lambda t: (-counts[t], t))
        return cls([*SPECIAL_TOKENS, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Tokens -> ids, ``[UNK]`` for tokens outside the vocabulary."""
        return [self.index.get(token, UNK_ID) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]
