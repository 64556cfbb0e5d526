"""Command line of the course.

python -m course_utils grade PATH.ipynb [--lab LAB]   grade one notebook and print a per-cell table
python -m course_utils release [LAB ...] [--check] [--force]
                                                      regenerate notebooks/ from solutions/ with nbgrader
python -m course_utils export-student DIR [--assign LAB[,LAB...]]
                                                      write a student copy of the course (no solutions;
                                                      the assigned labs' answers only compiled)
python -m course_utils autograde SUBMISSIONS --out RESULTS [options]
                                                      grade a whole class; see `autograde --help`
python -m course_utils export-grades RESULTS --canvas ROSTER.csv --out FILE.csv [--match-column COLUMN]
                                                      grades for Canvas, and nbgrader's own CSV
python -m course_utils run-labs [--profile P] [--labs LAB ...] [--out DIR] [--max-steps N]
                                                      run the solution notebooks, writing as they go
"""

from __future__ import annotations

import argparse
import json
import sys

from course_utils import grading


def _grade(args) -> int:
    try:
        report = grading.grade_notebook(args.notebook, lab=args.lab)
    except grading.NotACourseNotebook as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except grading.GradingFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.table())
    return 0


def _release(args) -> int:
    try:
        stale = grading.release(args.labs, check=args.check, force=args.force)
    except grading.ReleaseRefused as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.check:
        if stale:
            print("notebooks/ is out of date with solutions/; run `make release`. Stale:", *stale, sep="\n  ")
            return 1
        print("notebooks/ is up to date with solutions/")
    else:
        print(f"regenerated notebooks/ for: {', '.join(args.labs or grading.assignments())}")
    return 0


def _export_student(args) -> int:
    from course_utils.grading.handout import export_student

    try:
        destination = export_student(args.directory, args.assign.split(",") if args.assign is not None else None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileExistsError, grading.ReleaseRefused) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"student copy written to {destination}: `make lab` opens it, `make check` checks the exercises")
    return 0


def _autograde(args) -> int:
    from course_utils.grading.classroom import autograde
    from course_utils.grading.regrading import BadOverrides
    from course_utils.grading.remote import Limits

    limits = Limits(
        exercise_seconds=args.cell_timeout,
        notebook_seconds=args.notebook_timeout,
        memory_bytes=int(args.memory * (1 << 30)),
    )
    try:
        rows = autograde(
            args.submissions,
            args.out,
            lab=args.lab,
            jobs=args.jobs,
            limits=limits,
            resume=args.resume,
            allow_unsandboxed=args.allow_unsandboxed,
        )
    except (RuntimeError, NotADirectoryError, grading.NotACourseNotebook, BadOverrides) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = {status: sum(row["status"] == status for row in rows) for status in ("graded", "partial", "not-gradable")}
    resumed = sum(bool(row.get("resumed")) for row in rows)
    print(
        f"{len(rows)} submissions: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + (f" ({resumed} unchanged since the last run, not regraded)" if resumed else "")
    )
    kept = sum(bool(row.get("kept")) for row in rows)
    if kept:
        print(f"{kept} kept the last run's grade: this run failed for them (grades.csv gives the reason)")
    print(f"grades: {args.out}/grades.csv; feedback: {args.out}/feedback/; nbgrader course: {args.out}/nbgrader/")
    print(f"alike answers, for your eyes only: {args.out}/similarity.csv")
    return 0


def _export_grades(args) -> int:
    from course_utils.grading.export import export_grades, nbgrader_csv, unmatched_path

    try:
        unmatched = export_grades(args.results, args.canvas, args.out, args.match_column)
        nbgrader_file = nbgrader_csv(args.results)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in unmatched:
        print(f"no roster row for {row['student']} ({row['lab'] or 'no lab'}: {row['score']})", file=sys.stderr)
    print(f"grades for Canvas: {args.out}; nbgrader's CSV: {nbgrader_file}")
    if unmatched:
        print(f"{len(unmatched)} submissions match no roster row: {unmatched_path(args.out)}", file=sys.stderr)
    return 0


def _run_labs(args) -> int:
    from course_utils.labs import run_labs

    try:
        summaries = run_labs(args.profile, args.out, args.labs or None, args.max_steps)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for summary in summaries:
        print(json.dumps(summary))
    return 1 if any(summary["failing_cells"] for summary in summaries) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade one notebook and print a per-cell table")
    grade.add_argument("notebook", help="path to a course notebook (.ipynb)")
    grade.add_argument("--lab", help="grade as this lab (default: recognized from the notebook's graded cells)")
    grade.set_defaults(run=_grade)
    release = commands.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader")
    release.add_argument("labs", nargs="*", help="lab folders to regenerate (default: all)")
    release.add_argument("--check", action="store_true", help="only report whether notebooks/ is up to date")
    release.add_argument("--force", action="store_true", help="overwrite work in notebooks/ after backing it up")
    release.set_defaults(run=_release)
    export = commands.add_parser("export-student", help="write a student copy of the course into a new folder")
    export.add_argument("directory", help="the folder to create")
    export.add_argument(
        "--assign",
        metavar="LAB[,LAB...]",
        help="graded labs (folder names, comma-separated): their reference answers ship only compiled "
        "(default: a self-study copy, every answer readable)",
    )
    export.set_defaults(run=_export_student)
    auto = commands.add_parser(
        "autograde",
        help="grade a whole class: grades.csv, feedback pages and nbgrader's gradebook",
        description="Grade every submission under SUBMISSIONS: submitted/<student>/<lab>/<notebook>.ipynb, "
        "<student>/<any name>.ipynb, or <student>.ipynb. The lab is recognized from each notebook's graded cells.",
    )
    auto.add_argument("submissions", help="folder of submissions")
    auto.add_argument("--out", required=True, help="results folder: grades.csv, feedback/, nbgrader/, state.json")
    auto.add_argument("--lab", help="grade every notebook as this lab")
    auto.add_argument("--jobs", type=int, default=None, help="notebooks graded at once (default: number of cores)")
    auto.add_argument(
        "--cell-timeout",
        type=float,
        default=120.0,
        help="seconds for one exercise's test cell (default 120; the ci profile's slowest takes a few)",
    )
    auto.add_argument("--notebook-timeout", type=float, default=600.0, help="seconds for one notebook (default 600)")
    auto.add_argument("--memory", type=float, default=4.0, help="GB of memory for one notebook's worker (default 4)")
    auto.add_argument("--resume", action="store_true", help="skip submissions unchanged since the last run")
    auto.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="grade even where no sandbox can be had (student code then runs unconfined)",
    )
    auto.set_defaults(run=_autograde)
    lms = commands.add_parser(
        "export-grades",
        help="grades for an LMS (a Canvas roster with one column per lab) and nbgrader's own CSV",
        description="Write FILE.csv: the Canvas roster's columns and rows, and one column per lab with each "
        "student's total points (blank: no submission). Submissions matching no roster row are listed on stderr "
        "and in FILE.unmatched.csv. Also writes nbgrader's CSV, RESULTS/nbgrader/grades.csv.",
    )
    lms.add_argument("results", metavar="RESULTS", help="the --out folder of autograde")
    lms.add_argument("--canvas", required=True, metavar="ROSTER.csv", help="the roster: a Canvas gradebook export")
    lms.add_argument("--out", required=True, metavar="FILE.csv", help="the file to write for the LMS")
    lms.add_argument(
        "--match-column",
        default="SIS Login ID",
        metavar="COLUMN",
        help="the roster column that holds the submissions' student names (default: SIS Login ID)",
    )
    lms.set_defaults(run=_export_grades)
    labs = commands.add_parser(
        "run-labs",
        help="run the solution notebooks one after another, saving each cell's output and a summary line per lab",
    )
    labs.add_argument("--profile", default="gpu", help="ci, cpu or gpu (default gpu)")
    labs.add_argument("--labs", nargs="*", help="lab folders to run (default: all)")
    labs.add_argument("--out", default="runs", help="folder for the executed notebooks and summary.jsonl")
    labs.add_argument("--max-steps", type=int, default=None, help="cap every training loop (COURSE_MAX_STEPS)")
    labs.set_defaults(run=_run_labs)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
