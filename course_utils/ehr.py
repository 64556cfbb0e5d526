"""Electronic health records in the MEDS standard: a synthetic cohort, a reader, and BEHRT token sequences.

    root = write_meds_dataset("data/synthetic_meds", num_subjects=2000, seed=0)
    cohort = read_meds_dataset(root)                      # any MEDS dataset, e.g. a MIMIC-IV MEDS export
    bins = fit_value_bins(cohort.events_of(cohort.subjects("train")))
    sequences = build_sequences(cohort.events, bins)      # {subject_id: EHRSequence}
    vocabulary = Vocabulary.fit([sequences[s] for s in cohort.subjects("train")], min_count=5)

**The synthetic cohort** (``generate_cohort``) plants structure a model can find: demographics
(``MEDS_BIRTH``, sex); visits over years; a comorbidity model (obesity raises the risk of type 2
diabetes and hypertension; diabetes and hypertension raise the risk of chronic kidney disease;
hypertension, diabetes, kidney function and age raise the risk of heart failure); care pathways (a
diagnosis is followed by its medications and monitoring labs, with numeric values: HbA1c high in
diabetes, creatinine rising in CKD); and one outcome, heart-failure onset within a year of a
prediction time, drawn from a known risk model whose probability is saved as the oracle.

**Tokens** follow BEHRT (Li et al., 2020): ``[CLS]``, then each visit's events followed by ``[SEP]``;
every token carries the patient's age in years, its visit index and an alternating segment (0, 1, 0, ...).
A lab result becomes its code plus a quantile bin of its value (``LOINC//4548-4//Q3``); a missing value
leaves the bare code. Sequences longer than the model's window keep ``[CLS]`` and the most recent events.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import meds
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from flexible_schema.exceptions import SchemaValidationError, TableValidationError

# ---------------------------------------------------------------------------------------------
# Vocabulary of special tokens (ids are fixed so checks and models agree)

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = range(len(SPECIAL_TOKENS))
STRUCTURAL_IDS = (PAD_ID, CLS_ID, SEP_ID)  # never masked, never predicted
MAX_AGE = 120  # ages are clamped to [0, MAX_AGE] years
TASK_NAME = "heart_failure_1y"
DAY = np.timedelta64(1, "D")

# ---------------------------------------------------------------------------------------------
# The code catalogue: realistic vocabularies, each code tagged with its kind and clinical group


@dataclass(frozen=True)
class ClinicalCode:
    """One code of the synthetic cohort, with what ``metadata/codes.parquet`` says about it."""

    code: str
    description: str
    kind: str  # diagnosis | medication | lab | procedure | demographic
    group: str  # the condition it belongs to (diabetes, hypertension, ...), "acute", "routine" or "demographic"
    unit: str | None = None

    @property
    def parent(self) -> str:
        """A coarser code in the same vocabulary: ICD-10 category, ATC level 4, or the lab's kind."""
        vocabulary, _, value = self.code.partition("//")
        if vocabulary == "ICD10CM":
            return f"ICD10CM//{value.split('.')[0]}"
        if vocabulary == "ATC":
            return f"ATC//{value[:5]}"
        return f"{vocabulary}//{self.group.upper()}"


CATALOGUE = (
    ClinicalCode("MEDS_BIRTH", "Birth", "demographic", "demographic"),
    ClinicalCode("GENDER//F", "Sex: female", "demographic", "demographic"),
    ClinicalCode("GENDER//M", "Sex: male", "demographic", "demographic"),
    ClinicalCode("ICD10CM//E66.9", "Obesity, unspecified", "diagnosis", "obesity"),
    ClinicalCode("LOINC//39156-5", "Body mass index", "lab", "obesity", "kg/m2"),
    ClinicalCode("ICD10CM//E11.9", "Type 2 diabetes mellitus without complications", "diagnosis", "diabetes"),
    ClinicalCode("ATC//A10BA02", "metformin", "medication", "diabetes"),
    ClinicalCode("ATC//A10BB09", "gliclazide", "medication", "diabetes"),
    ClinicalCode("ATC//A10AE04", "insulin glargine", "medication", "diabetes"),
    ClinicalCode("LOINC//4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "lab", "diabetes", "%"),
    ClinicalCode("LOINC//2345-7", "Glucose [Mass/volume] in Serum or Plasma", "lab", "diabetes", "mg/dL"),
    ClinicalCode("CPT//92250", "Fundus photography (diabetic retinal screening)", "procedure", "diabetes"),
    ClinicalCode("ICD10CM//I10", "Essential (primary) hypertension", "diagnosis", "hypertension"),
    ClinicalCode("ATC//C09AA02", "enalapril", "medication", "hypertension"),
    ClinicalCode("ATC//C08CA01", "amlodipine", "medication", "hypertension"),
    ClinicalCode("ATC//C03AA03", "hydrochlorothiazide", "medication", "hypertension"),
    ClinicalCode("LOINC//8480-6", "Systolic blood pressure", "lab", "hypertension", "mm[Hg]"),
    ClinicalCode("ICD10CM//E78.5", "Hyperlipidemia, unspecified", "diagnosis", "hyperlipidemia"),
    ClinicalCode("ATC//C10AA05", "atorvastatin", "medication", "hyperlipidemia"),
    ClinicalCode("LOINC//2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "lab", "hyperlipidemia", "mg/dL"),
    ClinicalCode("ICD10CM//N18.30", "Chronic kidney disease, stage 3 unspecified", "diagnosis", "kidney"),
    ClinicalCode("ATC//C09CA01", "losartan", "medication", "kidney"),
    ClinicalCode("ATC//B03XA01", "erythropoietin", "medication", "kidney"),
    ClinicalCode("LOINC//2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "lab", "kidney", "mg/dL"),
    ClinicalCode("ICD10CM//I50.9", "Heart failure, unspecified", "diagnosis", "heart_failure"),
    ClinicalCode("ATC//C03CA01", "furosemide", "medication", "heart_failure"),
    ClinicalCode("ATC//C07AB07", "bisoprolol", "medication", "heart_failure"),
    ClinicalCode("LOINC//33762-6", "NT-proBNP [Mass/volume] in Serum or Plasma", "lab", "heart_failure", "pg/mL"),
    ClinicalCode("CPT//93306", "Echocardiography, transthoracic", "procedure", "heart_failure"),
    ClinicalCode("ICD10CM//J45.909", "Unspecified asthma, uncomplicated", "diagnosis", "asthma"),
    ClinicalCode("ATC//R03AC02", "salbutamol", "medication", "asthma"),
    ClinicalCode("ATC//R03BA02", "budesonide", "medication", "asthma"),
    ClinicalCode("ICD10CM//F32.9", "Major depressive disorder, single episode, unspecified", "diagnosis", "depression"),
    ClinicalCode("ATC//N06AB06", "sertraline", "medication", "depression"),
    ClinicalCode("ICD10CM//J06.9", "Acute upper respiratory infection, unspecified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//J02.9", "Acute pharyngitis, unspecified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//N39.0", "Urinary tract infection, site not specified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//M54.50", "Low back pain, unspecified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//K21.9", "Gastro-esophageal reflux disease without esophagitis", "diagnosis", "acute"),
    ClinicalCode("ATC//N02BE01", "paracetamol", "medication", "acute"),
    ClinicalCode("ATC//J01CA04", "amoxicillin", "medication", "acute"),
    ClinicalCode("ATC//J01MA02", "ciprofloxacin", "medication", "acute"),
    ClinicalCode("ATC//M01AE01", "ibuprofen", "medication", "acute"),
    ClinicalCode("ATC//A02BC01", "omeprazole", "medication", "acute"),
    ClinicalCode("LOINC//718-7", "Hemoglobin [Mass/volume] in Blood", "lab", "routine", "g/dL"),
    ClinicalCode("LOINC//6690-2", "Leukocytes [#/volume] in Blood", "lab", "routine", "10*3/uL"),
)
CODES = {entry.code: entry for entry in CATALOGUE}

# Care pathways: diagnosis code, then (medication, probability per visit), monitoring labs and procedures.
CHRONIC = {
    "obesity": ("ICD10CM//E66.9", (), ("LOINC//39156-5",), ()),
    "diabetes": ("ICD10CM//E11.9", (("ATC//A10BA02", 0.8), ("ATC//A10BB09", 0.25)), ("LOINC//4548-4", "LOINC//2345-7"), ("CPT//92250",)),
    "hypertension": ("ICD10CM//I10", (("ATC//C09AA02", 0.6), ("ATC//C08CA01", 0.35), ("ATC//C03AA03", 0.2)), ("LOINC//8480-6",), ()),
    "hyperlipidemia": ("ICD10CM//E78.5", (("ATC//C10AA05", 0.75),), ("LOINC//2093-3",), ()),
    "kidney": ("ICD10CM//N18.30", (("ATC//C09CA01", 0.5), ("ATC//B03XA01", 0.15)), ("LOINC//2160-0",), ()),
    "heart_failure": ("ICD10CM//I50.9", (("ATC//C03CA01", 0.8), ("ATC//C07AB07", 0.6)), ("LOINC//33762-6",), ("CPT//93306",)),
    "asthma": ("ICD10CM//J45.909", (("ATC//R03AC02", 0.7), ("ATC//R03BA02", 0.4)), (), ()),
    "depression": ("ICD10CM//F32.9", (("ATC//N06AB06", 0.7),), (), ()),
}
ACUTE = {  # acute visit reason -> its usual medication
    "ICD10CM//J06.9": "ATC//N02BE01",
    "ICD10CM//J02.9": "ATC//J01CA04",
    "ICD10CM//N39.0": "ATC//J01MA02",
    "ICD10CM//M54.50": "ATC//M01AE01",
    "ICD10CM//K21.9": "ATC//A02BC01",
}
# The heart-failure risk model: log yearly hazard = intercept + sum of these terms (see _heart_failure_hazard).
HEART_FAILURE_RISK = {
    "intercept": -2.7,
    "per_year_of_age_over_60": 0.05,
    "hypertension": 0.9,
    "diabetes": 0.5,
    "per_hba1c_point_over_7_in_diabetes": 0.35,
    "per_creatinine_mg_dl_over_1": 1.4,
    "obesity": 0.3,
}

# ---------------------------------------------------------------------------------------------
# The simulation of one subject


class _Subject:
    """The latent state of one simulated patient; times are in years (floats, calendar years)."""

    def __init__(self, rng: random.Random, subject_id: int):
        self.subject_id = subject_id
        self.rng = rng
        self.female = rng.random() < 0.5
        self.start = 2014.0 + 2.0 * rng.random()
        self.prediction_time = 2019.0 + rng.random()
        self.birth = self.start - rng.uniform(40.0, 80.0)
        self.onset: dict[str, float] = {}
        self.diagnosed: dict[str, float] = {}
        self.hba1c_level = rng.gauss(7.9, 1.0)
        self.creatinine_base = rng.gauss(0.9, 0.12)
        self.ckd_slope = rng.uniform(0.05, 0.25)  # mg/dL per year once CKD has started
        if rng.random() < 0.3:
            self.onset["obesity"] = self.start - 10.0
        for condition, prevalence in (("diabetes", 0.1), ("hypertension", 0.25), ("hyperlipidemia", 0.15), ("asthma", 0.08), ("depression", 0.08)):
            if rng.random() < prevalence * (1.8 if self.has("obesity", self.start) and condition != "asthma" else 1.0):
                self.onset[condition] = self.start - rng.uniform(0.0, 6.0)

    def age(self, t: float) -> float:
        return t - self.birth

    def has(self, condition: str, t: float) -> bool:
        return self.onset.get(condition, math.inf) <= t

    def hba1c(self, t: float) -> float:
        if not self.has("diabetes", t):
            return 5.4
        treated = self.diagnosed.get("diabetes", math.inf) <= t
        return self.hba1c_level - (0.6 if treated else 0.0)

    def creatinine(self, t: float) -> float:
        value = self.creatinine_base + 0.01 * max(self.age(t) - 50.0, 0.0)
        if self.has("kidney", t):
            value += 0.35 + self.ckd_slope * (t - self.onset["kidney"])
        return value

    def heart_failure_hazard(self, t: float) -> float:
        """Yearly hazard of heart-failure onset at time ``t`` (the outcome's known risk model)."""
        risk = HEART_FAILURE_RISK
        log_hazard = risk["intercept"] + risk["per_year_of_age_over_60"] * (self.age(t) - 60.0)
        log_hazard += risk["hypertension"] * self.has("hypertension", t) + risk["obesity"] * self.has("obesity", t)
        if self.has("diabetes", t):
            log_hazard += risk["diabetes"] + risk["per_hba1c_point_over_7_in_diabetes"] * max(self.hba1c(t) - 7.0, 0.0)
        log_hazard += risk["per_creatinine_mg_dl_over_1"] * max(self.creatinine(t) - 1.0, 0.0)
        return math.exp(log_hazard)

    def _incidence(self, condition: str, t: float) -> float:
        """Yearly hazard of a new chronic condition: the comorbidity model."""
        age = self.age(t) - 60.0
        obese = self.has("obesity", t)
        if condition == "diabetes":
            return math.exp(-4.0 + 0.02 * age + 1.1 * obese)
        if condition == "hypertension":
            return math.exp(-3.0 + 0.04 * age + 0.6 * obese)
        if condition == "kidney":
            return math.exp(-5.0 + 0.04 * age + 1.3 * self.has("diabetes", t) + 1.0 * self.has("hypertension", t))
        if condition == "heart_failure":  # before the prediction time, a quarter of the outcome model's hazard
            return 0.25 * self.heart_failure_hazard(t)
        return {"hyperlipidemia": 0.02, "asthma": 0.004, "depression": 0.01}[condition]

    def simulate_conditions(self) -> None:
        """Onsets year by year up to the prediction time; then the outcome year from the risk model."""
        t = self.start - 1.0
        while t < self.prediction_time:
            step = min(1.0, self.prediction_time - t)
            for condition in ("diabetes", "hypertension", "hyperlipidemia", "kidney", "heart_failure", "asthma", "depression"):
                if condition not in self.onset and self.rng.random() < 1.0 - math.exp(-self._incidence(condition, t) * step):
                    self.onset[condition] = t + step * self.rng.random()
            t += step
        self.outcome_probability = 1.0 - math.exp(-self.heart_failure_hazard(self.prediction_time))
        self.outcome = self.rng.random() < self.outcome_probability
        if self.outcome and "heart_failure" not in self.onset:
            self.onset["heart_failure"] = self.prediction_time + self.rng.random()

    def visit_times(self, end: float) -> list[float]:
        """A thinned Poisson process: 1.5 visits a year plus 1 a year per active condition."""
        times, t = [], self.start
        while True:
            t += self.rng.expovariate(7.0)
            if t >= end:
                return times
            active = sum(self.has(condition, t) for condition in CHRONIC)
            if self.rng.random() < (1.5 + active) / 7.0:
                times.append(t)

    def visit_events(self, t: float) -> list[tuple[float, str, float | None]]:
        """One visit's events: diagnoses at ``t``, labs one hour later, medications two hours later."""
        rng, hour = self.rng, 1.0 / (365.25 * 24)
        events = []

        def lab(code: str, value: float, spread: float) -> None:
            missing = rng.random() < 0.03  # a cancelled or pending result: the code without a value
            events.append((t + hour, code, None if missing else round(value + rng.gauss(0.0, spread), 2)))

        if rng.random() < 0.4:
            reason = rng.choice(sorted(ACUTE))
            events.append((t, reason, None))
            if rng.random() < 0.8:
                events.append((t + 2 * hour, ACUTE[reason], None))
        for condition, (diagnosis, medications, labs, procedures) in CHRONIC.items():
            if not self.has(condition, t):
                continue
            newly = condition not in self.diagnosed and rng.random() < 0.5
            if newly:
                self.diagnosed[condition] = t
            if condition not in self.diagnosed:
                continue
            if newly or rng.random() < 0.5:
                events.append((t, diagnosis, None))
            for medication, probability in medications:
                if rng.random() < probability:
                    events.append((t + 2 * hour, medication, None))
            if condition == "diabetes" and self.hba1c(t) > 8.5 and rng.random() < 0.6:
                events.append((t + 2 * hour, "ATC//A10AE04", None))
            for code in labs:
                if rng.random() < 0.6:
                    lab(code, *self._lab_value(code, t))
            for code in procedures:
                if rng.random() < 0.15:
                    events.append((t, code, None))
        measured = {code for _, code, _ in events}
        for code, probability in (("LOINC//8480-6", 0.5), ("LOINC//4548-4", 0.2), ("LOINC//2160-0", 0.25), ("LOINC//718-7", 0.2), ("LOINC//6690-2", 0.2)):
            if code not in measured and rng.random() < probability:
                lab(code, *self._lab_value(code, t))
        if not events:
            lab("LOINC//8480-6", *self._lab_value("LOINC//8480-6", t))
        return sorted(events, key=lambda event: event[0])

    def _lab_value(self, code: str, t: float) -> tuple[float, float]:
        """(mean, noise sd) of a lab result at time ``t``, from the latent state."""
        if code == "LOINC//4548-4":
            return self.hba1c(t), 0.3
        if code == "LOINC//2345-7":
            return 28.7 * self.hba1c(t) - 46.7, 12.0  # the ADAG relation between HbA1c and mean glucose
        if code == "LOINC//2160-0":
            return self.creatinine(t), 0.08
        if code == "LOINC//8480-6":
            treated = self.diagnosed.get("hypertension", math.inf) <= t
            return (122.0 if not self.has("hypertension", t) else 138.0 if treated else 152.0), 9.0
        if code == "LOINC//2093-3":
            treated = self.diagnosed.get("hyperlipidemia", math.inf) <= t
            return (190.0 if not self.has("hyperlipidemia", t) else 180.0 if treated else 250.0), 20.0
        if code == "LOINC//33762-6":
            return 1500.0, 400.0
        if code == "LOINC//39156-5":
            return (33.0 if self.has("obesity", t) else 25.0), 2.5
        if code == "LOINC//718-7":
            return (11.5 if self.has("kidney", t) else 14.0), 1.0
        return 7.0, 1.5  # leukocytes

    def events(self) -> list[tuple[float | None, str, float | None]]:
        """All events from birth to one year after the prediction time, static (timeless) ones first."""
        rows: list[tuple[float | None, str, float | None]] = [(None, "GENDER//F" if self.female else "GENDER//M", None)]
        rows.append((self.birth, "MEDS_BIRTH", None))
        for t in self.visit_times(self.prediction_time + 1.0):
            rows.extend(self.visit_events(t))
        return [rows[0], *sorted(rows[1:], key=lambda row: row[0])]  # visits hours apart may interleave


def _years_to_datetime(years: np.ndarray) -> np.ndarray:
    """Calendar years as floats (2015.5) -> ``datetime64[us]``, rounded to the minute."""
    minutes = np.round((years - 1970.0) * 365.25 * 24 * 60).astype(np.int64)
    return minutes.astype("datetime64[m]").astype("datetime64[us]")


def generate_cohort(num_subjects: int, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Simulate ``num_subjects`` patients -> ``(events, labels, oracle)`` pyarrow tables.

    ``events`` follows MEDS ``DataSchema`` (sorted by subject, then time, static rows first);
    ``labels`` follows ``LabelSchema`` (heart failure within a year of ``prediction_time``, for
    subjects without heart failure before it); ``oracle`` adds each labelled subject's true
    outcome probability (``subject_id, prediction_time, probability``). Deterministic in ``seed``.
    """
    if not isinstance(num_subjects, int) or num_subjects < 1:
        raise ValueError(f"num_subjects must be a positive int, got {num_subjects!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = random.Random(seed)
    subject_ids, times, codes, values = [], [], [], []
    label_rows = []
    for subject_id in range(1, num_subjects + 1):
        subject = _Subject(rng, subject_id)
        subject.simulate_conditions()
        rows = subject.events()
        subject_ids.extend([subject_id] * len(rows))
        times.extend(np.nan if t is None else t for t, _, _ in rows)
        codes.extend(code for _, code, _ in rows)
        values.extend(np.nan if v is None else v for _, _, v in rows)
        had_visit_before = any(t is not None and subject.start <= t <= subject.prediction_time for t, _, _ in rows)
        if not subject.has("heart_failure", subject.prediction_time) and had_visit_before:
            label_rows.append((subject_id, subject.prediction_time, subject.outcome, subject.outcome_probability))

    years = np.asarray(times, dtype=np.float64)
    static = np.isnan(years)
    stamps = _years_to_datetime(np.where(static, 1970.0, years))
    value_array = np.asarray(values, dtype=np.float32)
    events = pa.table(
        {
            "subject_id": pa.array(subject_ids, pa.int64()),
            "time": pa.array(stamps, pa.timestamp("us"), mask=static),
            "code": pa.array(codes, pa.string()),
            "numeric_value": pa.array(value_array, pa.float32(), mask=np.isnan(value_array)),
        }
    )
    label_ids = pa.array([row[0] for row in label_rows], pa.int64())
    prediction_times = pa.array(_years_to_datetime(np.array([row[1] for row in label_rows], dtype=np.float64)), pa.timestamp("us"))
    labels = pa.table({"subject_id": label_ids, "prediction_time": prediction_times, "boolean_value": pa.array([row[2] for row in label_rows], pa.bool_())})
    oracle = pa.table(
        {"subject_id": label_ids, "prediction_time": prediction_times, "probability": pa.array([row[3] for row in label_rows], pa.float64())}
    )
    return meds.DataSchema.align(events), meds.LabelSchema.align(labels), oracle


def _assign_splits(subject_ids: np.ndarray, seed: int, fractions=(0.7, 0.15, 0.15)) -> pa.Table:
    """A seeded 70/15/15 split into train, tuning and held_out, as a ``SubjectSplitSchema`` table."""
    order = np.random.default_rng(seed).permutation(len(subject_ids))
    cut_train = int(round(fractions[0] * len(subject_ids)))
    cut_tuning = cut_train + int(round(fractions[1] * len(subject_ids)))
    split = np.empty(len(subject_ids), dtype=object)
    split[order[:cut_train]] = meds.train_split
    split[order[cut_train:cut_tuning]] = meds.tuning_split
    split[order[cut_tuning:]] = meds.held_out_split
    return meds.SubjectSplitSchema.align(pa.table({"subject_id": pa.array(subject_ids, pa.int64()), "split": pa.array(split, pa.string())}))


def code_metadata() -> pa.Table:
    """``metadata/codes.parquet`` for the synthetic cohort: description, parents, and extra kind/group/unit columns."""
    table = pa.table(
        {
            "code": [entry.code for entry in CATALOGUE],
            "description": [entry.description for entry in CATALOGUE],
            "parent_codes": pa.array([[] if entry.kind == "demographic" else [entry.parent] for entry in CATALOGUE], pa.list_(pa.string())),
            "kind": [entry.kind for entry in CATALOGUE],
            "group": [entry.group for entry in CATALOGUE],
            "unit": [entry.unit for entry in CATALOGUE],
        }
    )
    return meds.CodeMetadataSchema.align(table)


def write_meds_dataset(path, num_subjects: int = 2000, seed: int = 0) -> Path:
    """Generate the synthetic cohort and write it as a MEDS dataset under ``path``; return the path.

    Layout: ``data/{train,tuning,held_out}/0.parquet``, ``metadata/codes.parquet``,
    ``metadata/subject_splits.parquet``, ``metadata/dataset.json``, ``labels/heart_failure_1y.parquet``
    (``LabelSchema``) and ``labels/heart_failure_1y_oracle.parquet`` (the true probabilities).
    """
    root = Path(path)
    events, labels, oracle = generate_cohort(num_subjects, seed)
    splits = _assign_splits(np.arange(1, num_subjects + 1), seed)
    for directory in ("data", "metadata", "labels"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for split in (meds.train_split, meds.tuning_split, meds.held_out_split):
        members = splits.filter(pc.equal(splits["split"], split))["subject_id"]
        shard = events.filter(pc.is_in(events["subject_id"], members))
        (root / meds.data_subdirectory / split).mkdir(exist_ok=True)
        pq.write_table(shard, root / meds.data_subdirectory / split / "0.parquet")
    pq.write_table(splits, root / meds.subject_splits_filepath)
    pq.write_table(code_metadata(), root / meds.code_metadata_filepath)
    pq.write_table(labels, root / "labels" / f"{TASK_NAME}.parquet")
    pq.write_table(oracle, root / "labels" / f"{TASK_NAME}_oracle.parquet")
    metadata = {
        "dataset_name": "course_synthetic_cardiometabolic",
        "dataset_version": f"seed{seed}-n{num_subjects}",
        "etl_name": "course_utils.ehr.write_meds_dataset",
        "etl_version": "0.1.0",
        "meds_version": meds.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "license": "CC0-1.0 (synthetic data)",
        "code_modifier_columns": [],
    }
    meds.DatasetMetadataSchema.validate(metadata)
    (root / meds.dataset_metadata_filepath).write_text(json.dumps(metadata, indent=2))
    return root


# ---------------------------------------------------------------------------------------------
# Reading any MEDS dataset


def _conform(table: pa.Table, schema, file: Path, columns: Sequence[str]) -> pa.Table:
    """Select ``columns`` and align them to the MEDS schema; a missing, uncastable or wrongly null column raises ValueError naming file and column."""
    for column in columns:
        if column not in table.column_names:
            required = ", ".join(schema.required_columns())
            raise ValueError(f"{file}: missing column {column!r}; a MEDS {schema.__name__} table needs {required} (found {', '.join(table.column_names)})")
    try:
        table = schema.align(table.select(list(columns)))  # casts castable types (e.g. int32 ids, ns timestamps)
        schema.validate(table)
    except (SchemaValidationError, TableValidationError) as error:
        raise ValueError(f"{file}: {error}") from error
    return table


@dataclass
class MedsDataset:
    """A MEDS dataset in memory: its events (sorted by subject, then time, static rows first) and splits."""

    root: Path
    events: pa.Table  # subject_id, time, code, numeric_value
    splits: dict[int, str]
    codes: pa.Table | None

    def subjects(self, split: str) -> list[int]:
        """The subject ids in ``split`` (``train``, ``tuning`` or ``held_out``), ascending."""
        chosen = sorted(subject for subject, name in self.splits.items() if name == split)
        if not chosen:
            raise ValueError(f"split {split!r} has no subjects; splits present: {sorted(set(self.splits.values()))}")
        return chosen

    def events_of(self, subject_ids: Iterable[int]) -> pa.Table:
        """The events of the given subjects."""
        return self.events.filter(pc.is_in(self.events["subject_id"], pa.array(list(subject_ids), pa.int64())))


def read_meds_dataset(root) -> MedsDataset:
    """Read ``root/data/**/*.parquet`` (+ splits and code metadata when present) of any MEDS dataset.

    Only ``subject_id``, ``time``, ``code`` and ``numeric_value`` are kept (the last is optional);
    a shard that lacks a required column, or holds one that cannot be cast to the MEDS type,
    raises ``ValueError`` naming the file and the column.
    """
    root = Path(root)
    files = sorted((root / meds.data_subdirectory).rglob("*.parquet"))
    if not files:
        raise ValueError(f"root={str(root)!r} holds no data/*.parquet files; expected a MEDS dataset directory")
    shards = []
    for file in files:
        table = pq.read_table(file)
        if "numeric_value" not in table.column_names:
            table = table.append_column("numeric_value", pa.nulls(len(table), pa.float32()))
        shards.append(_conform(table, meds.DataSchema, file, ("subject_id", "time", "code", "numeric_value")))
    events = pa.concat_tables(shards).sort_by([("subject_id", "ascending", "at_start"), ("time", "ascending", "at_start")])

    splits_file = root / meds.subject_splits_filepath
    if splits_file.exists():
        table = _conform(pq.read_table(splits_file), meds.SubjectSplitSchema, splits_file, ("subject_id", "split"))
        splits = dict(zip(table["subject_id"].to_pylist(), table["split"].to_pylist()))
    else:
        splits = {subject: meds.train_split for subject in pc.unique(events["subject_id"]).to_pylist()}
    codes_file = root / meds.code_metadata_filepath
    codes = pq.read_table(codes_file) if codes_file.exists() else None
    if codes is not None and "code" not in codes.column_names:
        raise ValueError(f"{codes_file}: missing column 'code'; MEDS code metadata needs code, description, parent_codes")
    return MedsDataset(root, events, splits, codes)


def read_labels(path) -> pa.Table:
    """A MEDS label parquet (``subject_id, prediction_time, boolean_value``), validated against ``LabelSchema``."""
    path = Path(path)
    table = pq.read_table(path)
    extra = [c for c in table.column_names if c not in meds.LabelSchema.columns()]
    if extra:
        raise ValueError(f"{path}: columns {extra} are not in the MEDS LabelSchema ({', '.join(meds.LabelSchema.columns())})")
    columns = [c for c in meds.LabelSchema.columns() if c in table.column_names or c in meds.LabelSchema.required_columns()]
    return _conform(table, meds.LabelSchema, path, columns)


# ---------------------------------------------------------------------------------------------
# From events to BEHRT tokens


class EHRSequence(NamedTuple):
    """One patient as BEHRT sees it: parallel lists, one entry per token."""

    tokens: list[str]
    ages: list[int]  # whole years since MEDS_BIRTH (0 if the subject has no birth event)
    visits: list[int]  # 0 for [CLS] and the first visit, 1 for the second, ...
    segments: list[int]  # visit index % 2: BEHRT's alternating A/B segments


def patient_sequence(times, tokens: Sequence[str], visit_gap: np.timedelta64 = DAY) -> EHRSequence:
    """One patient's events (sorted by time, static rows with NaT first) -> ``EHRSequence``.

    ``MEDS_BIRTH`` sets the ages and is not a token; static (timeless) events join the first visit.
    A new visit starts where the gap to the previous event exceeds ``visit_gap``, so events at the
    same timestamp always share a visit. Output: ``[CLS]``, then each visit's tokens followed by
    ``[SEP]``; ``[CLS]`` takes the first event's age, each ``[SEP]`` the age and visit of the events before it.
    """
    times = np.asarray(times, dtype="datetime64[us]")
    tokens = list(tokens)
    if len(times) != len(tokens):
        raise ValueError(f"times and tokens must have the same length, got {len(times)} and {len(tokens)}")
    is_birth = np.array([token == meds.birth_code for token in tokens], dtype=bool)
    birth = times[is_birth][0] if is_birth.any() else None
    times = times[~is_birth]
    tokens = [token for token, birth_row in zip(tokens, is_birth) if not birth_row]
    if not tokens:
        raise ValueError("the patient has no events besides MEDS_BIRTH; expected at least one event")
    dated = ~np.isnat(times)
    if dated.any():
        first_dated = int(np.argmax(dated))
        if dated[:first_dated].any() or not dated[first_dated:].all() or (np.diff(times[first_dated:]) < np.timedelta64(0)).any():
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
    return EHRSequence(["[CLS]", *sequence.tokens[keep]], [ages[0], *ages], [0, *renumbered], [0, *(v % 2 for v in renumbered)])


def fit_value_bins(events: pa.Table, num_bins: int = 3) -> dict[str, np.ndarray]:
    """Per code with numeric values, the ``num_bins - 1`` inner quantile edges (fit on training events)."""
    if not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}")
    valued = events.filter(pc.is_valid(events["numeric_value"])).select(["code", "numeric_value"]).to_pandas()
    quantiles = np.linspace(0, 1, num_bins + 1)[1:-1]
    return {code: np.quantile(group.to_numpy(np.float64), quantiles) for code, group in valued.groupby("code")["numeric_value"]}


def event_tokens(codes: Sequence[str], values: np.ndarray, bins: dict[str, np.ndarray]) -> list[str]:
    """Codes -> tokens: ``code//Q{k}`` for a value in the k-th quantile bin of its code, else the bare code."""
    values = np.asarray(values, dtype=np.float64)
    tokens = list(codes)
    for index in np.flatnonzero(~np.isnan(values)):
        edges = bins.get(tokens[index])
        if edges is not None:
            tokens[index] = f"{tokens[index]}//Q{int(np.searchsorted(edges, values[index], side='right')) + 1}"
    return tokens


def build_sequences(events: pa.Table, bins: dict[str, np.ndarray], end_times: dict[int, np.datetime64] | None = None, visit_gap=DAY) -> dict[int, EHRSequence]:
    """Every subject's ``EHRSequence`` from a sorted MEDS events table.

    With ``end_times`` (subject -> prediction time) only those subjects are built, from their
    events up to and including that time (MEDS label semantics); static rows are always kept.
    """
    if end_times is not None:
        events = events.filter(pc.is_in(events["subject_id"], pa.array(list(end_times), pa.int64())))
        subject_ids = events["subject_id"].to_numpy()
        ends = np.array([end_times[s] for s in subject_ids], dtype="datetime64[us]") if len(subject_ids) else np.array([], "datetime64[us]")
        times = events["time"].to_numpy(zero_copy_only=False).astype("datetime64[us]")
        events = events.filter(pa.array(np.isnat(times) | (times <= ends)))
    subject_ids = events["subject_id"].to_numpy()
    times = events["time"].to_numpy(zero_copy_only=False).astype("datetime64[us]")
    values = events["numeric_value"].to_numpy(zero_copy_only=False).astype(np.float64)
    tokens = event_tokens(events["code"].to_pylist(), values, bins)
    starts = np.flatnonzero(np.concatenate([[True], subject_ids[1:] != subject_ids[:-1]])) if len(subject_ids) else np.array([], int)
    bounds = np.append(starts, len(subject_ids))
    return {
        int(subject_ids[start]): patient_sequence(times[start:stop], tokens[start:stop], visit_gap)
        for start, stop in zip(bounds[:-1], bounds[1:])
        if any(token != meds.birth_code for token in tokens[start:stop])
    }


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


def code_group(token: str) -> str:
    """The clinical group of a token (``LOINC//4548-4//Q3`` -> ``diabetes``), ``special`` or ``other``."""
    if token in SPECIAL_TOKENS:
        return "special"
    code = token if token in CODES else token.rsplit("//", 1)[0]
    entry = CODES.get(code)
    return entry.group if entry else "other"


# ---------------------------------------------------------------------------------------------
# Tensors for the model


class EHRDataset(torch.utils.data.Dataset):
    """Encoded, left-truncated sequences (and optional binary labels) as 1-D LongTensors per field."""

    def __init__(self, sequences: Sequence[EHRSequence], vocabulary: Vocabulary, max_len: int, labels: Sequence[bool] | None = None):
        if labels is not None and len(labels) != len(sequences):
            raise ValueError(f"labels must match sequences in length, got {len(labels)} and {len(sequences)}")
        self.items = []
        for sequence in sequences:
            sequence = truncate_left(sequence, max_len)
            self.items.append(
                {
                    "input_ids": torch.tensor(vocabulary.encode(sequence.tokens)),
                    "ages": torch.tensor(sequence.ages),
                    "visits": torch.tensor(sequence.visits),
                    "segments": torch.tensor(sequence.segments),
                }
            )
        if labels is not None:
            for item, label in zip(self.items, labels):
                item["label"] = torch.tensor(float(label))
        self.lengths = [len(item["input_ids"]) for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def collate_ehr(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a list of dataset items to the longest: ``input_ids/ages/visits/segments/attention_mask`` ``[B, L]`` (+ ``label`` ``[B]``)."""
    pad = torch.nn.utils.rnn.pad_sequence
    batch = {
        "input_ids": pad([item["input_ids"] for item in items], batch_first=True, padding_value=PAD_ID),
        "ages": pad([item["ages"] for item in items], batch_first=True),
        "visits": pad([item["visits"] for item in items], batch_first=True),
        "segments": pad([item["segments"] for item in items], batch_first=True),
    }
    batch["attention_mask"] = (batch["input_ids"] != PAD_ID).long()
    if "label" in items[0]:
        batch["label"] = torch.stack([item["label"] for item in items])
    return batch


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of similar length: shuffle, cut into buckets of ``bucket_batches`` batches, sort each bucket by length.

    Padding then costs little, while batch order stays random. Each pass draws a new shuffle.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, bucket_batches: int = 20, seed: int = 0):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.shuffle, self.bucket_batches = batch_size, shuffle, bucket_batches
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator) if self.shuffle else torch.arange(len(self.lengths))
        bucket = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), bucket):
            chunk = order[start : start + bucket]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        yield from batches


def padding_fraction(lengths: Sequence[int], batches: Iterable[Sequence[int]]) -> float:
    """The share of ``[PAD]`` positions when each batch is padded to its longest sequence."""
    real = padded = 0
    for batch in batches:
        batch_lengths = [lengths[i] for i in batch]
        real += sum(batch_lengths)
        padded += max(batch_lengths) * len(batch_lengths)
    return 1.0 - real / padded
