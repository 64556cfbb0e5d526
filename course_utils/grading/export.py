"""Grades for an LMS: ``python -m course_utils export-grades RESULTS --canvas ROSTER.csv --out FILE.csv``.

ROSTER is a Canvas gradebook export. The output keeps its ``ROSTER_COLUMNS`` and every one of its rows, in
order, and adds one column per lab graded in ``RESULTS/grades.csv`` with the student's total points (the
best of their notebooks for that lab; blank where they submitted none). A Canvas "Points Possible" row gets
each lab's maximum. A student's name in the submissions matches the roster's ``--match-column``
(``SIS Login ID`` by default; compared without case, after the same clean-up as the submission's folder
name). Submissions that match no roster row are returned, and written to a second file.

``nbgrader_csv`` writes nbgrader's own CSV, ``RESULTS/nbgrader/grades.csv``, with the exporter that
``nbgrader export`` runs.
"""

from __future__ import annotations

import csv
from pathlib import Path

ROSTER_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MATCH_COLUMN = "SIS Login ID"
POINTS_POSSIBLE = "Points Possible"
UNMATCHED_COLUMNS = ["student", "lab", "score", "max_score", "status"]


def read_grades(results: Path) -> list[dict]:
    """The rows of ``RESULTS/grades.csv``; ``FileNotFoundError`` saying how to make it."""
    path = Path(results) / "grades.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected RESULTS to be the --out folder of `autograde`")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _roster(path: Path, match_column: str) -> list[dict]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"roster {path} not found; expected a Canvas gradebook export (.csv)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [column for column in ROSTER_COLUMNS if column not in columns]
        if missing:
            raise ValueError(f"roster {path} lacks the columns {missing}; expected a Canvas gradebook export")
        if match_column not in columns:
            raise ValueError(f"--match-column {match_column!r} is not a column of {path}; expected one of {columns}")
        return list(reader)


def lms_grades(
    results: Path, roster: Path, match_column: str = MATCH_COLUMN
) -> tuple[list[str], list[dict], list[dict]]:
    """``(columns, rows, unmatched)``: the roster's rows with one column per lab, and the grades.csv rows of
    submissions that match no roster row. See the module docstring."""
    from course_utils.grading.classroom import student_id

    grades = read_grades(results)
    roster = _roster(roster, match_column)
    labs = sorted({row["lab"] for row in grades if row["lab"]})
    best, most = {}, {}
    for row in grades:
        if row["lab"]:
            key = (row["student"], row["lab"])
            best[key] = max(best.get(key, 0.0), float(row["score"]))
            most[row["lab"]] = max(most.get(row["lab"], 0.0), float(row["max_score"]))
    key_of = {
        student_id(entry[match_column]).casefold(): entry[match_column] for entry in roster if entry[match_column]
    }
    students = {row["student"] for row in grades}
    matched = {student: key_of.get(student.casefold()) for student in students}
    by_login = {login: student for student, login in matched.items() if login is not None}
    rows = []
    for entry in roster:
        row = {column: entry[column] for column in ROSTER_COLUMNS}
        if entry["Student"].strip() == POINTS_POSSIBLE:
            row.update({lab: f"{most[lab]:g}" for lab in labs})
        else:
            student = by_login.get(entry[match_column])
            row.update({lab: f"{best[student, lab]:g}" if (student, lab) in best else "" for lab in labs})
        rows.append(row)
    unmatched = [row for row in grades if matched[row["student"]] is None]
    return ROSTER_COLUMNS + labs, rows, unmatched


def _write(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def unmatched_path(out: Path) -> Path:
    """Where the submissions that match no roster row go: ``FILE.unmatched.csv`` beside ``FILE.csv``."""
    return Path(out).with_suffix(".unmatched.csv")


def export_grades(results: Path, roster: Path, out: Path, match_column: str = MATCH_COLUMN) -> list[dict]:
    """Write the LMS file ``out`` and ``unmatched_path(out)`` (``UNMATCHED_COLUMNS``); returns the unmatched rows."""
    columns, rows, unmatched = lms_grades(results, roster, match_column)
    _write(Path(out), columns, rows)
    _write(unmatched_path(out), UNMATCHED_COLUMNS, unmatched)
    return unmatched


def nbgrader_csv(results: Path) -> Path:
    """Write nbgrader's CSV of the gradebook in ``RESULTS/nbgrader`` as ``nbgrader export`` does; returns its path."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    from course_utils.grading.course import nbgrader_api

    root = Path(results) / "nbgrader"
    if not (root / "gradebook.db").is_file():
        raise FileNotFoundError(
            f"{root}/gradebook.db not found; expected RESULTS to be the --out folder of `autograde`"
        )
    coursedir = nbgrader_api(root).coursedir
    destination = root / "grades.csv"
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        CsvExportPlugin(to=str(destination)).export(gradebook)
    return destination
