"""Marks into nbgrader's gradebook, so ``nbgrader export`` and formgrader see them.

Each function takes an open ``nbgrader.api.Gradebook``: a class is recorded through one, since opening one
(an engine, and its cache of compiled queries) costs more than recording a notebook."""

from __future__ import annotations

from collections import defaultdict

from course_utils.grading.report import GradeReport


def record(gradebook, student: str, report: GradeReport) -> dict[str, float]:
    """Store ``report``'s points as the autograder's scores of ``student``'s submission and return the scores
    as the gradebook now holds them, by grade id. A manual score or comment entered in formgrader is kept,
    and nbgrader ranks a manual score above the autograder's."""
    from nbgrader.api import MissingEntry

    scores = {cell.cell_id: cell.score for cell in report.cells}
    gradebook.update_or_create_student(student)
    try:
        gradebook.find_submission(report.assignment, student)
    except MissingEntry:
        gradebook.add_submission(report.assignment, student)
    notebook = gradebook.find_submission_notebook(report.notebook, report.assignment, student)
    for grade in notebook.grades:
        grade.auto_score = min(scores.get(grade.name, 0.0), grade.max_score)
        grade.needs_manual_grade = False
    gradebook.db.commit()
    return {grade.name: float(grade.score) for grade in notebook.grades}


def set_auto_scores(gradebook, marks: list[tuple[str, str, dict[str, float]]]) -> list[dict[str, float]]:
    """For each ``(student, assignment, {grade id: points})``, make ``points`` the autograder's scores of the
    student's submission where no manual score was entered, and return the scores the gradebook then holds.
    A mark with no submission in the gradebook is returned as given. One query for the whole class."""
    from nbgrader.api import Assignment, Grade, GradeCell, SubmittedAssignment, SubmittedNotebook

    def every_grade(*columns):
        return (
            gradebook.db.query(SubmittedAssignment.student_id, Assignment.name, GradeCell.name, *columns)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .join(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Grade, Grade.notebook_id == SubmittedNotebook.id)
            .join(GradeCell, Grade.cell_id == GradeCell.id)
        )

    wanted = {(student, assignment): points for student, assignment, points in marks}
    for student, assignment, name, most, grade in every_grade(GradeCell.max_score, Grade):
        points = wanted.get((student, assignment), {})
        if name in points and grade.manual_score is None and grade.auto_score != min(points[name], most):
            grade.auto_score = min(points[name], most)
    gradebook.db.commit()
    held = defaultdict(dict)
    for student, assignment, name, score in every_grade(Grade.score):
        held[student, assignment][name] = float(score)
    return [held.get((student, assignment)) or dict(points) for student, assignment, points in marks]
