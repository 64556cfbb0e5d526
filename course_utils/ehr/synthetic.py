"""A synthetic MEDS cohort with planted structure: comorbidities, care pathways and a known heart-failure risk model."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timezone
from pathlib import Path

import meds
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from course_utils.ehr.codes import CATALOGUE

TASK_NAME = "heart_failure_1y"
ORACLE_SUBDIRECTORY = "oracle"  # beside labels/: the true outcome probabilities, not a MEDS label file

# Care pathways: diagnosis code, then (medication, probability per visit), monitoring labs and procedures.
CHRONIC = {
    "obesity": ("ICD10CM//E66.9", (), ("LOINC//39156-5",), ()),
    "diabetes": (
        "ICD10CM//E11.9",
        (("ATC//A10BA02", 0.8), ("ATC//A10BB09", 0.25)),
        ("LOINC//4548-4", "LOINC//2345-7"),
        ("CPT//92250",),
    ),
    "hypertension": (
        "ICD10CM//I10",
        (("ATC//C09AA02", 0.6), ("ATC//C08CA01", 0.35), ("ATC//C03AA03", 0.2)),
        ("LOINC//8480-6",),
        (),
    ),
    "hyperlipidemia": ("ICD10CM//E78.5", (("ATC//C10AA05", 0.75),), ("LOINC//2093-3",), ()),
    "kidney": ("ICD10CM//N18.30", (("ATC//C09CA01", 0.5), ("ATC//B03XA01", 0.15)), ("LOINC//2160-0",), ()),
    "heart_failure": (
        "ICD10CM//I50.9",
        (("ATC//C03CA01", 0.8), ("ATC//C07AB07", 0.6)),
        ("LOINC//33762-6",),
        ("CPT//93306",),
    ),
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
        for condition, prevalence in (
            ("diabetes", 0.1),
            ("hypertension", 0.25),
            ("hyperlipidemia", 0.15),
            ("asthma", 0.08),
            ("depression", 0.08),
        ):
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
            for condition in (
                "diabetes",
                "hypertension",
                "hyperlipidemia",
                "kidney",
                "heart_failure",
                "asthma",
                "depression",
            ):
                if condition not in self.onset and self.rng.random() < 1.0 - math.exp(
                    -self._incidence(condition, t) * step
                ):
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
        for code, probability in (
            ("LOINC//8480-6", 0.5),
            ("LOINC//4548-4", 0.2),
            ("LOINC//2160-0", 0.25),
            ("LOINC//718-7", 0.2),
            ("LOINC//6690-2", 0.2),
        ):
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
    prediction_times = pa.array(
        _years_to_datetime(np.array([row[1] for row in label_rows], dtype=np.float64)), pa.timestamp("us")
    )
    labels = pa.table(
        {
            "subject_id": label_ids,
            "prediction_time": prediction_times,
            "boolean_value": pa.array([row[2] for row in label_rows], pa.bool_()),
        }
    )
    oracle = pa.table(
        {
            "subject_id": label_ids,
            "prediction_time": prediction_times,
            "probability": pa.array([row[3] for row in label_rows], pa.float64()),
        }
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
    return meds.SubjectSplitSchema.align(
        pa.table({"subject_id": pa.array(subject_ids, pa.int64()), "split": pa.array(split, pa.string())})
    )


def code_metadata() -> pa.Table:
    """``metadata/codes.parquet`` for the synthetic cohort: description, parents, and extra kind/group/unit columns."""
    table = pa.table(
        {
            "code": [entry.code for entry in CATALOGUE],
            "description": [entry.description for entry in CATALOGUE],
            "parent_codes": pa.array(
                [[] if entry.kind == "demographic" else [entry.parent] for entry in CATALOGUE], pa.list_(pa.string())
            ),
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
    (``LabelSchema``, the only kind of file in ``labels/``) and ``oracle/heart_failure_1y.parquet``
    (``subject_id, prediction_time, probability``: the true outcome probability of each label row, in
    the label file's order; outside ``labels/`` because its extra column is not MEDS).
    """
    root = Path(path)
    events, labels, oracle = generate_cohort(num_subjects, seed)
    splits = _assign_splits(np.arange(1, num_subjects + 1), seed)
    for directory in ("data", "metadata", "labels", ORACLE_SUBDIRECTORY):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for split in (meds.train_split, meds.tuning_split, meds.held_out_split):
        members = splits.filter(pc.equal(splits["split"], split))["subject_id"]
        shard = events.filter(pc.is_in(events["subject_id"], members))
        (root / meds.data_subdirectory / split).mkdir(exist_ok=True)
        pq.write_table(shard, root / meds.data_subdirectory / split / "0.parquet")
    pq.write_table(splits, root / meds.subject_splits_filepath)
    pq.write_table(code_metadata(), root / meds.code_metadata_filepath)
    pq.write_table(labels, root / "labels" / f"{TASK_NAME}.parquet")
    pq.write_table(oracle, root / ORACLE_SUBDIRECTORY / f"{TASK_NAME}.parquet")
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
