"""Grading: marks from the student's own implementation, decided where student code cannot reach.

- ``grader``: grade one notebook (``grade_notebook``); the design is in its docstring.
- ``worker`` and ``remote``: the sandboxed process that runs student code, and the grader's side of it;
  ``channel``: the wire format between them, the only module both import. Nothing that runs in the
  grading process imports ``worker``. ``zygote``: a pool slot's process that forks a worker per notebook.
- ``sandbox``: bubblewrap, where the operating system allows it.
- ``exercises`` and ``definitions``: what a notebook grades, what of a solution cell runs, and the normal form
  of an answer that copies are judged on.
- ``classroom``: a whole class in one command; ``similarity``: its alike answers; ``regrading``: overrides,
  manual grades and failed runs; ``export``: its grades for an LMS and nbgrader's CSV.
- ``course``: the labs and nbgrader's API; ``gradebook``: marks into nbgrader's database.
- ``handout``: the release and the student copy, from the files in ``templates/student/``; ``assigned``: what a
  copy withholds of the labs it assigns (their answers ship compiled).
- ``report``: the per-cell table.
"""

import importlib

_HOMES = {  # name -> its module; imported on first use, so that the sandboxed worker never loads nbformat
    **dict.fromkeys(["NOTEBOOKS", "REPO", "SOLUTIONS", "GradingFailed", "NotACourseNotebook", "assignments"], "course"),
    **dict.fromkeys(["ReleaseRefused", "release"], "handout"),
    **dict.fromkeys(["CellGrade", "GradeReport"], "report"),
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"course_utils.grading.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'course_utils.grading' has no attribute '{name}'")


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
