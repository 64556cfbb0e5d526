"""Regrading a class never undoes an instructor's decision.

- A score or comment entered in formgrader stays: ``gradebook.record`` updates only the autograder's scores,
  and nbgrader ranks a manual score above them.
- ``RESULTS/overrides.csv`` (``OVERRIDE_COLUMNS``: student as in grades.csv, lab, exercise as its function
  or test-cell name, points, reason) replaces the autograder's points for that exercise on every run, in
  ``grades.csv`` (its ``overrides`` column says which and why) and in the gradebook. Delete the line and the
  next run restores the autograder's points. A manual score in formgrader still wins over an override.
- A run that fails for an unchanged submission (a limit hit, a process lost, the grader's own error, so
  fewer points than the last run) keeps the last run's grade, and the row's reason says so.
"""

from __future__ import annotations

import csv
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from course_utils.grading.exercises import read_lab

OVERRIDE_COLUMNS = ["student", "lab", "exercise", "points", "reason"]


class BadOverrides(ValueError):
    """``overrides.csv`` has a line that names no exercise of the course, or impossible points."""


@dataclass(frozen=True)
class Override:
    """An instructor's points for one exercise of one student's lab, replacing the autograder's."""

    student: str
    lab: str
    test_id: str
    points: float
    reason: str


def _exercises(lab: str) -> dict[str, tuple[str, float]]:
    """``{function name or test id: (test id, points)}`` for ``lab``; empty for a lab the course lacks."""
    from course_utils.grading.grader import lab_folder, reference_notebook

    references = sorted((lab_folder() / lab).glob("*.ipynb")) if lab else []
    if not references:
        return {}
    spec = read_lab(reference_notebook(references[0]), lab, references[0].stem)
    by_name = {exercise.test_id: (exercise.test_id, exercise.points) for exercise in spec.exercises}
    by_name.update({exercise.name: (exercise.test_id, exercise.points) for exercise in spec.exercises})
    return by_name


def read_overrides(path: Path) -> list[Override]:
    """The overrides in ``path``, none if it does not exist. ``BadOverrides`` names the line of a bad one."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in OVERRIDE_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise BadOverrides(f"{path} lacks the columns {missing}; expected the header {','.join(OVERRIDE_COLUMNS)}")
        overrides, seen = [], {}
        for line, entry in enumerate(reader, start=2):
            where = f"{path} line {line}"
            exercises = _exercises(entry["lab"].strip())
            if not exercises:
                raise BadOverrides(f"{where}: lab {entry['lab']!r} is not a lab of this course")
            if entry["exercise"].strip() not in exercises:
                names = sorted(name for name in exercises if not name.startswith("test_"))
                raise BadOverrides(f"{where}: exercise {entry['exercise']!r} is not one of {entry['lab']}'s: {names}")
            test_id, most = exercises[entry["exercise"].strip()]
            try:
                points = float(entry["points"])
            except (TypeError, ValueError):
                points = float("nan")
            if not 0 <= points <= most:
                raise BadOverrides(f"{where}: points {entry['points']!r} must be a number from 0 to {most:g}")
            override = Override(entry["student"].strip(), entry["lab"].strip(), test_id, points, entry["reason"] or "")
            key = (override.student, override.lab, test_id)
            if key in seen:
                raise BadOverrides(f"{where} overrides the same exercise as line {seen[key]}; keep one of them")
            seen[key] = line
            overrides.append(override)
    return overrides


def apply_overrides(rows: list[dict], overrides: list[Override], gradebook) -> list[dict]:
    """``classroom.autograde``'s rows with ``overrides`` applied, as new rows: each graded row's points become
    the autograder's (or an override's) in ``gradebook`` (an open ``nbgrader.api.Gradebook``), read back with
    any manual score, and
    its ``overrides`` column lists the overrides. Warns about an override that matches no graded row."""
    from course_utils.grading.gradebook import set_auto_scores

    chosen = defaultdict(dict)  # (student, lab) -> {test id: override}
    for override in overrides:
        chosen[override.student, override.lab][override.test_id] = override
    new_rows = [dict(row) for row in rows]
    scored = [row for row in new_rows if row.get("points")]
    marks = []
    for row in scored:
        mine = chosen.get((row["student"], row["lab"]), {})
        marks.append((row["student"], row["lab"], {**row["points"], **{t: o.points for t, o in mine.items()}}))
        row["overrides"] = "; ".join(f"{o.test_id}: {o.points:g} ({o.reason})" for o in mine.values())
    for row, held in zip(scored, set_auto_scores(gradebook, marks)):
        row.update(points=held, score=sum(held.values()))
    unmatched = set(chosen) - {(row["student"], row["lab"]) for row in scored}
    for student, lab in sorted(unmatched):
        warnings.warn(f"overrides.csv: {student} has no graded {lab} submission; its override is not applied")
    return new_rows


def kept_grade(result: dict, score: float | None, previous: dict | None) -> dict | None:
    """The last run's row for a submission that this run failed (see the module docstring), with its reason
    saying so; None when this run's ``result`` (status, reason, digest; ``score``: the points it earned,
    None if ungraded) stands. ``previous`` is the submission's entry in ``state.json`` (digest, row)."""
    if previous is None or result["status"] == "graded" or previous.get("digest") != result["digest"]:
        return None
    last = previous["row"]
    if last["status"] not in ("graded", "partial") or (score is not None and score >= last["score"]):
        return None
    failure = f"this run was {result['status']} ({result['reason']})"[:300]
    return {**last, "reason": f"{failure}; kept the last run's grade", "kept": True}
