"""Hostile submissions, built in code from every lab's notebooks: no mark without the student's own work,
no lost mark for correct work, and a submission file that grading leaves as it was.

Each lab is graded twice: once as a cheater would submit it (hooks, patches, the reference implementation
under the exercise's name), once as the instructor's solution made noisy (warnings and stderr on every call).
"""

from __future__ import annotations

import hashlib

import pytest
from submissions import LABS, answers, full_marks, grade, points, submission

from course_utils.grading import SOLUTIONS
from course_utils.grading.course import read_notebook
from course_utils.grading.exercises import read_lab
from course_utils.grading.grader import forbidden_references, identify

HOOKS = """
ip = get_ipython()
ip.set_custom_exc((BaseException,), lambda *args, **kwargs: None)
def _clear_error(result):
    result.error_in_exec = None
ip.events.register("post_run_cell", _clear_error)
"""

GRADEBOOK = """
import pathlib, sqlite3
for folder in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]:
    for db in folder.glob("**/gradebook.db"):
        with sqlite3.connect(db) as connection:
            connection.execute("UPDATE grade SET manual_score = max_score")
"""

# Top-level assignments run in the worker at grading time: they patch the worker, never the grader.
PATCHES = """
import torch, pkgutil, importlib, course_utils.checks as _checks
torch.equal = lambda *args, **kwargs: True
torch.allclose = lambda *args, **kwargs: True
_checks.expect = lambda *args, **kwargs: None
_patched = [
    setattr(m, name, lambda *a, **k: None)
    for m in [importlib.import_module(f"course_utils.checks.{i.name}") for i in pkgutil.iter_modules(_checks.__path__)]
    for name in dir(m) if name.startswith("check_")
]
"""

NOISY = """
import functools as _functools, sys as _sys, warnings as _warnings
def _noisy(function):
    @_functools.wraps(function)
    def noisy(*args, **kwargs):
        _warnings.warn("a debug warning", UserWarning)
        print("a debug line", file=_sys.stderr)
        print("a debug line")
        return function(*args, **kwargs)
    return noisy
{name} = _noisy({name})
"""


def lab_exercises(lab: str):
    path = next((SOLUTIONS / lab).glob("*.ipynb"))
    notebook = read_notebook(path)
    spec = read_lab(notebook, lab, path.stem)
    return spec, forbidden_references(spec)


def cheating_cells(lab: str) -> tuple[dict[str, str], set[str]]:
    """Every exercise answered by a cheat: the reference itself where it is a function of the exercise's name
    (imported, aliased in an earlier statement, or reloaded at call time), else a wrong body; all with the
    worker patched."""
    spec, forbidden = lab_exercises(lab)
    cells, by_reference = {}, set()
    for index, exercise in enumerate(spec.exercises):
        plain = [target for target in forbidden[exercise.name] if target.partition(":")[2] == exercise.name]
        if plain:
            module, _, function = plain[0].partition(":")
            style = index % 3
            if style == 0:
                body = f"from {module} import {function} as {exercise.name}\n"
            elif style == 1:
                body = (
                    f"from {module} import {function} as _alias_{function}\n"
                    f"def {exercise.name}(*args, **kwargs):\n    return _alias_{function}(*args, **kwargs)\n"
                )
            else:
                body = (
                    f"import importlib, {module} as _module_{function}\ndef {exercise.name}(*args, **kwargs):\n"
                    f"    importlib.reload(_module_{function})\n"
                    f"    return _module_{function}.{function}(*args, **kwargs)\n"
                )
            by_reference.add(exercise.test_id)
        else:
            body = f"def {exercise.name}(*args, **kwargs):\n    return args[0] if args else None\n"
        cells[exercise.name] = PATCHES + body
    return cells, by_reference


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.notebook
@pytest.mark.parametrize("lab", LABS)
def test_cheats_earn_nothing(lab, tmp_path):
    cells, by_reference = cheating_cells(lab)
    path = submission(tmp_path / "class" / "mallory", lab, cells, before=[HOOKS, GRADEBOOK], after=[GRADEBOOK])
    before = digest(path)
    report = grade(path)
    assert digest(path) == before, "grading changed the submitted file"
    assert report.score == 0, report.table()
    for cell in report.cells:
        assert cell.verdict != "passed" and cell.message, report.table()
        if cell.cell_id in by_reference:
            assert "reference implementation" in cell.message, report.table()


@pytest.mark.notebook
@pytest.mark.parametrize("lab", LABS)
def test_correct_code_that_warns_and_prints_to_stderr_keeps_every_mark(lab, tmp_path):
    spec, _ = lab_exercises(lab)
    solutions = answers(lab)
    noisy = {name: source + NOISY.format(name=name) for name, source in solutions.items()}
    path = submission(tmp_path, lab, noisy)
    before = digest(path)
    report = grade(path)
    assert digest(path) == before
    assert points(report) == full_marks(report), report.table()
    assert all(cell.verdict == "passed" for cell in report.cells)


def test_a_zero_is_never_reported_as_passed():
    from course_utils.grading import CellGrade

    assert CellGrade("test_x", 0, 2).verdict == "failed"
    assert CellGrade("test_x", 0, 2, "Misconception: oops").verdict == "Misconception: oops"
    assert CellGrade("test_x", 2, 2).verdict == "passed"


def test_every_lab_is_recognized_by_its_content_not_its_file_name(tmp_path):
    for lab in LABS:
        path = submission(tmp_path, lab, name=f"jdoe_{lab} (1).ipynb")
        assert identify(read_notebook(path), path)[0] == lab
