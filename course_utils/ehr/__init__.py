"""Electronic health records in the MEDS standard: a synthetic cohort, a reader, and BEHRT token sequences.

    root = write_meds_dataset("data/synthetic_meds", num_subjects=2000, seed=0)
    cohort = read_meds_dataset(root)                      # any MEDS dataset, e.g. a MIMIC-IV MEDS export
    bins = fit_value_bins(cohort.events_of(cohort.subjects("train")))
    sequences = build_sequences(cohort.events, bins)      # {subject_id: EHRSequence}
    vocabulary = Vocabulary.fit([sequences[s] for s in cohort.subjects("train")], min_count=5)
    labels = read_labels(root / "labels" / f"{TASK_NAME}.parquet")
    oracle = pq.read_table(root / ORACLE_SUBDIRECTORY / f"{TASK_NAME}.parquet")  # the synthetic cohort's true risks
    labelled = build_labelled_sequences(cohort.events, bins, labels)  # {label row: EHRSequence up to its time}

**The synthetic cohort** (``generate_cohort``) plants structure a model can find: demographics
(``MEDS_BIRTH``, sex); visits over years; a comorbidity model (obesity raises the risk of type 2
diabetes and hypertension; diabetes and hypertension raise the risk of chronic kidney disease;
hypertension, diabetes, kidney function and age raise the risk of heart failure); care pathways (a
diagnosis is followed by its medications and monitoring labs, with numeric values: HbA1c high in
diabetes, creatinine rising in CKD); and one outcome, heart-failure onset within a year of a
prediction time, drawn from a known risk model whose probability is saved as the oracle (in
``oracle/``, beside ``labels/``, which holds only MEDS label files).

**Tokens** follow BEHRT (Li et al., 2020): ``[CLS]``, then each visit's events followed by ``[SEP]``;
every token carries the patient's age in years, its visit index and an alternating segment (0, 1, 0, ...).
A lab result becomes its code plus a quantile bin of its value (``LOINC//4548-4//Q3``); a missing value
leaves the bare code. Sequences longer than the model's window keep ``[CLS]`` and the most recent events.

Modules: ``sequences`` (tokens, ages, visits, vocabulary), ``codes`` (the code catalogue),
``synthetic`` (the cohort generator), ``reader`` (any MEDS dataset), ``batching`` (tensors for the model)
and ``views`` (random views of a patient for contrastive pretraining). This package is data only: the
models are in ``course_utils.models.behrt``, the experiments in ``course_utils.experiments``.
"""

from course_utils.ehr.batching import EHRDataset, LengthBucketSampler, collate_ehr, padding_fraction
from course_utils.ehr.codes import CATALOGUE, CODES, ClinicalCode, code_group
from course_utils.ehr.reader import MedsDataset, read_labels, read_meds_dataset
from course_utils.ehr.sequences import (
    DAY,
    MAX_AGE,
    EHRSequence,
    Vocabulary,
    build_labelled_sequences,
    build_sequences,
    event_tokens,
    fit_value_bins,
    is_birth_code,
    patient_sequence,
    truncate_left,
)
from course_utils.ehr.synthetic import (
    ACUTE,
    CHRONIC,
    HEART_FAILURE_RISK,
    ORACLE_SUBDIRECTORY,
    TASK_NAME,
    code_metadata,
    generate_cohort,
    write_meds_dataset,
)
from course_utils.masking import CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, STRUCTURAL_IDS, UNK_ID

__all__ = [
    "SPECIAL_TOKENS",
    "PAD_ID",
    "CLS_ID",
    "SEP_ID",
    "MASK_ID",
    "UNK_ID",
    "STRUCTURAL_IDS",
    "MAX_AGE",
    "DAY",
    "EHRSequence",
    "is_birth_code",
    "patient_sequence",
    "truncate_left",
    "fit_value_bins",
    "event_tokens",
    "build_sequences",
    "build_labelled_sequences",
    "Vocabulary",
    "ClinicalCode",
    "CATALOGUE",
    "CODES",
    "code_group",
    "TASK_NAME",
    "ORACLE_SUBDIRECTORY",
    "CHRONIC",
    "ACUTE",
    "HEART_FAILURE_RISK",
    "generate_cohort",
    "code_metadata",
    "write_meds_dataset",
    "MedsDataset",
    "read_meds_dataset",
    "read_labels",
    "EHRDataset",
    "collate_ehr",
    "LengthBucketSampler",
    "padding_fraction",
]
