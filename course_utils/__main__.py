"""Command line: ``python -m course_utils grade PATH.ipynb`` and ``python -m course_utils release [--check]``."""

from __future__ import annotations

import argparse
import sys

from course_utils import grading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="autograde one notebook and print a per-cell table")
    grade.add_argument("notebook", help="path to a course notebook (.ipynb)")
    release = commands.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader")
    release.add_argument("labs", nargs="*", help="lab folders to regenerate (default: all)")
    release.add_argument("--check", action="store_true", help="only report whether notebooks/ is up to date")
    release.add_argument("--force", action="store_true", help="overwrite student work in notebooks/ (backed up first)")
    args = parser.parse_args(argv)

    if args.command == "grade":
        try:
            report = grading.grade_notebook(args.notebook)
        except grading.NotACourseNotebook as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except grading.GradingFailed as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(report.table())
        return 0

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


if __name__ == "__main__":
    sys.exit(main())
