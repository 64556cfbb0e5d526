"""Lab 6's sequence experiment: contrastive (SimCLR-style) versus masked-event pretraining of BEHRT on Lab 4's cohort.

    view1, view2 = patient_views(sequence, torch.Generator().manual_seed(0))   # two EHRSequences of one patient
    collate = PatientViewsCollate(vocabulary, max_len=128, generator=torch.Generator().manual_seed(0))
    model = BehrtContrastive(BehrtConfig(vocab_size=len(vocabulary)))
    history = fit(model, DataLoader(train_sequences, batch_size=32, collate_fn=collate), contrastive_event_loss, config)
    runs = label_budget_experiment(model.behrt, vocabulary, ...)           # fine-tuned exactly as in Lab 4

    runs = sequence_pretraining_comparison()     # the whole experiment, sized by the profile, as one tidy table

A **view** of a patient is a random contiguous window of its visits (at least ``crop_fraction`` of
them) from which each event is then dropped with probability ``event_dropout``. A view holds only
events of its input, in their order, so a sequence cut at a prediction time never yields a view
with anything after that time. ``BehrtContrastive`` encodes both views with Lab 4's ``Behrt``,
projects each ``[CLS]`` state with SimCLR's ``ProjectionHead`` and scores the pairs with
``nt_xent_loss``: the other patients of the batch are the negatives.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_utils.contrastive import ProjectionHead, nt_xent_loss
from course_utils.device import by_profile, get_device, pin_memory, seed_everything
from course_utils.ehr.batching import EHRDataset, LengthBucketSampler, collate_ehr
from course_utils.ehr.label_budget import BAG_OF_CODES, ORACLE, PRETRAINED, SCRATCH, FineTuning, label_budget_experiment
from course_utils.ehr.reader import read_labels, read_meds_dataset
from course_utils.ehr.sequences import (
    EHRSequence,
    Vocabulary,
    build_labelled_sequences,
    build_sequences,
    fit_value_bins,
    truncate_left,
)
from course_utils.ehr.synthetic import ORACLE_SUBDIRECTORY, TASK_NAME, write_meds_dataset
from course_utils.models.behrt import Behrt, BehrtConfig, BehrtForMaskedEvents, masked_event_loss
from course_utils.train import TrainConfig, fit

MASKED_EVENTS, CONTRASTIVE = "masked events", "contrastive"
PRETRAININGS = (MASKED_EVENTS, CONTRASTIVE, SCRATCH, BAG_OF_CODES, ORACLE)  # values of the table's `pretraining`
COLUMNS = ["pretraining", "budget", "repeat", "auroc", "auprc", "best_step", "steps", "pretraining_flops_per_step"]


def _check_fraction(name: str, value: float, low_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        0.0 < value <= 1.0 if low_open else 0.0 <= value < 1.0
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
    _check_fraction("crop_fraction", crop_fraction, low_open=True)
    _check_fraction("event_dropout", event_dropout, low_open=False)
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
        _check_fraction("crop_fraction", crop_fraction, low_open=True)
        _check_fraction("event_dropout", event_dropout, low_open=False)
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


class BehrtContrastive(nn.Module):
    """Lab 4's ``Behrt`` with SimCLR's projection head on ``[CLS]``: ``loss = model(view1, view2)``.

    ``model.behrt`` is the encoder that fine-tuning reads, as ``BehrtForMaskedEvents.behrt``.
    """

    def __init__(self, config: BehrtConfig, projection_dim: int = 64, temperature: float = 0.5):
        super().__init__()
        self.behrt = Behrt(config)
        self.projection_head = ProjectionHead(config.hidden_size, config.hidden_size, projection_dim)
        self.temperature = temperature

    def project(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A batch of ``[B, L]`` tensors -> projections ``[B, projection_dim]`` of the ``[CLS]`` states."""
        return self.projection_head(self.behrt(batch)[:, 0])  # [B, L, D] -> [B, D] -> [B, P]

    def forward(self, view1: dict[str, torch.Tensor], view2: dict[str, torch.Tensor]) -> torch.Tensor:
        """Two batches of ``[B, L]`` tensors (row i: two views of patient i) -> NT-Xent, both in one encoder pass."""
        both = {key: torch.cat([view1[key], view2[key]]) for key in view1}  # [2B, L] per field
        z1, z2 = self.project(both).chunk(2)  # [2B, P] -> 2 x [B, P]
        return nt_xent_loss(z1, z2, self.temperature)


def contrastive_event_loss(model: BehrtContrastive, batch: tuple[dict, dict]) -> torch.Tensor:
    """``fit`` loss: NT-Xent over the two views that ``PatientViewsCollate`` made."""
    return model(*batch)


@dataclass
class SequenceComparison:
    """Sizes of ``sequence_pretraining_comparison``; ``comparison_config()`` picks them by profile."""

    num_subjects: int = 2000
    max_len: int = 64
    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 4
    batch_size: int = 32  # both pretrainings
    pretrain_steps: int = 300  # both pretrainings
    lr: float = 2e-3
    budgets: tuple[int, ...] = (100, 1000)  # those above the labelled pool's size are left out; the pool is not added
    repeats: int = 2
    recipe: FineTuning = field(default_factory=lambda: FineTuning(max_steps=300, eval_every=10, patience=4))
    crop_fraction: float = 0.5
    event_dropout: float = 0.1
    temperature: float = 0.5
    seed: int = 0

    def __post_init__(self):
        sizes = ("num_subjects", "max_len", "hidden_size", "num_layers", "num_heads", "batch_size", "pretrain_steps")
        for name in (*sizes, "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (the other patients are the negatives), got {self.batch_size}")
        _check_fraction("crop_fraction", self.crop_fraction, low_open=True)
        _check_fraction("event_dropout", self.event_dropout, low_open=False)


def comparison_config(profile: str | None = None) -> SequenceComparison:
    """The experiment's sizes for the current (or given) profile; ``cpu`` runs in about 80 s on one CPU core."""
    return by_profile(
        ci=SequenceComparison(
            num_subjects=300, max_len=32, hidden_size=16, num_layers=1, num_heads=2, batch_size=16,
            pretrain_steps=4, budgets=(60,), repeats=1,
            recipe=FineTuning(max_steps=4, eval_every=2, patience=1, batch_size=16),
        ),
        cpu=SequenceComparison(),
        gpu=SequenceComparison(
            num_subjects=8000, max_len=256, hidden_size=128, num_layers=4, num_heads=4, batch_size=64,
            pretrain_steps=2500, budgets=(100, 300, 1000, 3000), repeats=5,
            recipe=FineTuning(max_steps=3000, eval_every=10, patience=6),
        ),
        profile=profile,
    )


def training_flops_per_step(model: nn.Module, loss_fn, batch) -> int:
    """FLOPs of one forward and backward pass of ``loss_fn(model, batch)``, counted by ``FlopCounterMode``."""
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def sequence_pretraining_comparison(
    config: SequenceComparison | None = None, root: str | Path | None = None, device: torch.device | None = None
) -> pd.DataFrame:
    """Pretrain BEHRT by masked events and contrastively (same steps, batch size and patients), fine-tune both.

    ``root``: a MEDS dataset written by ``write_meds_dataset`` (with its oracle); without it, a cohort of
    ``config.num_subjects`` is generated in a temporary directory. Both encoders pretrain on the whole
    timelines of the training patients (as in Lab 4); ``label_budget_experiment`` then fine-tunes each on
    the labelled training patients, cut at their prediction times, and scores the held-out ones.

    Returns one row per (pretraining, budget, repeat) with the columns ``COLUMNS``: ``pretraining`` is
    one of ``PRETRAININGS`` (the scratch, bag-of-codes and oracle rows come from the masked-event run;
    the contrastive run adds only its fine-tuned encoder), ``pretraining_flops_per_step`` is the counted
    training FLOPs of one pretraining step on the first batch of patients (NaN for the other rows).
    ``table.attrs["pretraining_losses"]`` holds each pretraining's loss per step.
    """
    config = config or comparison_config()
    device = device or get_device()
    with tempfile.TemporaryDirectory() as scratch_directory:
        if root is None:
            root = write_meds_dataset(scratch_directory, num_subjects=config.num_subjects, seed=config.seed)
        root = Path(root)
        cohort = read_meds_dataset(root)
        labels = read_labels(root / "labels" / f"{TASK_NAME}.parquet")
        true_risk = pq.read_table(root / ORACLE_SUBDIRECTORY / f"{TASK_NAME}.parquet")["probability"].to_numpy()
    train_ids, held_out_ids = cohort.subjects("train"), cohort.subjects("held_out")
    bins = fit_value_bins(cohort.events_of(train_ids))
    sequences = build_sequences(cohort.events, bins)
    vocabulary = Vocabulary.fit([sequences[s] for s in train_ids], min_count=5)
    train_sequences = [sequences[s] for s in train_ids]

    behrt_config = BehrtConfig(
        vocab_size=len(vocabulary), hidden_size=config.hidden_size, num_layers=config.num_layers,
        num_heads=config.num_heads, max_len=config.max_len,
    )
    schedule = TrainConfig(steps=config.pretrain_steps, lr=config.lr, live_plot=False)
    lengths = [min(len(s.tokens), config.max_len) for s in train_sequences]
    sampler = LengthBucketSampler(lengths, config.batch_size, seed=config.seed)
    first_batch = next(iter(LengthBucketSampler(lengths, config.batch_size, seed=config.seed)))

    seed_everything(config.seed)
    masked = BehrtForMaskedEvents(behrt_config)
    train_set = EHRDataset(train_sequences, vocabulary, config.max_len)
    masked_flops = training_flops_per_step(masked, masked_event_loss, collate_ehr([train_set[i] for i in first_batch]))
    masked_history = fit(
        masked,
        torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_ehr, pin_memory=pin_memory()),
        masked_event_loss, schedule, device,
    )

    seed_everything(config.seed)
    contrastive = BehrtContrastive(behrt_config, temperature=config.temperature)

    def views_collate(seed: int) -> PatientViewsCollate:
        generator = torch.Generator().manual_seed(seed)
        return PatientViewsCollate(vocabulary, config.max_len, generator, config.crop_fraction, config.event_dropout)

    first_views = views_collate(config.seed + 1)([train_sequences[i] for i in first_batch])
    contrastive_flops = training_flops_per_step(contrastive, contrastive_event_loss, first_views)
    sampler = LengthBucketSampler(lengths, config.batch_size, seed=config.seed)  # the same batches of patients
    contrastive_history = fit(
        contrastive,
        torch.utils.data.DataLoader(
            train_sequences, batch_sampler=sampler, collate_fn=views_collate(config.seed), pin_memory=pin_memory()
        ),
        contrastive_event_loss, schedule, device,
    )

    subjects, outcomes = labels["subject_id"].to_numpy(), labels["boolean_value"].to_numpy()
    labelled = build_labelled_sequences(cohort.events, bins, labels)
    train_subjects, held_out_subjects = set(train_ids), set(held_out_ids)
    pool = [row for row in labelled if subjects[row] in train_subjects]
    test = [row for row in labelled if subjects[row] in held_out_subjects]
    budgets = [b for b in config.budgets if b <= len(pool)]
    if not budgets:
        raise ValueError(f"config.budgets {config.budgets} all exceed the {len(pool)} labelled training patients")
    experiment = dict(
        vocabulary=vocabulary,
        pool_sequences=[labelled[row] for row in pool], pool_outcomes=outcomes[pool],
        test_sequences=[labelled[row] for row in test], test_outcomes=outcomes[test],
        budgets=budgets, repeats=config.repeats, recipe=config.recipe, device=device,
    )
    runs = label_budget_experiment(masked.behrt, test_oracle=true_risk[test], **experiment)
    runs["model"] = runs["model"].replace({PRETRAINED: MASKED_EVENTS})
    runs["pretraining_flops_per_step"] = np.where(runs["model"] == MASKED_EVENTS, masked_flops, np.nan)
    contrastive_runs = label_budget_experiment(contrastive.behrt, **experiment)
    contrastive_runs = contrastive_runs[contrastive_runs["model"] == PRETRAINED].assign(
        model=CONTRASTIVE, pretraining_flops_per_step=float(contrastive_flops)
    )
    table = pd.concat([runs, contrastive_runs], ignore_index=True).rename(columns={"model": "pretraining"})
    order = {"key": lambda column: column.map(PRETRAININGS.index) if column.name == "pretraining" else column}
    table = table.sort_values(["budget", "repeat", "pretraining"], **order)[COLUMNS].reset_index(drop=True)
    table.attrs["pretraining_losses"] = {MASKED_EVENTS: masked_history.losses, CONTRASTIVE: contrastive_history.losses}
    return table
