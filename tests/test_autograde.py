"""A hostile class graded in one command: every student gets a row with the right status and score,
the files are left as they were, the feedback stays small, and nothing is left running."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from submissions import answers, submission

from course_utils.grading import REPO

LAB = "lab01_masking"
POINTS = {
    "test_select_positions": 3,
    "test_apply_80_10_10": 3,
    "test_build_labels": 2,
    "test_select_whole_words": 3,
    "test_sample_span_lengths": 2,
}
HOSTILE_EXERCISE = "build_labels"  # the hostile code goes here; the other exercises are correct


def with_build_labels(body: str) -> dict[str, str]:
    solutions = dict(answers(LAB))
    solutions[HOSTILE_EXERCISE] = f"import os, signal, sys, torch\n\ndef build_labels(input_ids, selected):\n{body}"
    return solutions


HOSTILE_BODIES = {
    "infinite_loop": "    while True:\n        pass\n",
    "ignores_sigint": "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    while True:\n        pass\n",
    "os_exit": "    os._exit(0)\n",
    "calls_exit": "    exit()\n",
    "memory_bomb": "    hoard = []\n    while True:\n        hoard.append([0] * 10**6)\n",
    "prints_200mb": "    for _ in range(200):\n        print('x' * 10**6)\n"
    "    return torch.where(selected, input_ids, torch.full_like(input_ids, -100))\n",
}


def edit_json(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def build_class(root):
    """The class: name -> (expected status, expected score)."""
    expected = {}
    submission(root / "correct", LAB, answers(LAB), name="lab01_masking.ipynb")
    expected["correct"] = ("graded", 13)
    submission(root / "untouched", LAB, name="lab01_masking.ipynb")
    expected["untouched"] = ("graded", 0)
    for name, body in HOSTILE_BODIES.items():
        submission(root / name, LAB, with_build_labels(body), name="lab01_masking.ipynb")
        full = name == "prints_200mb"
        expected[name] = ("graded" if full or name == "calls_exit" else "partial", 13 if full else 11)
    stripped = submission(root / "stripped_metadata", LAB, answers(LAB), name="lab01_masking.ipynb")
    edit_json(stripped, lambda nb: [cell["metadata"].pop("nbgrader", None) for cell in nb["cells"]])
    expected["stripped_metadata"] = ("graded", 13)
    duplicated = submission(root / "duplicated_grade_id", LAB, answers(LAB), name="lab01_masking.ipynb")

    def duplicate_stub(nb):
        stub = json.loads(json.dumps(next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution"))))
        stub["source"], stub["id"] = "# YOUR CODE HERE\nraise NotImplementedError()", "duplicated-stub"
        nb["cells"].insert(0, stub)

    edit_json(duplicated, duplicate_stub)
    expected["duplicated_grade_id"] = ("graded", 13)
    schema = submission(root / "schema_version_4", LAB, answers(LAB), name="lab01_masking.ipynb")
    edit_json(
        schema,
        lambda nb: [
            c["metadata"]["nbgrader"].update(schema_version=4) for c in nb["cells"] if "nbgrader" in c["metadata"]
        ],
    )
    expected["schema_version_4"] = ("graded", 13)
    ungraded = submission(root / "test_cell_ungraded", LAB, answers(LAB), name="lab01_masking.ipynb")
    edit_json(
        ungraded,
        lambda nb: [
            c["metadata"]["nbgrader"].update(grade=False, points=0)
            for c in nb["cells"]
            if c["metadata"].get("nbgrader", {}).get("grade")
        ],
    )
    expected["test_cell_ungraded"] = ("graded", 13)
    old_format = submission(root / "nbformat_4_4", LAB, answers(LAB), name="lab01_masking.ipynb")

    def downgrade(nb):
        nb["nbformat_minor"] = 4
        for cell in nb["cells"]:
            cell.pop("id", None)

    edit_json(old_format, downgrade)
    expected["nbformat_4_4"] = ("graded", 13)
    submission(root, LAB, answers(LAB), name="misnamed.ipynb")
    (root / "misnamed.ipynb").rename(root / "jdoe_lab01_masking (1).ipynb")
    expected["jdoe_lab01_masking_1"] = ("graded", 13)
    submission(root / "other_lab", "lab00_setup", answers("lab00_setup"), name="lab01_masking.ipynb")
    expected["other_lab"] = ("graded", 2)
    (root / "invalid_json.ipynb").write_text('{"cells": [')
    expected["invalid_json"] = ("not-gradable", 0)
    return expected


def digests(root):
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in root.rglob("*") if path.is_file()}


def stray_processes(marker: str) -> list[str]:
    """Command lines of running grading workers and zygotes whose scratch folder lies under ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if ("course_utils.grading.worker" in command or "course_utils.grading.zygote" in command) and marker in command:
            found.append(f"{entry} {command}")
    return found


def autograde_command(classroom, results, *options: str) -> list[str]:
    """The instructor's command for ``classroom``, two notebooks at a time."""
    return [
        sys.executable,
        "-m",
        "course_utils",
        "autograde",
        str(classroom),
        "--out",
        str(results),
        "--jobs",
        "2",
        *options,
    ]


@pytest.mark.notebook
def test_a_hostile_class_grades_in_one_command(tmp_path):
    classroom, results = tmp_path / "class", tmp_path / "results"
    expected = build_class(classroom)
    before = digests(classroom)
    start = time.monotonic()
    command = autograde_command(classroom, results, "--cell-timeout", "20", "--memory", "2")
    scratch = tmp_path / "tmp"  # the workers' scratch folders, so that leftovers are ours to find
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    elapsed = time.monotonic() - start
    print(f"hostile class of {len(expected)} graded in {elapsed:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["student"]: row for row in csv.DictReader(open(results / "grades.csv"))}
    assert set(rows) == set(expected)
    for student, (status, score) in expected.items():
        row = rows[student]
        assert (row["status"], float(row["score"])) == (status, score), row
        if status != "graded":
            assert row["reason"], row
    assert rows["correct"]["max_score"] == "13" and rows["invalid_json"]["reason"]
    for student in ("infinite_loop", "ignores_sigint", "os_exit", "memory_bomb"):
        assert float(rows[student]["test_build_labels"]) == 0 and float(rows[student]["test_select_positions"]) == 3
    assert digests(classroom) == before, "grading changed a submitted file"
    pages = list((results / "feedback").rglob("*.html"))
    assert len(pages) == len(expected) - 1 and max(page.stat().st_size for page in pages) < 20_000
    assert "BEGIN HIDDEN" not in "".join(page.read_text() for page in pages)
    assert not stray_processes(str(scratch)), stray_processes(str(scratch))
    assert not list(scratch.iterdir()), list(scratch.iterdir())
    export = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "nbgrader"), "export"],
        cwd=results / "nbgrader",
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]},
    )
    assert export.returncode == 0, export.stderr
    exported = {
        (r["assignment"], r["student_id"]): float(r["score"])
        for r in csv.DictReader(open(results / "nbgrader" / "grades.csv"))
    }
    assert exported[(LAB, "correct")] == 13 and exported[(LAB, "infinite_loop")] == 11

    again = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert again.returncode == 0 and f"({len(expected)} unchanged since the last run" in again.stdout, again.stdout
    assert {r["student"]: r["score"] for r in csv.DictReader(open(results / "grades.csv"))} == {
        s: r["score"] for s, r in rows.items()
    }


@pytest.mark.notebook
def test_ctrl_c_of_the_grader_leaves_no_process_and_no_scratch_folder(tmp_path):
    classroom, scratch = tmp_path / "class", tmp_path / "tmp"
    scratch.mkdir()
    for student in ("hangs_a", "hangs_b"):
        submission(classroom / student, LAB, with_build_labels(HOSTILE_BODIES["ignores_sigint"]), name="lab.ipynb")
    command = autograde_command(classroom, tmp_path / "results", "--cell-timeout", "300")
    log = open(tmp_path / "grader.log", "w")
    grader = subprocess.Popen(command, cwd=REPO, env={**os.environ, "TMPDIR": str(scratch)}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not stray_processes(str(scratch)) and time.monotonic() < deadline and grader.poll() is None:
            time.sleep(0.5)
        assert stray_processes(str(scratch)), f"no worker started: {(tmp_path / 'grader.log').read_text()[-2000:]}"
    except BaseException:
        grader.kill()
        raise
    time.sleep(3)  # let the workers reach the hanging exercise
    grader.send_signal(signal.SIGINT)
    assert grader.wait(timeout=60) != 0
    time.sleep(1)
    assert not stray_processes(str(scratch)), stray_processes(str(scratch))
    assert not list(scratch.iterdir()), list(scratch.iterdir())
