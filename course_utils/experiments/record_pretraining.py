"""Lab 6's sequence experiment: contrastive (SimCLR-style) against masked-event pretraining of BEHRT on Lab 4's cohort.

    runs = sequence_pretraining_comparison(comparison_config())   # sized by the profile, one tidy table

Both pretrainings see the same patients in the same batches for the same number of steps: masked
events (``BehrtForMaskedEvents``, Lab 4) and contrastive (``BehrtContrastive``: two views of each
patient from ``ehr.views``, the other patients of the batch as negatives). Each encoder is then
fine-tuned at every label budget exactly as in Lab 4 (``label_budget.label_budget_experiment``),
beside the scratch, bag-of-codes and oracle rows that do not depend on the pretraining.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch import nn

from course_utils.device import get_device, pin_memory, seed_everything
from course_utils.ehr.batching import EHRDataset, LengthBucketSampler, collate_ehr
from course_utils.ehr.reader import read_labels, read_meds_dataset
from course_utils.ehr.sequences import (
    Vocabulary,
    build_labelled_sequences,
    build_sequences,
    fit_value_bins,
)
from course_utils.ehr.synthetic import ORACLE_SUBDIRECTORY, TASK_NAME, write_meds_dataset
from course_utils.ehr.views import PatientViewsCollate, check_fraction
from course_utils.experiments.core import FineTuning, sized
from course_utils.experiments.label_budget import BAG_OF_CODES, ORACLE, PRETRAINED, SCRATCH, label_budget_experiment
from course_utils.models.behrt import (
    BehrtConfig,
    BehrtContrastive,
    BehrtForMaskedEvents,
    contrastive_event_loss,
    masked_event_loss,
)
from course_utils.models.flops import counted_flops
from course_utils.train import TrainConfig, fit

MASKED_EVENTS, CONTRASTIVE = "masked events", "contrastive"
PRETRAININGS = (MASKED_EVENTS, CONTRASTIVE, SCRATCH, BAG_OF_CODES, ORACLE)  # values of the table's `pretraining`
COLUMNS = ["pretraining", "budget", "repeat", "auroc", "auprc", "best_step", "steps", "pretraining_flops_per_step"]


@dataclass
class SequenceComparison:
    """Sizes of ``sequence_pretraining_comparison``; ``comparison_config()`` picks them by profile."""

    # the cohort
    num_subjects: int = 2000
    seed: int = 0
    # the encoder
    max_len: int = 64  # tokens per patient, [CLS] included: the most recent events are kept
    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 4
    # both pretrainings, on the same batches of patients
    batch_size: int = 32  # patients; for the contrastive loss, the other patients are the negatives
    pretrain_steps: int = 300
    lr: float = 2e-3
    # fine-tuning at label budgets
    budgets: tuple[int, ...] = (100,)  # those above the labelled pool's size are left out; the pool is not added
    repeats: int = 5  # label subsamples per budget, for a t-interval
    recipe: FineTuning = field(default_factory=lambda: FineTuning(max_steps=300, eval_every=10, patience=4))
    # the contrastive views and loss
    crop_fraction: float = 0.5
    event_dropout: float = 0.1
    temperature: float = 0.5

    def __post_init__(self):
        sizes = ("num_subjects", "max_len", "hidden_size", "num_layers", "num_heads", "batch_size", "pretrain_steps")
        for name in (*sizes, "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (the other patients are the negatives), got {self.batch_size}")
        check_fraction("crop_fraction", self.crop_fraction, low_open=True)
        check_fraction("event_dropout", self.event_dropout, low_open=False)


def comparison_config(profile: str | None = None, **overrides) -> SequenceComparison:
    """The experiment's sizes for ``profile`` (default: the current one), with ``overrides`` applied."""
    # fmt: off
    return sized(
        SequenceComparison, profile, overrides,
        ci=dict(
            num_subjects=300, max_len=32, hidden_size=16, num_layers=1, num_heads=2, batch_size=16,
            pretrain_steps=4, budgets=(60,), repeats=1,
            recipe=FineTuning(max_steps=4, eval_every=2, patience=1, batch_size=16),
        ),
        cpu=dict(),
        gpu=dict(
            num_subjects=8000, max_len=256, hidden_size=128, num_layers=4, num_heads=4, batch_size=64,
            pretrain_steps=2500, budgets=(100, 1000), repeats=5,
            recipe=FineTuning(max_steps=3000, eval_every=10, patience=6),
        ),
    )
    # fmt: on


def training_flops_per_step(model: nn.Module, loss_fn, batch) -> int:
    """FLOPs of one forward and backward pass of ``loss_fn(model, batch)`` (``models.flops.counted_flops``)."""
    return counted_flops(lambda: loss_fn(model, batch), model=model)


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
    contrastive_runs = label_budget_experiment(contrastive.behrt, baselines=False, **experiment)
    contrastive_runs = contrastive_runs.assign(
        model=CONTRASTIVE, pretraining_flops_per_step=float(contrastive_flops)
    )
    table = pd.concat([runs, contrastive_runs], ignore_index=True).rename(columns={"model": "pretraining"})
    order = {"key": lambda column: column.map(PRETRAININGS.index) if column.name == "pretraining" else column}
    table = table.sort_values(["budget", "repeat", "pretraining"], **order)[COLUMNS].reset_index(drop=True)
    table.attrs["pretraining_losses"] = {MASKED_EVENTS: masked_history.losses, CONTRASTIVE: contrastive_history.losses}
    return table
