"""What `autograde` leaves for the instructor besides grades: alike answers, grades for Canvas, and regrading
that keeps every decision the instructor made. One small Lab 0 class is graded once for the module."""

from __future__ import annotations

import csv
import shutil

import pytest
from submissions import answers, submission

from course_utils.__main__ import main
from course_utils.grading.classroom import autograde
from course_utils.grading.definitions import normalized_answer, split_definitions
from course_utils.grading.regrading import BadOverrides, read_overrides
from course_utils.grading.remote import Limits
from course_utils.grading.similarity import LONGEST, THRESHOLD, alike_pairs, similarity

LAB, EXERCISE, TEST = "lab00_setup", "selected_fraction", "test_selected_fraction"

ANN = """import torch

def selected_fraction(labels, ignore_index=-100):
    if labels.numel() == 0:
        raise ValueError("labels must not be empty")
    kept = labels != ignore_index
    return kept.sum().item() / labels.numel()
"""
BOB = '''import torch


def selected_fraction(y: torch.Tensor, ignore_index: int = -100) -> float:
    """Ann's answer, renamed, reformatted and commented."""
    if y.numel() == 0: raise ValueError("labels must not be empty")
    # the positions that count
    chosen = (y
              != ignore_index)
    return chosen.sum().item() / y.numel()  # a fraction
'''
CAT = """import torch

def selected_fraction(labels, ignore_index=-100):
    if labels.numel() == 0:
        raise ValueError("labels must not be empty")
    mask = labels != ignore_index
    assert mask.dtype == torch.bool
    return mask.sum().item() / labels.numel()
"""
OWN_WAY = """import torch

def selected_fraction(labels, ignore_index=-100):
    if labels.numel() == 0:
        raise ValueError("labels must not be empty")
    total = 0
    for value in labels.flatten().tolist():
        total += value != ignore_index
    return total / labels.numel()
"""
CLASS = {  # student -> answer (None: the released stub, untouched)
    "ann": ANN,
    "bob": BOB,
    "cat": CAT,
    "dan": answers(LAB)[EXERCISE].replace("    ### BEGIN SOLUTION\n", "    # copied\n"),
    "eve": None,
    "fay": OWN_WAY,
}


def forms(*sources: str) -> list[str]:
    return [normalized_answer(source, EXERCISE) for source in sources]


def test_the_normal_form_ignores_names_formatting_comments_docstrings_and_annotations():
    ann, bob, cat, own_way = forms(ANN, BOB, CAT, OWN_WAY)
    assert ann == bob and len({ann, cat, own_way}) == 3
    assert normalized_answer("%time x = 1\n" + BOB, EXERCISE) == ann
    assert normalized_answer("def other(labels):\n    return 1\n", EXERCISE) is None
    for depth in (1_000, 20_000):  # too deep to walk; too deep to parse
        deep = f"def {EXERCISE}(labels):\n    return " + " + ".join(["labels"] * depth) + "\n"
        assert normalized_answer(deep, EXERCISE) is None
    assert normalized_answer("x = 1\0", EXERCISE) is None


def test_a_comparison_continued_on_a_line_starting_with_not_equal_is_not_taken_for_a_shell_magic():
    kept, skipped = split_definitions("flag = (1\n        != 2)\n!pip install torch\n%time y = 1\n", "<cell>")
    assert len(kept) == 1 and not skipped


def test_a_copy_with_a_statement_added_is_alike_and_an_answer_written_another_way_is_not():
    ann, _, cat, own_way = forms(ANN, BOB, CAT, OWN_WAY)
    assert THRESHOLD <= similarity(ann, cat) == similarity(cat, ann) < 1
    assert similarity(ann, own_way) < THRESHOLD - 0.1
    huge = normalized_answer(ANN.replace("    kept =", f"    padding = {[0] * LONGEST}\n    kept ="), EXERCISE)
    assert similarity(ann, huge) == 0 and alike_pairs({"ann": ann, "bob": huge, "cat": huge}) == [("bob", "cat", 1.0)]


def test_a_cluster_of_three_is_reported_as_its_three_pairs():
    ann, bob, cat, own_way = forms(ANN, BOB, CAT, OWN_WAY)
    pairs = alike_pairs({"ann": ann, "bob": bob, "cat": cat, "fay": own_way, "gus": own_way})
    assert [(a, b) for a, b, _ in pairs] == [("ann", "bob"), ("fay", "gus"), ("ann", "cat"), ("bob", "cat")]


def test_bad_overrides_are_refused_naming_the_line_and_what_was_expected(tmp_path):
    path = tmp_path / "overrides.csv"
    header = "student,lab,exercise,points,reason\n"
    for line, message in [
        (f"ann,lab99,{EXERCISE},1,x", "lab 'lab99' is not a lab of this course"),
        (f"ann,{LAB},select,1,x", f"exercise 'select' is not one of {LAB}'s: \\['{EXERCISE}'\\]"),
        (f"ann,{LAB},{EXERCISE},3,x", "points '3' must be a number from 0 to 2"),
        (f"ann,{LAB},{EXERCISE},half,x", "points 'half' must be a number from 0 to 2"),
    ]:
        path.write_text(header + line + "\n")
        with pytest.raises(BadOverrides, match=f"line 2: {message}"):
            read_overrides(path)
    path.write_text(header + f"ann,{LAB},{EXERCISE},1,x\nann,{LAB},{TEST},2,y\n")
    with pytest.raises(BadOverrides, match="line 3 overrides the same exercise as line 2"):
        read_overrides(path)
    path.write_text("student,points\n")
    with pytest.raises(BadOverrides, match="lacks the columns"):
        read_overrides(path)


def write_class(folder, students: dict) -> None:
    for student, answer in students.items():
        submission(folder / student, LAB, {EXERCISE: answer} if answer else {}, name=f"{LAB}.ipynb")


def grade(classroom, results, **options) -> dict[str, dict]:
    options.setdefault("limits", Limits(exercise_seconds=60))
    options.setdefault("jobs", 1)  # one sandbox to start: quicker for a few Lab 0 notebooks
    autograde(classroom, results, progress=False, **options)
    return {row["student"]: row for row in read_csv(results / "grades.csv")}


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """``(submissions, results, grades.csv rows by student)`` of the class ``CLASS``."""
    root = tmp_path_factory.mktemp("lab0_class")
    write_class(root / "class", CLASS)
    return root / "class", root / "results", grade(root / "class", root / "results", jobs=2)


@pytest.mark.notebook
def test_alike_answers_are_listed_as_pairs_but_not_those_equal_to_the_stub_or_solution(graded_class):
    _, results, rows = graded_class
    assert {student: float(row["score"]) for student, row in rows.items()} == {
        "ann": 2,
        "bob": 2,
        "cat": 2,
        "dan": 2,
        "eve": 0,
        "fay": 2,
    }
    pairs = [
        (row["lab"], row["exercise"], row["student_a"], row["student_b"])
        for row in read_csv(results / "similarity.csv")
    ]
    assert pairs == [(LAB, EXERCISE, "ann", "bob"), (LAB, EXERCISE, "ann", "cat"), (LAB, EXERCISE, "bob", "cat")]
    similarities = [float(row["similarity"]) for row in read_csv(results / "similarity.csv")]
    assert similarities[0] == 1 and THRESHOLD <= similarities[1] == similarities[2] < 1
    pages = "".join(page.read_text() for page in (results / "feedback").rglob("*.html"))
    assert "simil" not in pages.lower() and "alike" not in pages.lower()


@pytest.mark.notebook
def test_grades_for_canvas_keep_the_roster_and_list_submissions_it_lacks(graded_class, tmp_path, capsys):
    _, results, _ = graded_class
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,Current Score\n"
        "    Points Possible,,,,,\n"
        "Ann A,101,u1,ann,S1,90\n"
        "Bob B,102,u2,BOB,S1,80\n"
        "Zoe Z,103,u3,zoe,S2,70\n"
        "Cat C,104,u4,cat,S2,60\n"
        "Dan D,105,u5,dan,S2,50\n"
        "Fay F,106,u6,fay,S2,50\n"
    )
    out = tmp_path / "canvas.csv"
    assert main(["export-grades", str(results), "--canvas", str(roster), "--out", str(out)]) == 0
    with open(out, newline="") as handle:
        reader = csv.reader(handle)
        header, *body = list(reader)
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", LAB]
    assert [row[0] for row in body] == ["    Points Possible", "Ann A", "Bob B", "Zoe Z", "Cat C", "Dan D", "Fay F"]
    assert [row[-1] for row in body] == ["2", "2", "2", "", "2", "2", "2"]
    assert "no roster row for eve" in capsys.readouterr().err
    assert [row["student"] for row in read_csv(tmp_path / "canvas.unmatched.csv")] == ["eve"]
    nbgrader_rows = {row["student_id"]: float(row["score"]) for row in read_csv(results / "nbgrader" / "grades.csv")}
    assert nbgrader_rows == {"ann": 2, "bob": 2, "cat": 2, "dan": 2, "eve": 0, "fay": 2}
    assert (
        main(["export-grades", str(results), "--canvas", str(roster), "--out", str(out), "--match-column", "Login"])
        == 2
    )
    assert "--match-column 'Login' is not a column" in capsys.readouterr().err


@pytest.mark.notebook
def test_regrading_keeps_formgrader_scores_and_comments_applies_overrides_and_survives_a_failed_run(
    graded_class, tmp_path
):
    from nbgrader.api import Gradebook

    classroom, graded_results, _ = graded_class
    results, regrade = tmp_path / "results", tmp_path / "regrade"
    shutil.copytree(graded_results, results)
    for student in ("ann", "eve"):
        shutil.copytree(classroom / student, regrade / student)
    database = f"sqlite:///{results}/nbgrader/gradebook.db"
    with Gradebook(database) as gradebook:  # as formgrader would: eve's stub gets a point and a comment
        gradebook.find_grade(TEST, LAB, LAB, "eve").manual_score = 1.0
        gradebook.find_comment(EXERCISE, LAB, LAB, "eve").manual_comment = "right idea, see me"
        gradebook.db.commit()
    (results / "overrides.csv").write_text(f"student,lab,exercise,points,reason\nann,{LAB},{EXERCISE},0.5,late\n")

    rows = grade(regrade, results)
    assert (float(rows["ann"]["score"]), rows["ann"]["overrides"]) == (0.5, f"{TEST}: 0.5 (late)")
    assert (float(rows["eve"]["score"]), float(rows["eve"][TEST])) == (1, 1)
    with Gradebook(database) as gradebook:
        assert gradebook.find_grade(TEST, LAB, LAB, "eve").manual_score == 1.0
        assert gradebook.find_comment(EXERCISE, LAB, LAB, "eve").manual_comment == "right idea, see me"
        assert gradebook.find_grade(TEST, LAB, LAB, "ann").score == 0.5

    (results / "overrides.csv").unlink()  # and the next run, which fails, restores ann's autograder points
    rows = grade(regrade, results, limits=Limits(notebook_seconds=0.001))  # every notebook runs out of time
    assert {student: float(row["score"]) for student, row in rows.items()} == {"ann": 2, "eve": 1}
    for row in rows.values():
        assert row["reason"].startswith("this run was partial (") and row["reason"].endswith(
            "kept the last run's grade"
        )
    assert rows["ann"]["overrides"] == ""
