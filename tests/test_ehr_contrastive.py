"""Lab 6's sequence experiment: patient views, the contrastive BEHRT and the pretraining comparison."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from course_utils import ehr
from course_utils.ehr.views import PatientViewsCollate, patient_view, patient_views
from course_utils.experiments.record_pretraining import (
    COLUMNS,
    CONTRASTIVE,
    MASKED_EVENTS,
    PRETRAININGS,
    SequenceComparison,
    comparison_config,
    sequence_pretraining_comparison,
)
from course_utils.models.behrt import BehrtConfig, BehrtContrastive, contrastive_event_loss
from course_utils.train import TrainConfig, fit


@pytest.fixture(scope="module")
def cohort():
    events, labels, _ = ehr.generate_cohort(120, seed=4)
    sequences = ehr.build_sequences(events, {})
    return list(sequences.values()), labels, events


def is_subsequence(view, sequence):
    """Every (token, age) of ``view`` after [CLS] occurs in ``sequence``'s, in the same order."""
    remaining = iter(zip(sequence.tokens[1:], sequence.ages[1:]))
    return all(any(pair == other for other in remaining) for pair in zip(view.tokens[1:], view.ages[1:]))


def test_views_are_ordered_subsequences_that_start_with_cls_and_close_every_visit(cohort):
    sequences, _, _ = cohort
    generator = torch.Generator().manual_seed(0)
    for sequence in sequences:
        for view in patient_views(sequence, generator, crop_fraction=0.3, event_dropout=0.3):
            assert view.tokens[0] == "[CLS]" and view.tokens[-1] == "[SEP]"
            assert is_subsequence(view, sequence)
            assert len(view.tokens) == len(view.ages) == len(view.visits) == len(view.segments)
            events = [t for t in view.tokens if t not in ("[CLS]", "[SEP]")]
            assert events, "a view keeps at least one event"
            # visits renumbered 0, 1, ... with no empty visit: each [SEP] closes a visit that has an event
            separators = [i for i, t in enumerate(view.tokens) if t == "[SEP]"]
            assert [view.visits[i] for i in separators] == list(range(len(separators)))
            assert all(view.tokens[i - 1] != "[SEP]" for i in separators) and view.tokens[1] != "[SEP]"
            assert view.segments == [v % 2 for v in view.visits] and view.ages[0] == view.ages[1]


def test_a_view_of_a_sequence_cut_at_the_prediction_time_never_holds_a_later_event():
    days = np.datetime64("2010-01-01T00:00", "us") + np.arange(0, 200, 10) * np.timedelta64(1, "D")
    codes = [f"BEFORE//{i}" if i < 12 else f"AFTER//{i}" for i in range(len(days))]
    events = pa.table(
        {
            "subject_id": pa.array([1] * len(days), pa.int64()),
            "time": pa.array(days, pa.timestamp("us")),
            "code": codes,
            "numeric_value": pa.array([None] * len(days), pa.float32()),
        }
    )
    labels = pa.table(
        {"subject_id": pa.array([1], pa.int64()), "prediction_time": pa.array([days[11]], pa.timestamp("us"))}
    )
    cut = ehr.build_labelled_sequences(events, {}, labels)[0]
    assert not any(t.startswith("AFTER") for t in cut.tokens)
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):  # 400 views, each a random window, many of them the last visits
        for view in patient_views(cut, generator, crop_fraction=0.1, event_dropout=0.2):
            assert not any(t.startswith("AFTER") for t in view.tokens)
            assert is_subsequence(view, cut)


def test_seeded_views_are_reproducible_and_differ_across_seeds(cohort):
    sequences, _, _ = cohort
    long = max(sequences, key=lambda s: len(s.tokens))

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return [patient_views(long, generator) for _ in range(5)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    first, second = patient_views(long, torch.Generator().manual_seed(3))
    assert first != second, "the two views of one call are independent draws"


def test_views_without_crop_or_dropout_are_the_sequence_itself(cohort):
    sequences, _, _ = cohort
    generator = torch.Generator().manual_seed(0)
    for sequence in sequences[:20]:
        view = patient_view(sequence, generator, crop_fraction=1.0, event_dropout=0.0)
        assert view == sequence


def test_collate_pairs_views_of_the_same_patients_in_two_padded_batches(cohort):
    sequences, _, _ = cohort
    vocabulary = ehr.Vocabulary.fit(sequences)
    collate = PatientViewsCollate(vocabulary, max_len=24, generator=torch.Generator().manual_seed(0))
    view1, view2 = collate(sequences[:6])
    for batch in (view1, view2):
        assert set(batch) == {"input_ids", "ages", "visits", "segments", "attention_mask"}
        assert batch["input_ids"].shape == view1["input_ids"].shape and batch["input_ids"].shape[0] == 6
        assert batch["input_ids"].shape[1] <= 24
        assert (batch["input_ids"][:, 0] == ehr.CLS_ID).all()
    # a view of a patient holds only codes of that patient's most recent 24 tokens
    for row, sequence in enumerate(sequences[:6]):
        recent = set(vocabulary.encode(ehr.truncate_left(sequence, 24).tokens))
        assert set(view1["input_ids"][row][view1["attention_mask"][row].bool()].tolist()) <= recent


def test_contrastive_loss_backpropagates_and_a_few_steps_lower_it(cohort):
    sequences, _, _ = cohort
    vocabulary = ehr.Vocabulary.fit(sequences)
    config = BehrtConfig(len(vocabulary), hidden_size=16, num_layers=1, num_heads=2, max_len=32, dropout=0.0)
    torch.manual_seed(0)
    model = BehrtContrastive(config, projection_dim=8)
    collate = PatientViewsCollate(vocabulary, 32, torch.Generator().manual_seed(0))
    fixed = collate(sequences[:32])
    loss = contrastive_event_loss(model, fixed)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.behrt.embedding.code.weight.grad.abs().sum() > 0
    assert model.projection_head[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    history = fit(
        model, [fixed], contrastive_event_loss, TrainConfig(steps=15, lr=3e-3, live_plot=False), torch.device("cpu")
    )
    assert np.mean(history.losses[-3:]) < history.losses[0] - 0.3  # ln(63) = 4.1 at chance; B = 32 patients


def test_comparison_returns_every_pretraining_at_every_budget_in_ci():
    config = comparison_config("ci")
    table = sequence_pretraining_comparison(config, device=torch.device("cpu"))
    assert list(table.columns) == COLUMNS
    assert set(table["pretraining"]) == set(PRETRAININGS)
    assert len(table) == len(PRETRAININGS) * len(config.budgets) * config.repeats
    assert table["auroc"].between(0, 1).all()
    flops = table.groupby("pretraining")["pretraining_flops_per_step"].first()
    assert flops[CONTRASTIVE] > flops[MASKED_EVENTS] > 0  # the contrastive step encodes two views
    assert set(table.attrs["pretraining_losses"]) == {MASKED_EVENTS, CONTRASTIVE}


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda s, g: patient_view(s, g, crop_fraction=0.0), "crop_fraction"),
        (lambda s, g: patient_view(s, g, crop_fraction=1.5), "crop_fraction"),
        (lambda s, g: patient_view(s, g, event_dropout=1.0), "event_dropout"),
        (lambda s, g: patient_view(s, g, event_dropout=-0.1), "event_dropout"),
        (lambda s, g: patient_view(ehr.EHRSequence(["A"], [0], [0], [0]), g), "sequence"),
        (lambda s, g: patient_view(ehr.EHRSequence(["[CLS]", "[SEP]"], [0, 0], [0, 0], [0, 0]), g), "sequence"),
        (lambda s, g: SequenceComparison(batch_size=1), "batch_size"),
        (lambda s, g: SequenceComparison(pretrain_steps=0), "pretrain_steps"),
        (lambda s, g: SequenceComparison(event_dropout=1.0), "event_dropout"),
        (lambda s, g: PatientViewsCollate(ehr.Vocabulary(list(ehr.SPECIAL_TOKENS)), 1, g), "max_len"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(cohort, call, name):
    with pytest.raises(ValueError, match=name):
        call(cohort[0][0], torch.Generator().manual_seed(0))
