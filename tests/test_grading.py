"""The grading command, the release and the student copy: clear refusals for foreign files, clear scores
for broken submissions, no lost student work, and no hidden tests in a student's hands.

Each grading case edits a copy of Lab 0's student notebook the way a student might.
"""

import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from course_utils import grading
from course_utils.grading import handout

STUDENT_LAB0 = grading.NOTEBOOKS / "lab00_setup" / "lab00_setup.ipynb"
STUB = "raise NotImplementedError()"
CORRECT = "return (labels != ignore_index).float().mean().item()"


def run_cli(*args, cwd=grading.REPO):
    return subprocess.run([sys.executable, "-m", "course_utils", *args], capture_output=True, text=True, cwd=cwd)


def submission(tmp_path, edit, name="lab00_setup.ipynb") -> str:
    """A copy of the Lab 0 student notebook after ``edit(notebook)``."""
    notebook = nbformat.read(STUDENT_LAB0, as_version=4)
    edit(notebook)
    path = tmp_path / name
    nbformat.write(notebook, path)
    return path


def answer(body):
    def edit(notebook):
        cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution"))
        assert STUB in cell.source
        cell.source = cell.source.replace(STUB, body)

    return edit


def test_a_file_that_is_not_a_notebook_is_refused_with_exit_2(tmp_path):
    path = tmp_path / "essay.txt"
    path.write_text("not a notebook")
    result = run_cli("grade", str(path))
    assert result.returncode == 2
    assert "not a notebook file" in result.stderr and "essay.txt" in result.stderr


def test_a_notebook_from_another_course_is_refused_with_the_expected_names(tmp_path):
    path = tmp_path / "homework.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    result = run_cli("grade", str(path))
    assert result.returncode == 2
    assert "not a notebook of this course" in result.stderr and "lab00_setup/lab00_setup.ipynb" in result.stderr


def test_corrupt_json_is_refused_not_crashed_on(tmp_path):
    path = tmp_path / "lab00_setup.ipynb"
    path.write_text('{"cells": [')
    result = run_cli("grade", str(path))
    assert result.returncode == 2 and "could not be read as a Jupyter notebook" in result.stderr


@pytest.mark.notebook
def test_a_wrong_answer_scores_zero_and_names_the_misconception(tmp_path):
    path = submission(tmp_path, answer("return (labels == ignore_index).float().mean().item()"))
    result = run_cli("grade", str(path))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("test_selected_fraction"))
    assert "0 / 2" in row and "Misconception" in row and "ignored (-100) positions" in row
    assert "passed" not in row and "total" in result.stdout


@pytest.mark.notebook
def test_a_syntax_error_scores_zero_and_says_so(tmp_path):
    report = grading.grade_notebook(submission(tmp_path, answer("return (labels != ignore_index")))
    assert report.score == 0 and report.max_score == 2
    assert report.cells[0].message.startswith("SyntaxError"), report.cells[0].message


@pytest.mark.notebook
def test_deleted_test_cells_and_a_renamed_file_still_grade_from_the_instructors_tests(tmp_path):
    def answer_and_delete_tests(notebook):
        answer(CORRECT)(notebook)
        notebook.cells = [c for c in notebook.cells if not c.metadata.get("nbgrader", {}).get("grade")]

    report = grading.grade_notebook(submission(tmp_path, answer_and_delete_tests, name="jdoe_lab00 (1).ipynb"))
    assert [cell.cell_id for cell in report.cells] == ["test_selected_fraction"]
    assert report.score == report.max_score == 2


@pytest.mark.notebook
def test_only_definitions_run_so_a_cell_that_prints_and_loops_is_graded_on_its_function(tmp_path):
    body = CORRECT + "\n\nprint('exploring')\nfor _ in range(10**12):\n    pass"
    report = grading.grade_notebook(submission(tmp_path, answer(body)))
    assert report.score == 2, report.table()
    assert any("for statement not run at grading" in note for note in report.notes), report.notes


def test_report_table_lists_every_cell_and_the_total():
    report = grading.GradeReport(
        "lab09", "lab09", [grading.CellGrade("test_a", 1, 1), grading.CellGrade("test_b", 0, 2, "Misconception: oops")]
    )
    table = report.table()
    assert "test_a" in table and "passed" in table and "Misconception: oops" in table
    assert table.splitlines()[-1].split() == ["total", "1", "/", "3"]


@pytest.fixture
def notebooks_copy(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(grading.NOTEBOOKS, notebooks)
    monkeypatch.setattr(handout, "NOTEBOOKS", notebooks)
    return notebooks


def test_release_check_reports_a_hand_edited_student_notebook(notebooks_copy):
    edited = notebooks_copy / "lab00_setup" / STUDENT_LAB0.name
    content = json.loads(edited.read_text())
    content["cells"][0]["source"] = "# edited by hand\n"
    edited.write_text(json.dumps(content))
    assert grading.release(["lab00_setup"], check=True) == ["lab00_setup/lab00_setup.ipynb"]


def test_release_refuses_to_overwrite_a_students_work_and_backs_it_up_when_forced(notebooks_copy):
    worked_on = notebooks_copy / "lab00_setup" / STUDENT_LAB0.name
    submission(worked_on.parent, answer(CORRECT), name=worked_on.name)
    work = worked_on.read_text()
    with pytest.raises(grading.ReleaseRefused, match="exercise selected_fraction answered"):
        grading.release(["lab00_setup"])
    assert worked_on.read_text() == work
    grading.release(["lab00_setup"], force=True)
    backups = list(notebooks_copy.glob("lab00_setup.backup-*/*.ipynb"))
    assert len(backups) == 1 and backups[0].read_text() == work
    assert STUB in worked_on.read_text()


@pytest.mark.notebook
def test_the_student_copy_has_no_solutions_or_hidden_tests_and_grades_with_visible_checks(tmp_path):
    copy = tmp_path / "student"
    result = run_cli("export-student", str(copy))
    assert result.returncode == 0, result.stderr
    assert not (copy / "solutions").exists() and (copy / "Makefile").exists() and (copy / "README.md").exists()
    assert "make check" in (copy / "README.md").read_text() and "check:" in (copy / "Makefile").read_text()
    for notebook in copy.glob("notebooks/*/*.ipynb"):
        text = notebook.read_text()
        assert "HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text, notebook
    lab0 = copy / "notebooks" / "lab00_setup" / STUDENT_LAB0.name
    submission(lab0.parent, answer(CORRECT), name=lab0.name)
    graded = run_cli("grade", str(lab0), cwd=copy)
    assert graded.returncode == 0, graded.stderr
    assert "2 / 2" in graded.stdout and "hidden tests run at the instructor's end" in graded.stdout
    assert run_cli("export-student", str(copy)).returncode == 1, "an existing folder must not be overwritten"
