"""Lab 4: the synthetic MEDS cohort, the MEDS reader, BEHRT sequences, masking and the BEHRT model."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import meds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler

from course_utils import ehr
from course_utils.experiments.core import FineTuning, budget_split
from course_utils.experiments.label_budget import (
    MODELS,
    PRETRAINED,
    SCRATCH,
    label_budget_experiment,
    summarise_label_budget,
)
from course_utils.masking import IGNORE_INDEX
from course_utils.models.behrt import (
    Behrt,
    BehrtConfig,
    BehrtForMaskedEvents,
    BehrtForOutcome,
    mask_events,
    masked_event_loss,
)
from course_utils.viz.ehr import plot_label_budget


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return ehr.write_meds_dataset(tmp_path_factory.mktemp("meds"), num_subjects=80, seed=1)


def times(*stamps):
    return np.array(stamps, dtype="datetime64[us]")


# --- the written dataset is MEDS -------------------------------------------------------------


def test_generated_dataset_passes_meds_schema_validation(dataset_root):
    shards = sorted((dataset_root / "data").rglob("*.parquet"))
    assert shards, "no data shards written"
    seen = []
    for shard in shards:
        table = pq.read_table(shard)
        meds.DataSchema.validate(table)
        subjects = table["subject_id"].to_numpy()
        assert (np.diff(subjects) >= 0).all(), f"{shard}: subjects are not contiguous"
        for subject in np.unique(subjects):
            stamps = table.filter(pc.equal(table["subject_id"], subject))["time"].to_numpy(zero_copy_only=False)
            dated = stamps[~np.isnat(stamps)]
            assert (np.diff(dated) >= np.timedelta64(0)).all(), f"{shard}: subject {subject} is not sorted by time"
            assert np.isnat(stamps[: len(stamps) - len(dated)]).all(), "static rows must come first"
        seen.extend(np.unique(subjects).tolist())
    assert len(seen) == len(set(seen)) == 80, "every subject must live in exactly one shard"
    codes = pq.read_table(dataset_root / meds.code_metadata_filepath)
    meds.CodeMetadataSchema.validate(codes)
    data_codes = set(pa.concat_tables([pq.read_table(s) for s in shards])["code"].to_pylist())
    assert data_codes <= set(codes["code"].to_pylist()), "every code in the data needs a metadata row"
    meds.SubjectSplitSchema.validate(pq.read_table(dataset_root / meds.subject_splits_filepath))
    meds.DatasetMetadataSchema.validate(json.loads((dataset_root / meds.dataset_metadata_filepath).read_text()))
    meds.LabelSchema.validate(pq.read_table(dataset_root / "labels" / f"{ehr.TASK_NAME}.parquet"))


def test_every_file_in_labels_validates_against_the_meds_label_schema(dataset_root):
    """LabelSchema.validate also rejects columns outside the schema, such as an oracle's probability."""
    files = sorted((dataset_root / "labels").iterdir())
    assert [path.name for path in files] == [f"{ehr.TASK_NAME}.parquet"]
    for path in files:
        meds.LabelSchema.validate(pq.read_table(path))


def test_the_oracle_beside_labels_gives_a_probability_for_every_label_row(dataset_root):
    labels = ehr.read_labels(dataset_root / "labels" / f"{ehr.TASK_NAME}.parquet")
    oracle = pq.read_table(dataset_root / ehr.ORACLE_SUBDIRECTORY / f"{ehr.TASK_NAME}.parquet")
    assert oracle.column_names == ["subject_id", "prediction_time", "probability"]
    assert oracle["subject_id"].equals(labels["subject_id"]), "the oracle must list the label rows in their order"
    assert oracle["prediction_time"].equals(labels["prediction_time"])
    probabilities = oracle["probability"].to_numpy()
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_write_then_read_round_trip_preserves_every_event(dataset_root):
    events, _, _ = ehr.generate_cohort(80, seed=1)
    read = ehr.read_meds_dataset(dataset_root).events
    assert read.num_rows == events.num_rows
    assert read.equals(events.select(read.column_names)), "reading back changed, lost or reordered events"


def test_generator_is_deterministic_under_its_seed():
    first, second, other = (
        ehr.generate_cohort(40, seed=5),
        ehr.generate_cohort(40, seed=5),
        ehr.generate_cohort(40, seed=6),
    )
    assert all(a.equals(b) for a, b in zip(first, second))
    assert not first[0].equals(other[0])


def test_splits_partition_the_subjects(dataset_root):
    cohort = ehr.read_meds_dataset(dataset_root)
    splits = [set(cohort.subjects(name)) for name in ("train", "tuning", "held_out")]
    assert set.union(*splits) == set(range(1, 81)) and sum(map(len, splits)) == 80


@pytest.fixture(scope="module")
def large_cohort():
    return ehr.generate_cohort(2500, seed=0)


def test_comorbidity_model_is_planted(large_cohort):
    """CKD is diagnosed more often with diabetes than without; the gap is > 5 standard errors."""
    events = large_cohort[0]
    has = lambda code: set(events.filter(pc.equal(events["code"], code))["subject_id"].to_pylist())
    everyone, diabetes, ckd = set(range(1, 2501)), has("ICD10CM//E11.9"), has("ICD10CM//N18.30")
    with_dm = len(ckd & diabetes) / len(diabetes)
    without_dm = len(ckd - diabetes) / len(everyone - diabetes)
    error = np.sqrt(with_dm * (1 - with_dm) / len(diabetes) + without_dm * (1 - without_dm) / len(everyone - diabetes))
    assert with_dm - without_dm > 5 * error, (with_dm, without_dm)


def test_hba1c_is_high_in_diabetes(large_cohort):
    events = large_cohort[0]
    diabetics = set(events.filter(pc.equal(events["code"], "ICD10CM//E11.9"))["subject_id"].to_pylist())
    hba1c = events.filter(pc.and_(pc.equal(events["code"], "LOINC//4548-4"), pc.is_valid(events["numeric_value"])))
    values = hba1c["numeric_value"].to_numpy()
    is_diabetic = np.isin(hba1c["subject_id"].to_numpy(), list(diabetics))
    assert values[is_diabetic].mean() > values[~is_diabetic].mean() + 1.0


def test_oracle_auroc_beats_the_bag_of_codes_baseline(tmp_path):
    """The true risk is the best possible score; logistic regression on code counts must fall short of it."""
    root = ehr.write_meds_dataset(tmp_path, num_subjects=3000, seed=0)
    cohort = ehr.read_meds_dataset(root)
    labels = ehr.read_labels(root / "labels" / f"{ehr.TASK_NAME}.parquet")
    oracle = dict(
        zip(
            *pq.read_table(root / ehr.ORACLE_SUBDIRECTORY / f"{ehr.TASK_NAME}.parquet")
            .select(["subject_id", "probability"])
            .to_pydict()
            .values()
        )
    )
    outcome = dict(zip(labels["subject_id"].to_pylist(), labels["boolean_value"].to_pylist()))
    assert len(outcome) == labels.num_rows, "the synthetic task has one prediction time per subject"
    labelled = ehr.build_labelled_sequences(
        cohort.events, ehr.fit_value_bins(cohort.events_of(cohort.subjects("train"))), labels
    )
    sequences = {labels["subject_id"][row].as_py(): sequence for row, sequence in labelled.items()}
    train = [s for s in cohort.subjects("train") if s in sequences]
    test = [s for s in cohort.subjects("held_out") + cohort.subjects("tuning") if s in sequences]
    model = make_pipeline(
        CountVectorizer(analyzer=lambda tokens: tokens), MaxAbsScaler(), LogisticRegression(C=0.1, max_iter=2000)
    )
    model.fit([sequences[s].tokens for s in train], [outcome[s] for s in train])
    y = [outcome[s] for s in test]
    baseline = roc_auc_score(y, model.predict_proba([sequences[s].tokens for s in test])[:, 1])
    ceiling = roc_auc_score(y, [oracle[s] for s in test])
    assert 0.6 < baseline < ceiling, (baseline, ceiling)


def test_labels_exclude_subjects_with_heart_failure_before_the_prediction_time(large_cohort):
    events, labels, _ = large_cohort
    hf = events.filter(pc.equal(events["code"], "ICD10CM//I50.9"))
    first_hf = hf.group_by("subject_id").aggregate([("time", "min")])
    first = dict(zip(first_hf["subject_id"].to_pylist(), first_hf["time_min"].to_numpy()))
    for subject, when in zip(labels["subject_id"].to_pylist(), labels["prediction_time"].to_numpy()):
        assert (
            subject not in first or first[subject] > when
        ), f"subject {subject} had heart failure before prediction time"


# --- reading foreign or broken MEDS data -------------------------------------------------------


def write_shard(root, table):
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "data" / "0.parquet")


def test_reader_accepts_minimal_meds_without_numeric_values_or_splits(tmp_path):
    write_shard(
        tmp_path,
        pa.table(
            {"subject_id": pa.array([7, 7], pa.int64()), "time": times("2000-01-01", "2001-01-01"), "code": ["A", "B"]}
        ),
    )
    cohort = ehr.read_meds_dataset(tmp_path)
    assert cohort.events["numeric_value"].null_count == 2
    assert cohort.subjects("train") == [7]


def test_reader_casts_compatible_types(tmp_path):
    stamps = pa.array(times("2000-01-01", "2001-01-01").astype("datetime64[ns]"))
    write_shard(
        tmp_path,
        pa.table(
            {
                "subject_id": pa.array([3, 3], pa.int32()),
                "time": stamps,
                "code": ["A", "B"],
                "numeric_value": [1.5, None],
            }
        ),
    )
    events = ehr.read_meds_dataset(tmp_path).events
    assert events.schema.field("subject_id").type == pa.int64() and events.schema.field("time").type == pa.timestamp(
        "us"
    )
    assert events["numeric_value"].type == pa.float32()


def test_missing_column_raises_error_naming_file_and_column(tmp_path):
    write_shard(tmp_path, pa.table({"subject_id": pa.array([1], pa.int64()), "time": times("2000-01-01")}))
    with pytest.raises(ValueError, match=r"0\.parquet.*'code'"):
        ehr.read_meds_dataset(tmp_path)


def test_uncastable_column_raises_error_naming_file_and_column(tmp_path):
    write_shard(tmp_path, pa.table({"subject_id": ["patient-a"], "time": times("2000-01-01"), "code": ["A"]}))
    with pytest.raises(ValueError, match=r"0\.parquet.*subject_id"):
        ehr.read_meds_dataset(tmp_path)


def test_null_codes_raise_error_naming_file_and_column(tmp_path):
    write_shard(
        tmp_path,
        pa.table(
            {"subject_id": pa.array([1, 1], pa.int64()), "time": times("2000-01-01", "2000-01-02"), "code": ["A", None]}
        ),
    )
    with pytest.raises(ValueError, match=r"0\.parquet.*code"):
        ehr.read_meds_dataset(tmp_path)


def test_label_file_with_extra_column_raises_error(tmp_path):
    path = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table(
            {
                "subject_id": pa.array([1], pa.int64()),
                "prediction_time": times("2000-01-01"),
                "boolean_value": [True],
                "risk": [0.3],
            }
        ),
        path,
    )
    with pytest.raises(ValueError, match="risk"):
        ehr.read_labels(path)


def test_empty_directory_raises_error(tmp_path):
    with pytest.raises(ValueError, match="data/"):
        ehr.read_meds_dataset(tmp_path)


# --- sequence building ---------------------------------------------------------------------------


def test_patient_with_one_visit():
    sequence = ehr.patient_sequence(
        times("1950-06-01", "2010-05-05T10:00", "2010-05-05T11:00"), ["MEDS_BIRTH", "A", "B"]
    )
    assert sequence.tokens == ["[CLS]", "A", "B", "[SEP]"]
    assert sequence.ages == [59] * 4 and sequence.visits == [0] * 4 and sequence.segments == [0] * 4


def test_events_at_the_same_timestamp_share_a_visit():
    sequence = ehr.patient_sequence(times("2010-05-05T10:00", "2010-05-05T10:00", "2012-01-01"), ["A", "B", "C"])
    assert sequence.tokens == ["[CLS]", "A", "B", "[SEP]", "C", "[SEP]"]
    assert sequence.visits == [0, 0, 0, 0, 1, 1] and sequence.segments == [0, 0, 0, 0, 1, 1]


def test_visits_alternate_segments_and_chain_across_short_gaps():
    stamps = times("2010-01-01T08:00", "2010-01-02T07:00", "2010-03-01", "2010-06-01", "2010-09-01")
    sequence = ehr.patient_sequence(stamps, ["A", "B", "C", "D", "E"])
    assert sequence.tokens == ["[CLS]", "A", "B", "[SEP]", "C", "[SEP]", "D", "[SEP]", "E", "[SEP]"]
    assert sequence.segments == [0, 0, 0, 0, 1, 1, 0, 0, 1, 1]


def test_static_events_join_the_first_visit_and_birth_is_not_a_token():
    sequence = ehr.patient_sequence(times("NaT", "1980-01-01", "2020-02-01"), ["GENDER//F", "MEDS_BIRTH", "A"])
    assert sequence.tokens == ["[CLS]", "GENDER//F", "A", "[SEP]"] and sequence.ages == [40] * 4


def test_without_birth_ages_are_zero():
    assert ehr.patient_sequence(times("2010-01-01", "2011-01-01"), ["A", "B"]).ages == [0] * 5


def test_unsorted_times_raise_error():
    with pytest.raises(ValueError, match="sorted"):
        ehr.patient_sequence(times("2011-01-01", "2010-01-01"), ["A", "B"])


def test_missing_numeric_values_keep_the_bare_code():
    bins = {"LAB": np.array([1.0, 2.0])}
    assert ehr.event_tokens(["LAB", "LAB", "LAB", "LAB", "DX"], np.array([0.5, np.nan, 1.5, 9.0, np.nan]), bins) == [
        "LAB//Q1",
        "LAB",
        "LAB//Q2",
        "LAB//Q3",
        "DX",
    ]


def test_value_bins_split_training_values_into_equal_thirds():
    events = pa.table({"code": ["LAB"] * 300, "numeric_value": pa.array(np.arange(300, dtype=np.float32))})
    edges = ehr.fit_value_bins(events)["LAB"]
    tokens = ehr.event_tokens(["LAB"] * 300, np.arange(300), {"LAB": edges})
    assert [tokens.count(f"LAB//Q{k}") for k in (1, 2, 3)] == [100, 100, 100]


def test_long_sequences_are_truncated_from_the_left_keeping_the_most_recent():
    stamps = np.datetime64("2000-01-01", "us") + np.arange(40) * np.timedelta64(30, "D")
    sequence = ehr.patient_sequence(stamps, [f"C{i}" for i in range(40)])
    truncated = ehr.truncate_left(sequence, 11)
    assert len(truncated.tokens) == 11 and truncated.tokens[0] == "[CLS]"
    assert truncated.tokens[1:] == sequence.tokens[-10:], "the most recent events must be kept"
    assert truncated.visits[0] == 0 and truncated.visits[1] == 0 and truncated.visits[-1] == 4
    assert truncated.segments == [v % 2 for v in truncated.visits]
    assert ehr.truncate_left(sequence, 500) == sequence


# --- a MEDS dataset from elsewhere: qualified birth and death codes, NaN values, several label rows ----


@pytest.fixture
def foreign_cohort(tmp_path):
    """Subject 1: ``MEDS_BIRTH//US``, a NaN (not null) lab value, then ``MEDS_DEATH//CARDIAC``.
    Subject 2: a plain ``MEDS_BIRTH`` that carries a value (a birth weight)."""
    rows = [
        (1, "NaT", "GENDER//F", None),
        (1, "1950-03-01", "MEDS_BIRTH//US", None),
        (1, "2010-05-05T10:00", "LAB", 1.0),
        (1, "2011-05-05T10:00", "LAB", float("nan")),
        (1, "2012-05-05T10:00", "LAB", 9.0),
        (1, "2013-05-05T10:00", "MEDS_DEATH//CARDIAC", None),
        (2, "1980-01-01", "MEDS_BIRTH", 3.2),
        (2, "2015-01-01", "LAB", 5.0),
        (2, "2016-01-01", "LAB", 2.0),
        (2, "2017-01-01", "LAB", 7.0),
    ]
    subjects, stamps, codes, values = zip(*rows)
    table = pa.table(
        {
            "subject_id": pa.array(subjects, pa.int64()),
            "time": pa.array(times(*stamps)),
            "code": list(codes),
            "numeric_value": pa.array(values, pa.float32()),  # None is null; float("nan") stays a NaN
        }
    )
    write_shard(tmp_path, table)
    return ehr.read_meds_dataset(tmp_path)


def test_qualified_birth_codes_set_the_ages_and_never_become_tokens(foreign_cohort):
    sequences = ehr.build_sequences(foreign_cohort.events, ehr.fit_value_bins(foreign_cohort.events))
    assert not any(token.startswith("MEDS_BIRTH") for s in sequences.values() for token in s.tokens)
    assert sequences[1].ages == [60, 60, 60, 60, 61, 61, 62, 62, 63, 63]
    assert sequences[2].ages[:3] == [35, 35, 35]


def test_a_birth_with_a_value_is_never_binned(foreign_cohort):
    assert "MEDS_BIRTH" not in ehr.fit_value_bins(foreign_cohort.events)
    assert ehr.build_sequences(foreign_cohort.events, ehr.fit_value_bins(foreign_cohort.events))[2].ages[0] == 35


def test_a_qualified_death_code_is_an_event_of_the_timeline(foreign_cohort):
    sequence = ehr.build_sequences(foreign_cohort.events, {})[1]
    assert sequence.tokens[-2:] == ["MEDS_DEATH//CARDIAC", "[SEP]"] and sequence.visits[-1] == 3


def test_nan_values_are_left_out_of_the_bins_and_keep_the_bare_code(foreign_cohort):
    """The non-NaN values 1, 9, 5, 2, 7 have terciles 3 and 6.33; a NaN edge would put every value in Q1."""
    bins = ehr.fit_value_bins(foreign_cohort.events)
    np.testing.assert_allclose(bins["LAB"], [3.0, 19 / 3], rtol=1e-6)
    sequences = ehr.build_sequences(foreign_cohort.events, bins)
    assert [t for t in sequences[1].tokens if t.startswith("LAB")] == ["LAB//Q1", "LAB", "LAB//Q3"]
    assert [t for t in sequences[2].tokens if t.startswith("LAB")] == ["LAB//Q2", "LAB//Q1", "LAB//Q3"]


def test_every_label_row_gets_its_own_sequence_up_to_its_prediction_time(foreign_cohort):
    labels = pa.table(
        {
            "subject_id": pa.array([1, 1, 2, 2, 3], pa.int64()),
            "prediction_time": pa.array(
                times("2011-05-05T10:00", "2012-06-01", "2015-01-01", "1990-01-01", "2015-01-01")
            ),
            "boolean_value": [False, True, False, False, True],
        }
    )
    labelled = ehr.build_labelled_sequences(foreign_cohort.events, {}, labels)
    assert list(labelled) == [0, 1, 2], "subject 2 has no event by 1990 and subject 3 has no event at all"
    assert labelled[0].tokens == ["[CLS]", "GENDER//F", "LAB", "[SEP]", "LAB", "[SEP]"]
    assert labelled[1].tokens == ["[CLS]", "GENDER//F", "LAB", "[SEP]", "LAB", "[SEP]", "LAB", "[SEP]"]
    assert labelled[2].tokens == ["[CLS]", "LAB", "[SEP]"] and labelled[2].ages == [35] * 3


def test_events_out_of_subject_order_raise_error():
    table = pa.table(
        {
            "subject_id": pa.array([2, 1], pa.int64()),
            "time": pa.array(times("2010-01-01", "2010-01-01")),
            "code": ["A", "B"],
            "numeric_value": pa.nulls(2, pa.float32()),
        }
    )
    with pytest.raises(ValueError, match="sorted by subject_id"):
        ehr.build_sequences(table, {})


def test_vocabulary_keeps_frequent_codes_and_maps_the_rest_to_unk():
    sequence = ehr.EHRSequence(["[CLS]", "A", "A", "B", "[SEP]"], [0] * 5, [0] * 5, [0] * 5)
    vocabulary = ehr.Vocabulary.fit([sequence], min_count=2)
    assert vocabulary.tokens == [*ehr.SPECIAL_TOKENS, "A"]
    assert vocabulary.encode(["[CLS]", "A", "B", "[SEP]"]) == [ehr.CLS_ID, 5, ehr.UNK_ID, ehr.SEP_ID]


# --- batching, masking and the model -------------------------------------------------------------


def toy_dataset(count=50, seed=0):
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(count):
        length = int(rng.integers(1, 30))
        stamps = np.datetime64("2010-01-01", "us") + np.sort(rng.integers(0, 2000, length)) * np.timedelta64(1, "D")
        sequences.append(
            ehr.patient_sequence(
                np.concatenate([times("1960-01-01"), stamps]),
                ["MEDS_BIRTH", *(f"C{c}" for c in rng.integers(0, 12, length))],
            )
        )
    vocabulary = ehr.Vocabulary.fit(sequences)
    return ehr.EHRDataset(sequences, vocabulary, max_len=32, labels=[i % 2 for i in range(count)]), vocabulary


def test_length_buckets_cover_every_patient_once_and_cut_padding():
    dataset, _ = toy_dataset(200)
    sampler = ehr.LengthBucketSampler(dataset.lengths, batch_size=8, bucket_batches=25)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(200))
    unsorted = [list(range(i, i + 8)) for i in range(0, 200, 8)]
    assert ehr.padding_fraction(dataset.lengths, batches) < 0.5 * ehr.padding_fraction(dataset.lengths, unsorted)


def test_collate_pads_and_marks_padding():
    dataset, _ = toy_dataset()
    batch = ehr.collate_ehr([dataset[0], dataset[1], dataset[2]])
    assert batch["input_ids"].shape == batch["ages"].shape == batch["attention_mask"].shape
    assert torch.equal(batch["attention_mask"].bool(), batch["input_ids"] != ehr.PAD_ID)
    assert batch["label"].dtype == torch.float32


def test_masking_never_touches_structural_tokens():
    dataset, vocabulary = toy_dataset(100)
    batch = ehr.collate_ehr([dataset[i] for i in range(100)])
    ids = batch["input_ids"]
    structural = torch.isin(ids, torch.tensor(ehr.STRUCTURAL_IDS))
    for seed in range(20):
        masked, labels = mask_events(
            ids, len(vocabulary), mlm_probability=0.9, generator=torch.Generator().manual_seed(seed)
        )
        assert (labels[structural] == IGNORE_INDEX).all()
        assert torch.equal(masked[structural], ids[structural])
        assert not torch.isin(masked[~structural], torch.tensor([ehr.PAD_ID, ehr.CLS_ID, ehr.SEP_ID, ehr.UNK_ID])).any()


def test_padding_does_not_change_the_patient_representation():
    """The attention mask works: extra [PAD] columns leave every real position's output unchanged."""
    dataset, vocabulary = toy_dataset()
    model = BehrtForOutcome(BehrtConfig(len(vocabulary), hidden_size=16, num_heads=2, max_len=64)).eval()
    alone = ehr.collate_ehr([dataset[0]])
    padded = {
        key: torch.nn.functional.pad(value, (0, 10)) if value.dim() == 2 else value for key, value in alone.items()
    }
    assert torch.allclose(model(alone), model(padded), atol=1e-5)


def test_masked_event_head_never_predicts_structural_tokens_and_loss_is_finite():
    dataset, vocabulary = toy_dataset()
    model = BehrtForMaskedEvents(BehrtConfig(len(vocabulary), hidden_size=16, num_heads=2, max_len=32))
    batch = ehr.collate_ehr([dataset[i] for i in range(16)])
    logits = model(batch)
    assert logits.shape == (*batch["input_ids"].shape, len(vocabulary))
    assert torch.isinf(logits[..., list(ehr.STRUCTURAL_IDS) + [ehr.MASK_ID]]).all()
    torch.manual_seed(0)
    assert torch.isfinite(masked_event_loss(model, batch))


def test_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hidden_size"):
        BehrtConfig(vocab_size=50, hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        BehrtConfig(vocab_size=3)


# --- the label-budget experiment ------------------------------------------------------------------


def test_budget_split_draws_disjoint_stratified_parts_of_the_budget():
    outcomes = np.array([True] * 60 + [False] * 240)
    for budget in (100, 300):
        fine_tuning, tuning = budget_split(outcomes, budget, tuning_fraction=0.25, seed=3)
        assert len(fine_tuning) + len(tuning) == budget and len(tuning) == budget // 4
        assert not set(fine_tuning) & set(tuning)
        for part in (fine_tuning, tuning):
            assert abs(outcomes[part].mean() - 0.2) <= 1 / len(part), "each part keeps the pool's 20% positives"
    other = budget_split(outcomes, 100, 0.25, seed=4)
    assert not np.array_equal(np.sort(budget_split(outcomes, 100, 0.25, seed=3)[0]), np.sort(other[0]))


@pytest.fixture(scope="module")
def budget_inputs():
    """A 300-subject cohort: the first 200 subjects' label rows are the pool, the rest the test patients."""
    events, labels, oracle = ehr.generate_cohort(300, seed=2)
    labelled = ehr.build_labelled_sequences(events, {}, labels)
    subjects, outcomes = labels["subject_id"].to_numpy(), labels["boolean_value"].to_numpy()
    pool = [row for row in labelled if subjects[row] <= 200]
    test = [row for row in labelled if subjects[row] > 200]
    vocabulary = ehr.Vocabulary.fit([labelled[row] for row in pool])
    torch.manual_seed(0)
    encoder = Behrt(BehrtConfig(len(vocabulary), hidden_size=16, num_layers=1, num_heads=2, max_len=48))
    return {
        "pretrained": encoder,
        "vocabulary": vocabulary,
        "pool_sequences": [labelled[row] for row in pool],
        "pool_outcomes": outcomes[pool],
        "test_sequences": [labelled[row] for row in test],
        "test_outcomes": outcomes[test],
        "test_oracle": oracle["probability"].to_numpy()[test],
    }


TINY_RECIPE = FineTuning(max_steps=6, eval_every=2, patience=1, batch_size=16)


def test_label_budget_experiment_scores_every_model_on_every_subsample_and_leaves_the_encoder_unchanged(budget_inputs):
    before = {name: value.clone() for name, value in budget_inputs["pretrained"].state_dict().items()}
    pool_size = len(budget_inputs["pool_outcomes"])
    runs = label_budget_experiment(**budget_inputs, budgets=[80, pool_size], repeats=2, recipe=TINY_RECIPE)
    assert len(runs) == 2 * 2 * len(MODELS)
    for (budget, repeat), group in runs.groupby(["budget", "repeat"]):
        assert sorted(group["model"]) == sorted(MODELS), f"budget {budget}, subsample {repeat}: {list(group['model'])}"
    assert runs[["auroc", "auprc"]].apply(lambda column: column.between(0, 1)).all().all()
    behrt_rows = runs[runs["model"].isin([PRETRAINED, SCRATCH])]
    assert (behrt_rows["best_step"] <= behrt_rows["steps"]).all() and (behrt_rows["steps"] <= 6).all()
    after = budget_inputs["pretrained"].state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before), "the pretrained encoder was trained in place"


def test_early_stopping_never_looks_at_the_test_patients(budget_inputs):
    """Flipping every test outcome changes the test scores but no stopping step, no kept weights' step."""
    flipped = {**budget_inputs, "test_outcomes": ~budget_inputs["test_outcomes"]}
    first, second = (
        label_budget_experiment(**inputs, budgets=[80], repeats=1, recipe=TINY_RECIPE)
        for inputs in (budget_inputs, flipped)
    )
    assert first["best_step"].equals(second["best_step"]) and first["steps"].equals(second["steps"])
    np.testing.assert_allclose(first["auroc"], 1 - second["auroc"], atol=1e-9)


def test_label_budget_experiment_rejects_budgets_it_cannot_split(budget_inputs):
    pool_size = len(budget_inputs["pool_outcomes"])
    with pytest.raises(ValueError, match="budgets"):
        label_budget_experiment(**budget_inputs, budgets=[pool_size + 1], repeats=1, recipe=TINY_RECIPE)
    with pytest.raises(ValueError, match="too small"):
        label_budget_experiment(**budget_inputs, budgets=[8], repeats=1, recipe=TINY_RECIPE)


def toy_runs():
    rows = [
        {"budget": 100, "repeat": 0, "model": PRETRAINED, "auroc": 0.70, "auprc": 0.40},
        {"budget": 100, "repeat": 1, "model": PRETRAINED, "auroc": 0.80, "auprc": 0.50},
        {"budget": 100, "repeat": 0, "model": SCRATCH, "auroc": 0.60, "auprc": 0.30},
        {"budget": 100, "repeat": 1, "model": SCRATCH, "auroc": 0.60, "auprc": 0.30},
        {"budget": 500, "repeat": 0, "model": PRETRAINED, "auroc": 0.75, "auprc": 0.45},
        {"budget": 500, "repeat": 0, "model": SCRATCH, "auroc": 0.74, "auprc": 0.44},
    ]
    return pd.DataFrame(rows)


def test_summary_reports_mean_and_sample_sd_per_budget_and_model():
    table = summarise_label_budget(toy_runs())
    assert list(table.index) == [100, 500]
    assert table.loc[100, ("AUROC", PRETRAINED)] == "0.750±0.071"  # sd of 0.70 and 0.80 with ddof=1
    assert table.loc[100, ("AUROC", SCRATCH)] == "0.600±0.000"
    assert table.loc[500, ("AUPRC", SCRATCH)] == "0.440", "one subsample has no spread to report"
    with pytest.raises(ValueError, match="auroc"):
        summarise_label_budget(toy_runs().drop(columns="auroc"))


def test_label_budget_plot_draws_each_model_and_the_oracle_line():
    runs = pd.concat(
        [
            toy_runs(),
            pd.DataFrame(
                [{"budget": b, "repeat": 0, "model": "oracle", "auroc": 0.8, "auprc": 0.6} for b in (100, 500)]
            ),
        ]
    )
    fig = plot_label_budget(runs)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert sorted(labels) == sorted([PRETRAINED, SCRATCH, "oracle (true risk)"])
    plt.close(fig)
