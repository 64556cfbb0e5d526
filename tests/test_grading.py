"""The grading command: clear refusals for foreign files, and clear scores for broken submissions.

Each case grades a copy of Lab 0's student notebook, edited the way a student might.
"""

import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from course_utils import grading

STUDENT_LAB0 = grading.NOTEBOOKS / "lab00_setup" / "lab00_setup.ipynb"
STUB = "raise NotImplementedError()"


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "course_utils", *args], capture_output=True, text=True, cwd=grading.REPO
    )


def submission(tmp_path, edit) -> str:
    """A copy of the Lab 0 student notebook (in a folder named like the lab) after ``edit(notebook)``."""
    notebook = nbformat.read(STUDENT_LAB0, as_version=4)
    edit(notebook)
    path = tmp_path / "lab00_setup" / STUDENT_LAB0.name
    path.parent.mkdir()
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
    assert "total" in result.stdout


@pytest.mark.notebook
def test_a_syntax_error_scores_zero_with_its_message(tmp_path):
    report = grading.grade_notebook(submission(tmp_path, answer("return (labels != ignore_index")))
    assert report.score == 0 and report.max_score == 2
    assert report.cells[0].message.startswith("NameError"), report.cells[0].message


@pytest.mark.notebook
def test_a_deleted_test_cell_is_restored_and_graded(tmp_path):
    def answer_and_delete_tests(notebook):
        answer("return (labels != ignore_index).float().mean().item()")(notebook)
        notebook.cells = [c for c in notebook.cells if not c.metadata.get("nbgrader", {}).get("grade")]

    report = grading.grade_notebook(submission(tmp_path, answer_and_delete_tests))
    assert [cell.cell_id for cell in report.cells] == ["test_selected_fraction"]
    assert report.score == report.max_score == 2


def test_report_table_lists_every_cell_and_the_total():
    report = grading.GradeReport(
        "lab09", "lab09", [grading.CellGrade("test_a", 1, 1), grading.CellGrade("test_b", 0, 2, "Misconception: oops")]
    )
    table = report.table()
    assert "test_a" in table and "passed" in table and "Misconception: oops" in table
    assert table.splitlines()[-1].split() == ["total", "1", "/", "3"]


def test_release_check_reports_a_hand_edited_student_notebook(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(grading.NOTEBOOKS, notebooks)
    edited = notebooks / "lab00_setup" / STUDENT_LAB0.name
    content = json.loads(edited.read_text())
    content["cells"][0]["source"] = "# edited by hand\n"
    edited.write_text(json.dumps(content))
    monkeypatch.setattr(grading, "NOTEBOOKS", notebooks)
    assert grading.release(["lab00_setup"], check=True) == ["lab00_setup/lab00_setup.ipynb"]
