"""A lab's graded exercises, read from a notebook, and the student's answer to each.

The instructor's notebook (``solutions/<lab>``) says what is graded: each solution cell's
``grade_id`` names an exercise and the function it defines, and the test cell ``test_<id>``
that follows holds the checks and the points. A submission's cells are matched to those
exercises by ``grade_id``, then by cell id, then by the function they define, so a notebook
whose nbgrader metadata was stripped or duplicated is still graded; each repair is noted.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from course_utils.grading.course import STUB
from course_utils.grading.definitions import function_named

SOLUTION_REGION = re.compile(r"^[ \t]*### BEGIN SOLUTION.*?^[ \t]*### END SOLUTION[^\n]*\n?", re.S | re.M)
HIDDEN_REGION = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.S | re.M)


@dataclass
class Exercise:
    """One graded exercise: the function the student writes, and the test cell that grades it."""

    name: str
    cell_id: str
    test_id: str
    points: float
    test_source: str
    solution_source: str


@dataclass
class Lab:
    """What a notebook grades: its exercises, in order, and the imports its code relies on."""

    assignment: str
    notebook: str
    exercises: list[Exercise]
    imports: str
    solution_ids: list[str] = field(default_factory=list)


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _imports(source: str) -> list[str]:
    try:
        tree = ast.parse(SOLUTION_REGION.sub("", source))
    except SyntaxError:
        return []
    return [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def read_lab(notebook, assignment: str, name: str) -> Lab:
    """The exercises of ``notebook`` (the instructor's copy, or a student's in self-check mode)."""
    solutions, tests, imports = [], [], []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        meta = _nbgrader(cell)
        if meta.get("grade") and not meta.get("solution"):
            tests.append((cell, meta))
            continue
        if meta.get("solution") and meta.get("grade_id"):
            solutions.append((cell, meta))
        for line in _imports(cell.source):
            if line not in imports:
                imports.append(line)
    by_id = {meta["grade_id"]: cell for cell, meta in solutions}
    exercises = []
    for cell, meta in tests:
        test_id = meta.get("grade_id", "")
        exercise = test_id.removeprefix("test_")
        if exercise not in by_id:
            earlier = [m["grade_id"] for c, m in solutions if notebook.cells.index(c) < notebook.cells.index(cell)]
            exercise = earlier[-1] if earlier else test_id
        solution = by_id.get(exercise)
        exercises.append(
            Exercise(
                exercise,
                solution.get("id", "") if solution is not None else "",
                test_id,
                float(meta.get("points", 0)),
                cell.source,
                solution.source if solution is not None else "",
            )
        )
    return Lab(assignment, name, exercises, "\n".join(imports), [meta["grade_id"] for _, meta in solutions])


def student_answers(notebook, lab: Lab, trusted_notebook) -> tuple[list[tuple[str, str]], list[str]]:
    """``[(solution grade_id, the student's cell source)]`` in the lab's order, and notes on repairs."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    trusted_ids = {
        _nbgrader(cell).get("grade_id"): cell.get("id")
        for cell in trusted_notebook.cells
        if _nbgrader(cell).get("solution")
    }
    answers, notes = [], []
    for grade_id in lab.solution_ids:
        tagged = [cell for cell in code if _nbgrader(cell).get("grade_id") == grade_id]
        if len(tagged) > 1:
            answered = [cell for cell in tagged if STUB not in cell.source] or tagged
            notes.append(f"{grade_id}: {len(tagged)} cells carry this grade id; graded the last one answered")
            tagged = answered[-1:]
        if tagged:
            answers.append((grade_id, tagged[0].source))
            continue
        same_id = [cell for cell in code if trusted_ids.get(grade_id) and cell.get("id") == trusted_ids[grade_id]]
        defining = [cell for cell in code if function_named(cell.source, grade_id) is not None]
        if same_id:
            notes.append(f"{grade_id}: nbgrader metadata missing; matched the cell by its id")
            answers.append((grade_id, same_id[0].source))
        elif defining:
            notes.append(f"{grade_id}: nbgrader metadata missing; matched the cell that defines {grade_id}()")
            answers.append((grade_id, defining[-1].source))
        else:
            notes.append(f"{grade_id}: no cell of the submission answers this exercise")
    return answers, notes


def _lines(source: str) -> list[str]:
    return [line.rstrip() for line in source.strip().splitlines() if line.strip()]


def edited_tests(notebook, lab: Lab) -> list[str]:
    """Notes on test cells the submission changed; they are ignored, since the instructor's copy runs."""
    sources = {_nbgrader(cell).get("grade_id"): cell.source for cell in notebook.cells if cell.cell_type == "code"}
    notes = []
    for exercise in lab.exercises:
        mine = sources.get(exercise.test_id)
        if mine is None or _lines(mine) == _lines(exercise.test_source):  # untouched, or the instructor's own copy
            continue
        if _lines(mine) != _lines(HIDDEN_REGION.sub("", exercise.test_source)):
            notes.append(f"{exercise.test_id}: the submission edited this test cell; the instructor's version ran")
    return notes
