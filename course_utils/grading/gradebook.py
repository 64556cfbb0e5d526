"""Marks into nbgrader's gradebook, so ``nbgrader export`` and formgrader see them."""

from __future__ import annotations

from course_utils.grading.report import GradeReport


def record(db_url: str, student: str, report: GradeReport) -> dict[str, float]:
    """Store ``report`` as ``student``'s autograded submission (replacing an earlier one) and
    return the scores as the gradebook now holds them, by grade id."""
    from nbgrader.api import Gradebook, MissingEntry

    scores = {cell.cell_id: cell.score for cell in report.cells}
    with Gradebook(db_url) as gradebook:
        gradebook.update_or_create_student(student)
        try:
            gradebook.remove_submission(report.assignment, student)
        except MissingEntry:
            pass
        gradebook.add_submission(report.assignment, student)
        notebook = gradebook.find_submission_notebook(report.notebook, report.assignment, student)
        for grade in notebook.grades:
            grade.auto_score = min(scores.get(grade.name, 0.0), grade.max_score)
            grade.needs_manual_grade = False
        gradebook.db.commit()
        return {grade.name: float(grade.score) for grade in notebook.grades}
