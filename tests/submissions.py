"""Submissions built in code from a lab's own notebooks, and graded, for the grading tests.

``answers(lab)`` gives the instructor's solution cells; ``submission(folder, lab, {...})`` writes the
released student notebook with some exercise cells replaced (and cells added), as a student would;
``grade(path)`` grades it the way the instructor does, without the gradebook step, and ``points``
reads the result per exercise. Everything follows the notebooks as they change.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from course_utils.grading import NOTEBOOKS, SOLUTIONS
from course_utils.grading.course import read_notebook
from course_utils.grading.grader import grade_submission
from course_utils.grading.remote import Limits

LABS = sorted(path.name for path in SOLUTIONS.iterdir() if path.is_dir())


def _path(folder: Path, lab: str) -> Path:
    return next((folder / lab).glob("*.ipynb"))


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def answers(lab: str) -> dict[str, str]:
    """The instructor's solution cells of ``lab``, by grade id."""
    notebook = read_notebook(_path(SOLUTIONS, lab))
    return {_grade_id(c): c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")}


def exercises(lab: str) -> list[str]:
    """The graded test-cell ids of ``lab``, in order."""
    notebook = read_notebook(_path(SOLUTIONS, lab))
    return [_grade_id(c) for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]


def submission(
    folder: Path,
    lab: str,
    replace: dict[str, str] | None = None,
    *,
    before: list[str] = (),
    after: list[str] = (),
    name: str | None = None,
) -> Path:
    """The released notebook of ``lab`` with the solution cells in ``replace`` (grade id -> source) swapped in,
    and code cells added at the start (``before``) and end (``after``). Written to ``folder/name``."""
    notebook = read_notebook(_path(NOTEBOOKS, lab))
    for cell in notebook.cells:
        if _grade_id(cell) in (replace or {}):
            cell.source = replace[_grade_id(cell)]
    notebook.cells[:0] = [nbformat.v4.new_code_cell(source) for source in before]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in after]
    path = Path(folder) / (name or f"{lab}.ipynb")
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def grade(path: Path, **options):
    """Grade ``path`` as the instructor's ``grade`` command would (hidden tests included, and sandboxed where
    the machine allows), without storing the marks."""
    options.setdefault("limits", Limits(exercise_seconds=120))
    options.setdefault("allow_unsandboxed", True)
    return grade_submission(read_notebook(path), Path(path), **options)


def points(report) -> dict[str, float]:
    """``{test cell id: points earned}``."""
    return {cell.cell_id: cell.score for cell in report.cells}


def full_marks(report) -> dict[str, float]:
    return {cell.cell_id: cell.max_score for cell in report.cells}


FULL = "full marks"
REFERENCE = "calls the reference implementation"


def grade_rounds(lab: str, variants: dict[str, dict[str, tuple[str, str]]], make_folder) -> dict:
    """Grade every variant of ``variants`` (exercise -> {name: (expected, source)}) with as few gradings as
    possible: round n puts the n-th variant of every exercise into one submission (exercises are graded
    independently). Returns ``{(exercise, variant name): its test cell's grade}``."""
    from course_utils.grading.exercises import read_lab

    solution = _path(SOLUTIONS, lab)
    test_cell = {ex.name: ex.test_id for ex in read_lab(read_notebook(solution), lab, solution.stem).exercises}
    grades = {}
    for n in range(max(len(options) for options in variants.values())):
        chosen = {ex: list(options.items())[n] for ex, options in variants.items() if n < len(options)}
        report = grade(
            submission(make_folder(f"round{n}"), lab, {ex: source for ex, (_, (_, source)) in chosen.items()})
        )
        cells = {cell.cell_id: cell for cell in report.cells}
        grades.update({(ex, name): cells[test_cell[ex]] for ex, (name, _) in chosen.items()})
    return grades


def variant_cases(variants: dict, kind) -> list:
    """pytest params ``(exercise, variant, expected)`` for the variants whose expected outcome satisfies ``kind``."""
    import pytest

    return [
        pytest.param(ex, name, expected, id=f"{ex}: {name}")
        for ex, options in variants.items()
        for name, (expected, _) in options.items()
        if kind(expected)
    ]


def grading_tests(lab: str, variants: dict[str, dict[str, tuple[str, str]]]) -> tuple:
    """The module fixture ``graded`` and the three tests a lab's grading file runs on ``variants``:
    a correct alternative earns full marks, a classic mistake earns 0 and is named, and a call into the
    reference implementation earns 0. At module level:

        graded, test_a_correct_alternative_earns_full_marks, test_a_classic_mistake_earns_zero_and_is_named, \\
            test_calling_the_reference_implementation_earns_zero = grading_tests(LAB, VARIANTS)
    """
    import pytest

    @pytest.fixture(scope="module")
    def graded(tmp_path_factory) -> dict:
        return grade_rounds(lab, variants, tmp_path_factory.mktemp)

    def cases(kind) -> list:
        return variant_cases(variants, kind)

    @pytest.mark.parametrize("exercise, variant, earns", cases(lambda earns: earns == FULL))
    def test_a_correct_alternative_earns_full_marks(graded, exercise, variant, earns):
        cell = graded[exercise, variant]
        assert cell.score == cell.max_score > 0, cell.message

    @pytest.mark.parametrize("exercise, variant, feedback", cases(lambda earns: earns not in (FULL, REFERENCE)))
    def test_a_classic_mistake_earns_zero_and_is_named(graded, exercise, variant, feedback):
        cell = graded[exercise, variant]
        assert cell.score == 0 and cell.message.startswith("Misconception"), cell.message
        assert feedback in cell.message

    @pytest.mark.parametrize("exercise, variant, earns", cases(lambda earns: earns == REFERENCE))
    def test_calling_the_reference_implementation_earns_zero(graded, exercise, variant, earns):
        cell = graded[exercise, variant]
        assert cell.score == 0 and REFERENCE in cell.message, cell.message

    return (
        graded,
        test_a_correct_alternative_earns_full_marks,
        test_a_classic_mistake_earns_zero_and_is_named,
        test_calling_the_reference_implementation_earns_zero,
    )
