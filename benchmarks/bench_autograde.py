"""Class autograding: ``course_utils autograde --jobs N`` against ``nbgrader autograde`` (sequential).

    python benchmarks/bench_autograde.py [--lab lab01_masking] [--students 12] [--jobs 2] [--rounds 1]

Builds a class from the lab's own notebooks (a third correct, a third with one exercise wrong, a
third untouched), grades it with both, checks that every student gets the same score from both,
and prints both times, their ratio and the cost per notebook. Rounds alternate nbgrader and ours.
Target: at least 4x on 2 cores (each pool slot forks its workers from one zygote, ``grading/zygote.py``).
Measure on a quiet machine: on a shared 2-core machine, any other load distorts the ratio; the load
average before and after the run is printed with the result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import nbformat

from course_utils.grading import NOTEBOOKS, SOLUTIONS
from course_utils.grading.classroom import autograde
from course_utils.grading.course import generate, nbgrader_api


def build_class(lab: str, students: int, folder: Path) -> list[str]:
    """``folder/<student>/<lab>/<notebook>.ipynb`` for ``students`` students; returns their ids."""
    solution_path = next((SOLUTIONS / lab).glob("*.ipynb"))
    solution = nbformat.read(solution_path, as_version=4)
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in solution.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    first_exercise = next(iter(answers))
    ids = []
    for index in range(students):
        student = f"student{index:03d}"
        notebook = nbformat.read(NOTEBOOKS / lab / solution_path.name, as_version=4)
        kind = index % 3  # 0 correct, 1 one exercise wrong, 2 untouched
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if kind < 2 and grade_id in answers:
                cell.source = answers[grade_id]
            if kind == 1 and grade_id == first_exercise:
                cell.source = answers[grade_id].replace(
                    "### BEGIN SOLUTION", "### BEGIN SOLUTION\n    raise ValueError('wrong on purpose')"
                )
        path = folder / student / lab / solution_path.name
        path.parent.mkdir(parents=True)
        nbformat.write(notebook, path)
        ids.append(student)
    return ids


def nbgrader_round(lab: str, submitted: Path) -> tuple[float, dict[str, float]]:
    """Seconds for ``nbgrader autograde`` of the class, and each student's score."""
    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory(prefix="bench-nbgrader-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(tmp)
        api = nbgrader_api(root)
        generate(api, root, lab)
        shutil.copytree(submitted, root / "submitted")
        start = time.perf_counter()
        result = api.autograde(lab, "*", force=True, create=True)
        seconds = time.perf_counter() - start
        assert result["success"], result.get("error")
        with Gradebook(api.coursedir.db_url) as gradebook:
            scores = {s.student.id: float(s.score) for s in gradebook.assignment_submissions(lab)}
    return seconds, scores


def course_round(lab: str, submitted: Path, jobs: int) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-course-") as tmp:
        start = time.perf_counter()
        rows = autograde(submitted, Path(tmp), jobs=jobs, progress=False)
        seconds = time.perf_counter() - start
    assert all(row["status"] == "graded" for row in rows), rows
    return seconds, {row["student"]: float(row["score"]) for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="lab01_masking")
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_PROFILE", "ci")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        submitted = Path(tmp) / "submitted"
        build_class(args.lab, args.students, submitted)
        theirs, ours = [], []
        for _ in range(args.rounds):
            seconds, nbgrader_scores = nbgrader_round(args.lab, submitted)
            theirs.append(seconds)
            seconds, course_scores = course_round(args.lab, submitted, args.jobs)
            ours.append(seconds)
            assert course_scores == nbgrader_scores, f"scores differ:\n{nbgrader_scores}\n{course_scores}"
    nbgrader_s, course_s = statistics.median(theirs), statistics.median(ours)
    n = args.students
    print(f"{args.lab}, {n} notebooks, {os.cpu_count()} cores, rounds {args.rounds} (median)")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    print("per round, nbgrader / ours: " + ", ".join(f"{a:.1f}/{b:.1f} s" for a, b in zip(theirs, ours)))
    print(f"nbgrader autograde (sequential): {nbgrader_s:7.1f} s  ({nbgrader_s / n:.2f} s per notebook)")
    print(f"course_utils autograde --jobs {args.jobs}: {course_s:7.1f} s  ({course_s / n:.2f} s per notebook)")
    print(f"ratio: {nbgrader_s / course_s:.2f}x (target >= 4x); scores identical for all {n} students")
    print(
        f"a class of 200 would take about {200 * course_s / n / 60:.1f} min "
        f"(nbgrader: {200 * nbgrader_s / n / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
