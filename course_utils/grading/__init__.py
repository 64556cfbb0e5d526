"""Grading: marks from the student's own implementation, decided where student code cannot reach.

- ``grader``: grade one notebook (``grade_notebook``); the design is in its docstring.
- ``worker`` and ``remote``: the sandboxed process that runs student code, and the grader's side of it;
  ``channel``: the wire format between them, the only module both import. Nothing that runs in the
  grading process imports ``worker``.
- ``sandbox``: bubblewrap, where the operating system allows it.
- ``exercises`` and ``definitions``: what a notebook grades, and what of a solution cell runs.
- ``classroom``: a whole class in one command.
- ``course``: the labs and nbgrader's API; ``gradebook``: marks into nbgrader's database.
- ``handout``: the release and the student copy, from the files in ``templates/student/``.
- ``report``: the per-cell table.
"""

from course_utils.grading.course import NOTEBOOKS, REPO, SOLUTIONS, GradingFailed, NotACourseNotebook, assignments
from course_utils.grading.handout import ReleaseRefused, release
from course_utils.grading.report import CellGrade, GradeReport


def grade_notebook(*args, **kwargs):
    """See ``course_utils.grading.grader.grade_notebook``."""
    from course_utils.grading.grader import grade_notebook as grade

    return grade(*args, **kwargs)


__all__ = [
    "CellGrade",
    "GradeReport",
    "GradingFailed",
    "NOTEBOOKS",
    "NotACourseNotebook",
    "REPO",
    "ReleaseRefused",
    "SOLUTIONS",
    "assignments",
    "grade_notebook",
    "release",
]
