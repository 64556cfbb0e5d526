"""Autograde a whole class in one command: ``python -m course_utils autograde SUBMISSIONS --out RESULTS``.

Submissions may come in nbgrader's layout (``submitted/<student>/<lab>/<notebook>.ipynb``), one folder
per student (``<student>/<any name>.ipynb``), or flat (``<student>.ipynb``). Each is graded by
``grader.grade_submission`` in a pool of ``--jobs`` processes, under the limits of ``remote.Limits``;
one broken submission never stops the others. Each pool process keeps one sandbox with a ``remote.Zygote``
in it, which forks every submission's worker with torch already imported, and cleans up after it. Results:

- ``RESULTS/grades.csv``: student, lab, score, max_score, status, reason, overrides, then points per
  exercise; status is ``graded``, ``partial`` (a limit was hit or a process died: the points earned are
  kept) or ``not-gradable`` (not a notebook of this course, or unreadable). Scores entered in formgrader,
  ``RESULTS/overrides.csv`` and failed runs are handled as ``regrading`` says;
- ``RESULTS/similarity.csv``: pairs of students whose answers to an exercise are alike (``similarity``);
- ``RESULTS/feedback/<student>/<lab>.html``: one line per exercise, small whatever the notebook printed;
- ``RESULTS/nbgrader/``: an nbgrader course directory whose gradebook holds the marks, with the
  autograded notebooks, so ``nbgrader export`` and formgrader work there;
- ``RESULTS/state.json``: what ``--resume`` needs to skip submissions that have not changed.
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib
import json
import multiprocessing
import os
import re
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from course_utils.grading import sandbox
from course_utils.grading.course import SOLUTIONS, NotACourseNotebook, assignments, read_notebook
from course_utils.grading.regrading import apply_overrides, kept_grade, read_overrides
from course_utils.grading.remote import Limits
from course_utils.grading.report import GradeReport
from course_utils.grading.similarity import write_similarity

COLUMNS = ["student", "lab", "score", "max_score", "status", "reason", "overrides"]


@dataclass
class Submission:
    """One student's notebook (or the file that stands where it should be)."""

    student: str
    path: Path


def student_id(name: str) -> str:
    """``name`` (a folder or file name) cleaned into the student column of grades.csv."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name).strip("_") or "unnamed"


def find_submissions(root: Path) -> list[Submission]:
    """Every submission under ``root``, in any of the three layouts, sorted by student."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of submissions")
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if entry.suffix == ".ipynb":
                found.append(Submission(student_id(entry.stem), entry))
            continue
        notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        if not notebooks:
            found.append(Submission(student_id(entry.name), entry))
        found += [Submission(student_id(entry.name), path) for path in notebooks]
    return found


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _status(report: GradeReport) -> tuple[str, str]:
    incidents = [f"{cell.cell_id}: {cell.incident}" for cell in report.cells if cell.incident]
    return ("partial", "; ".join(incidents)[:500]) if incidents else ("graded", "")


def feedback_html(student: str, report: GradeReport) -> str:
    """The student's feedback page: one line per exercise. No hidden-test source, nothing printed."""
    rows = "\n".join(
        f"<tr><td>{html.escape(cell.cell_id)}</td><td>{cell.score:g} / {cell.max_score:g}</td>"
        f"<td>{html.escape(cell.verdict[:400])}</td></tr>"
        for cell in report.cells
    )
    return (
        "<!doctype html>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(report.assignment)}: {html.escape(student)}</title>\n"
        f"<h1>{html.escape(report.assignment)}</h1>\n"
        f"<p>{html.escape(student)}: {report.score:g} / {report.max_score:g}</p>\n"
        f"<table>\n<tr><th>exercise</th><th>points</th><th>result</th></tr>\n{rows}\n</table>\n"
    )


def _grade_in_pool(job: tuple[Submission, str | None, Limits, int, bool]) -> dict:
    """Grade one submission in a pool process; returns a plain row (never raises for a student's fault)."""
    from course_utils.grading.grader import grade_submission

    submission, lab, limits, threads, allow_unsandboxed = job
    row = {"student": submission.student, "path": str(submission.path), "digest": _digest(submission.path)}
    try:
        notebook = read_notebook(submission.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = grade_submission(
                notebook,
                submission.path,
                lab=lab,
                limits=limits,
                allow_unsandboxed=allow_unsandboxed,
                threads=threads,
                zygote=_slot_zygote,
            )
    except NotACourseNotebook as error:
        return {**row, "lab": lab or "", "status": "not-gradable", "reason": str(error)}
    except Exception as error:  # the grader's own failure on this file: reported, never fatal
        return {**row, "lab": lab or "", "status": "not-gradable", "reason": f"{type(error).__name__}: {error}"}
    status, reason = _status(report)
    return {**row, "lab": report.assignment, "status": status, "reason": reason, "report": report}


def _exit_on_sigterm(signum, frame):
    raise SystemExit(1)  # so that the finally blocks kill the worker and remove its scratch folder


_slot_zygote = None  # in a pool process: its remote.Zygote, which forks each submission's sandboxed worker


def _pool_initializer():
    global _slot_zygote
    from course_utils.grading.remote import Zygote

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates the pool
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _slot_zygote = Zygote()
    multiprocessing.util.Finalize(_slot_zygote, _slot_zygote.close, exitpriority=10)  # as the process exits
    if sys.platform.startswith("linux"):  # a grader killed outright takes its pool, and so their workers, with it
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Gradebook:
    """The nbgrader course directory under RESULTS: its gradebook and autograded notebooks."""

    def __init__(self, root: Path):
        from nbgrader.api import Gradebook as NbgraderGradebook

        from course_utils.grading.course import generate, nbgrader_api

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "nbgrader_config.py").write_text(
            "# So that `nbgrader export` and formgrader work in this folder.\nc = get_config()  # noqa: F821\n"
            'c.CourseDirectory.source_directory = "solutions"\nc.CourseDirectory.release_directory = "notebooks"\n'
        )
        self.api = nbgrader_api(root)
        self.generated: set[str] = set()
        self._generate = generate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.marks = NbgraderGradebook(self.api.coursedir.db_url)  # one for the run: opening one is slow

    def record(self, student: str, path: Path, report: GradeReport) -> dict[str, float]:
        from course_utils.grading.gradebook import record

        if report.assignment not in self.generated:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._generate(self.api, self.root, report.assignment)
            self.generated.add(report.assignment)
        self._write_autograded(student, path, report)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return record(self.marks, student, report)

    def close(self) -> None:
        self.marks.close()

    def _write_autograded(self, student: str, path: Path, report: GradeReport) -> None:
        """The submission with each test cell's output replaced by its one-line result, for formgrader."""
        import nbformat

        notebook = read_notebook(path)
        verdicts = {cell.cell_id: cell for cell in report.cells}
        for cell in notebook.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "code":
                cell.outputs = []
                if grade_id in verdicts:
                    line = (
                        f"{verdicts[grade_id].score:g} / {verdicts[grade_id].max_score:g}: "
                        f"{verdicts[grade_id].verdict}\n"
                    )
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=line)]
        target = self.root / "autograded" / student / report.assignment / f"{report.notebook}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)


def autograde(
    submissions: Path,
    out: Path,
    *,
    lab: str | None = None,
    jobs: int | None = None,
    limits: Limits | None = None,
    resume: bool = False,
    allow_unsandboxed: bool = sandbox.ALLOW_UNSANDBOXED,
    progress: bool = True,
) -> list[dict]:
    """Grade every submission under ``submissions`` into ``out``; see the module docstring. Returns the rows."""
    from tqdm.auto import tqdm

    limits = limits or Limits()
    sandboxed, sandbox_line = sandbox.status()
    if not sandboxed and not allow_unsandboxed:
        raise RuntimeError(f"{sandbox_line}. Grading a class unconfined needs --allow-unsandboxed.")
    if lab is not None and lab not in assignments():
        raise NotACourseNotebook(f"--lab {lab} is not a lab of this course; expected one of {assignments()}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = read_overrides(out / "overrides.csv")
    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}  # for --resume and failed runs
    solutions_digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(SOLUTIONS.glob("*/*.ipynb")))).hexdigest()
    found = find_submissions(Path(submissions))
    jobs = max(1, jobs or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)

    rows, todo = [], []
    for submission in found:
        key = f"{submission.student}|{submission.path}"
        previous = state.get(key) if resume else None
        if previous and previous["digest"] == _digest(submission.path) and previous["solutions"] == solutions_digest:
            rows.append({**previous["row"], "path": str(submission.path), "resumed": True})
        else:
            todo.append(submission)
    importlib.import_module("course_utils.grading.grader")  # imported once here, so every pool process starts warm

    context = multiprocessing.get_context("fork")  # children of this process, so they die with it
    # no maxtasksperchild: a replacement process would be forked by the pool's handler thread, and its
    # PR_SET_PDEATHSIG fires when that thread exits at close, killing it mid-task and hanging the pool's shutdown
    # (seen past 50 notebooks per slot); each submission runs in its own forked worker, so a slot stays small
    pool = context.Pool(jobs, initializer=_pool_initializer)
    try:
        results = pool.imap_unordered(_grade_in_pool, [(s, lab, limits, threads, allow_unsandboxed) for s in todo])
        gradebook = Gradebook(out / "nbgrader")  # nbgrader starts up while the pool grades the first submissions
        for result in tqdm(results, total=len(todo), desc="autograde", unit="notebook", disable=not progress):
            report = result.pop("report", None)
            previous = state.get(f"{result['student']}|{result['path']}")
            if (kept := kept_grade(result, report.score if report else None, previous)) is not None:
                rows.append(kept)  # the gradebook and state.json keep the last run's grade too
                continue
            row = {key: result.get(key, "") for key in ("student", "lab", "status", "reason", "path")}
            row.update(score=0.0, max_score=0.0)
            if report is not None:
                stored = gradebook.record(result["student"], Path(result["path"]), report)
                for cell in report.cells:
                    cell.score = stored.get(cell.cell_id, cell.score)
                row.update(
                    score=report.score, max_score=report.max_score, points={c.cell_id: c.score for c in report.cells}
                )
                page = out / "feedback" / result["student"] / f"{report.assignment}.html"
                page.parent.mkdir(parents=True, exist_ok=True)
                page.write_text(feedback_html(result["student"], report))
            rows.append(row)
            state[f"{result['student']}|{result['path']}"] = {
                "digest": result["digest"],
                "solutions": solutions_digest,
                "row": row,
            }
            state_path.write_text(json.dumps(state, indent=1))
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    rows = apply_overrides(rows, overrides, gradebook.marks)
    gradebook.close()
    rows.sort(key=lambda row: (row["student"], row["lab"]))
    _write_csv(out / "grades.csv", rows)
    write_similarity(out / "similarity.csv", rows)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    exercises = []
    for row in rows:
        for name in row.get("points", {}):
            if name not in exercises:
                exercises.append(name)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS + exercises)
        for row in rows:
            points = row.get("points", {})
            writer.writerow(
                [row["student"], row["lab"], f"{row['score']:g}", f"{row['max_score']:g}", row["status"], row["reason"]]
                + [row.get("overrides", "")]
                + [f"{points[name]:g}" if name in points else "" for name in exercises]
            )
