"""Views of a patient for contrastive pretraining: random windows of visits with events dropped.

    view1, view2 = patient_views(sequence, torch.Generator().manual_seed(0))   # two EHRSequences of one patient
    collate = PatientViewsCollate(vocabulary, max_len=128, generator=torch.Generator().manual_seed(0))
    view1, view2 = collate(sequences)             # two ``collate_ehr`` batches, row i of each from patient i

A **view** of a patient is a random contiguous window of its visits (at least ``crop_fraction`` of
them) from which each event is then dropped with probability ``event_dropout``. A view holds only
events of its input, in their order, so a sequence cut at a prediction time never yields a view
with anything after that time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from course_utils.ehr.batching import EHRDataset, collate_ehr
from course_utils.ehr.sequences import EHRSequence, Vocabulary, truncate_left


def check_fraction(name: str, value: float, low_open: bool) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (0.0 < value <= 1.0 if low_open else 0.0 <= value < 1.0)
    )
    if not ok:
        raise ValueError(f"{name} must be a number in {'(0, 1]' if low_open else '[0, 1)'}, got {value!r}")


def patient_view(
    sequence: EHRSequence, generator: torch.Generator, crop_fraction: float = 0.5, event_dropout: float = 0.1
) -> EHRSequence:
    """One random view of ``sequence``: a window of its visits, some events dropped; draws from ``generator`` (torch).

    The window holds ``k`` consecutive visits, ``k`` uniform in ``[ceil(crop_fraction * n), n]`` of the
    ``n`` visits; each of its events is then dropped with probability ``event_dropout`` (at least one
    event always stays). A visit left without events loses its ``[SEP]`` too. The view starts with
    ``[CLS]`` (the age of its first event), each kept visit ends with its ``[SEP]``; ages are kept,
    visits renumbered from 0 with alternating segments, as ``truncate_left`` does.
    """
    check_fraction("crop_fraction", crop_fraction, low_open=True)
    check_fraction("event_dropout", event_dropout, low_open=False)
    if not sequence.tokens or sequence.tokens[0] != "[CLS]":
        raise ValueError("sequence must be an EHRSequence that starts with [CLS] (build_sequences makes them)")
    # the events of each visit, as positions in the sequence; [CLS] and [SEP] are structure, not events
    events_by_visit: dict[int, list[int]] = {}
    for position in range(1, len(sequence.tokens)):
        if sequence.tokens[position] not in ("[CLS]", "[SEP]"):
            events_by_visit.setdefault(sequence.visits[position], []).append(position)
    visits = sorted(events_by_visit)
    if not visits:
        raise ValueError("sequence must hold at least one event besides [CLS] and [SEP]")
    n = len(visits)
    shortest = math.ceil(crop_fraction * n)
    k = shortest + int(torch.randint(n - shortest + 1, (1,), generator=generator))
    start = int(torch.randint(n - k + 1, (1,), generator=generator))
    window = [events_by_visit[visit] for visit in visits[start : start + k]]
    positions = [p for visit in window for p in visit]
    kept = torch.rand(len(positions), generator=generator) >= event_dropout  # [events in the window]
    if not kept.any():
        kept[int(torch.randint(len(positions), (1,), generator=generator))] = True
    kept_positions = {p for p, keep in zip(positions, kept.tolist()) if keep}

    view = EHRSequence(["[CLS]"], [], [0], [0])
    for visit_events in window:
        chosen = [p for p in visit_events if p in kept_positions]
        if not chosen:
            continue
        index = view.visits[-1] + 1 if len(view.tokens) > 1 else 0
        for p in chosen:
            view.tokens.append(sequence.tokens[p])
            view.ages.append(sequence.ages[p])
        view.tokens.append("[SEP]")
        view.ages.append(sequence.ages[chosen[-1]])
        view.visits.extend([index] * (len(chosen) + 1))
        view.segments.extend([index % 2] * (len(chosen) + 1))
    view.ages.insert(0, view.ages[0])  # [CLS] takes the first event's age
    return view


def patient_views(
    sequence: EHRSequence, generator: torch.Generator, crop_fraction: float = 0.5, event_dropout: float = 0.1
) -> tuple[EHRSequence, EHRSequence]:
    """Two independent ``patient_view``s of one patient, drawn from ``generator`` (a CPU ``torch.Generator``)."""
    return (
        patient_view(sequence, generator, crop_fraction, event_dropout),
        patient_view(sequence, generator, crop_fraction, event_dropout),
    )


class PatientViewsCollate:
    """A DataLoader ``collate_fn``: a list of B ``EHRSequence``s -> two batches ``(view1, view2)`` for ``Behrt``.

    Each sequence is first cut to its most recent ``max_len`` tokens (what the encoder reads at
    fine-tuning), then viewed twice; both batches are padded to one length L, so each is a
    ``collate_ehr`` dict of ``[B, L]`` tensors and row i of each holds patient i. New views every call.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        max_len: int,
        generator: torch.Generator,
        crop_fraction: float = 0.5,
        event_dropout: float = 0.1,
    ):
        check_fraction("crop_fraction", crop_fraction, low_open=True)
        check_fraction("event_dropout", event_dropout, low_open=False)
        truncate_left(EHRSequence(["[CLS]"], [0], [0], [0]), max_len)  # validates max_len
        self.vocabulary, self.max_len, self.generator = vocabulary, max_len, generator
        self.crop_fraction, self.event_dropout = crop_fraction, event_dropout

    def __call__(self, sequences: Sequence[EHRSequence]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        pairs = [
            patient_views(truncate_left(s, self.max_len), self.generator, self.crop_fraction, self.event_dropout)
            for s in sequences
        ]
        views = [first for first, _ in pairs] + [second for _, second in pairs]
        both = collate_ehr(EHRDataset(views, self.vocabulary, self.max_len).items)  # [2B, L] per field
        B = len(sequences)
        return {key: value[:B] for key, value in both.items()}, {key: value[B:] for key, value in both.items()}
