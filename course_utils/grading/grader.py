"""Grade one notebook so that a mark comes only from the student's own implementation.

The student's solution cells are reduced to their definitions and run in a sandboxed worker
(``remote.Worker``). The instructor's test cells, visible and hidden checks alike, run here,
in the grading process, with every exercise function replaced by a ``RemoteFunction`` that
calls the student's code in the worker. So nothing a notebook does can change a verdict:
exception hooks never run, a patched ``torch.equal`` lives only in the worker, and a call to
the exercise's own reference implementation ends the worker's child with a message.

Where ``solutions/`` is present (the instructor's copy) the hidden tests are graded; in a student's
copy only the visible checks run. ``classroom.autograde`` stores the marks in nbgrader's gradebook.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import os
import textwrap
import time
import warnings
from pathlib import Path

from course_utils.grading import sandbox
from course_utils.grading.channel import resolve
from course_utils.grading.course import NOTEBOOKS, SOLUTIONS, NotACourseNotebook, assignments, read_notebook
from course_utils.grading.definitions import normalized_answer
from course_utils.grading.exercises import Lab, edited_tests, read_lab, student_answers
from course_utils.grading.remote import ForbiddenCall, Limits, RemoteFunction, Worker, WorkerLost, Zygote
from course_utils.grading.report import CellGrade, GradeReport
from course_utils.grading.similarity import THRESHOLD, similarity

CHECKS_PREFIX = "course_utils.checks."


def _graded_ids(notebook) -> set[str]:
    return {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in notebook.cells} - {None}


@functools.lru_cache(maxsize=32)
def _read_reference(path: Path, modified_ns: int):
    """A lab's reference notebook, read once per version: identifying and grading each submission need it."""
    return read_notebook(path)


def reference_notebook(path: Path):
    """The notebook at ``path`` (an instructor's or released copy, never a submission), cached while unchanged."""
    return _read_reference(path, path.stat().st_mtime_ns)


def _defined_names(notebook) -> set[str]:
    names = set()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                if line.startswith("def "):
                    names.add(line[4:].split("(")[0].strip())
    return names


def lab_folder() -> Path:
    """``solutions/`` in the instructor's copy, ``notebooks/`` in a student's."""
    return SOLUTIONS if assignments(SOLUTIONS) else NOTEBOOKS


def identify(notebook, path: Path, lab: str | None = None) -> tuple[str, Path]:
    """``(lab, path of the lab's reference notebook)``: by the graded cell ids and exercise functions the
    submission holds (not by its file name), or as forced by ``lab``."""
    folder = lab_folder()
    candidates = {}
    for name in assignments(folder):
        for reference in sorted((folder / name).glob("*.ipynb")):
            candidates[name] = reference
    if lab is not None:
        if lab not in candidates:
            raise NotACourseNotebook(f"--lab {lab} is not a lab of this course; expected one of {sorted(candidates)}")
        return lab, candidates[lab]
    ids, names = _graded_ids(notebook), _defined_names(notebook)
    best, best_overlap = None, 0
    for name, reference in candidates.items():
        reference_ids = _graded_ids(reference_notebook(reference))
        overlap = len(ids & reference_ids) + len(names & reference_ids)
        if overlap > best_overlap:
            best, best_overlap = name, overlap
    if best is None:
        known = ", ".join(f"{name}/{reference.name}" for name, reference in candidates.items())
        raise NotACourseNotebook(f"{path} is not a notebook of this course; expected one of: {known}")
    return best, candidates[best]


def checks_modules(lab: Lab) -> list[str]:
    """The checks modules that the lab's test cells import, in order of first import."""
    modules = []
    for exercise in lab.exercises:
        for line in exercise.test_source.splitlines():
            if line.startswith(f"from {CHECKS_PREFIX}") and line.split()[1] not in modules:
                modules.append(line.split()[1])
    return modules


def forbidden_references(lab: Lab) -> dict[str, list[str]]:
    """For each exercise, the reference code it must not call: ``REFERENCES`` of the checks modules its tests import."""
    references = {}
    for module in checks_modules(lab):
        references.update(getattr(importlib.import_module(module), "REFERENCES", {}))
    return {exercise.name: list(references.get(exercise.name, ())) for exercise in lab.exercises}


def _copy_flag(student_source: str, exercise_name: str, solution_source: str, references: list[str]) -> str:
    """A flag when the student's function, in the normal form of ``definitions.normalized_answer``, equals the
    instructor's solution or a reference, or is at least ``similarity.THRESHOLD`` alike to one (a near-copy)."""
    mine = normalized_answer(student_source, exercise_name)
    if mine is None:
        return ""
    candidates = [("the instructor's solution", normalized_answer(solution_source, exercise_name))]
    for target in references:
        if target.startswith("course_utils"):
            value = resolve(target)
            with contextlib.suppress(OSError, TypeError):  # no source: a builtin, or a copy's compiled module
                source = textwrap.dedent(inspect.getsource(value))
                candidates.append((target, normalized_answer(source, value.__name__)))
    scored = [(similarity(mine, tree), label) for label, tree in candidates if tree is not None]
    alike, label = max(scored, default=(0.0, ""))
    if alike == 1.0:
        return f"same syntax tree as {label} (likely copied); not marked down automatically"
    if alike >= THRESHOLD:
        return f"{int(alike * 100)}% alike in structure to {label} (a near-copy?); not marked down automatically"
    return ""


def _message(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(error, NotImplementedError):
        return "NotImplementedError: the exercise is not done yet (it still raises NotImplementedError)"
    if isinstance(error, (ForbiddenCall, WorkerLost)):
        return first
    where = getattr(error, "student_location", "")
    return f"{type(error).__name__}: {first}".rstrip(": ") + (f" ({where})" if where else "")


def _run_test(source: str, test_id: str, namespace: dict) -> None:
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        exec(compile(source, f"<test cell {test_id}>", "exec"), namespace)


def grade_submission(
    notebook,
    path: Path,
    *,
    lab: str | None = None,
    limits: Limits | None = None,
    allow_unsandboxed: bool = sandbox.ALLOW_UNSANDBOXED,
    threads: int | None = None,
    zygote: Zygote | None = None,
) -> GradeReport:
    """Grade a read notebook; see the module docstring. Marks are not yet stored anywhere. With a ``zygote``
    (a pool slot's), the sandboxed worker is forked from it rather than started afresh."""
    limits = limits or Limits()
    assignment, reference_path = identify(notebook, path, lab)
    trusted = reference_path.is_relative_to(SOLUTIONS) and SOLUTIONS.is_dir()
    reference = reference_notebook(reference_path) if trusted else notebook
    lab_spec = read_lab(reference, assignment, reference_path.stem)
    answers, notes = student_answers(notebook, lab_spec, reference)
    if trusted:
        notes += edited_tests(notebook, lab_spec)
    sandboxed, sandbox_line = sandbox.status()
    if not sandboxed and not allow_unsandboxed:
        raise RuntimeError(sandbox_line + "; pass --allow-unsandboxed to grade anyway")
    report = GradeReport(assignment, reference_path.stem, notes=[sandbox_line, *notes], hidden_tests=trusted)
    forbidden = forbidden_references(lab_spec)
    setup = {
        "imports": lab_spec.imports,
        "cells": answers,
        "forbidden": forbidden,
        "threads": threads or max(1, (os.cpu_count() or 1)),
    }
    worker = Worker(setup, limits, sandboxed=sandboxed, zygote=zygote if sandboxed and trusted else None)
    broken_cells: dict[str, str] = {}

    def start():
        while True:
            try:
                worker.start(frozenset(broken_cells))
                return
            except WorkerLost as lost:
                if lost.cell is None or lost.cell in broken_cells:
                    raise
                broken_cells[lost.cell] = f"{lost} (this exercise's cell was loading)"

    base = {"__name__": "__grader__"}
    exec(compile(lab_spec.imports, "<notebook imports>", "exec"), base)
    answered = dict(answers)
    notebook_deadline = time.monotonic() + limits.notebook_seconds
    try:
        try:
            start()
        except WorkerLost as lost:  # no worker at all: every cell reports why
            report.cells = [
                CellGrade(e.test_id, 0.0, e.points, str(lost), incident=str(lost)) for e in lab_spec.exercises
            ]
            return report
        for cell_id, load in worker.load_reports.items():
            report.notes += [f"{cell_id}: {line}" for line in load["skipped"]]
        for exercise in lab_spec.exercises:
            grade = CellGrade(exercise.test_id, 0.0, exercise.points)
            report.cells.append(grade)
            load = worker.load_reports.get(exercise.name, {})
            if exercise.name in broken_cells:
                grade.message = grade.incident = broken_cells[exercise.name]
                continue
            if exercise.name not in answered:
                grade.message = "no answer: the exercise's solution cell is missing"
                continue
            if load.get("error"):
                grade.message = f"{load['error']} in your solution cell"
                continue
            left = notebook_deadline - time.monotonic()
            if left <= 0:
                grade.message = grade.incident = (
                    f"the notebook's time limit ({limits.notebook_seconds:g} s) ran out before this cell"
                )
                continue
            namespace = dict(base)
            namespace.update({name: RemoteFunction(worker, name) for name in lab_spec.solution_ids})
            try:
                if worker.process is None:
                    start()
                worker.begin(exercise.name, min(limits.exercise_seconds, left))
                _run_test(exercise.test_source, exercise.test_id, namespace)
                grade.score = exercise.points
            except (Exception, ForbiddenCall, WorkerLost) as error:
                grade.message = _message(error)
                if isinstance(error, WorkerLost) or isinstance(error, MemoryError) or "MemoryError" in grade.message:
                    grade.incident = grade.message
            finally:
                worker.end()
            if trusted and (
                flag := _copy_flag(
                    answered[exercise.name], exercise.name, exercise.solution_source, forbidden.get(exercise.name, [])
                )
            ):
                grade.flags.append(flag)
    finally:
        worker.close()
    return report


def grade_notebook(path: str | Path, *, lab: str | None = None, limits: Limits | None = None) -> GradeReport:
    """Grade one notebook file and return its report; ``classroom.autograde`` also stores marks in a gradebook.

    Like the ``grade`` command it serves (a student's ``make check`` included, on any system), it grades even
    where no sandbox works; the report's first note says so."""
    path = Path(path).resolve()
    return grade_submission(read_notebook(path), path, lab=lab, limits=limits, allow_unsandboxed=True)
