"""The sandbox the worker runs in: what student code can and cannot reach."""

from __future__ import annotations

import pytest

from course_utils.grading import SOLUTIONS, sandbox
from course_utils.grading.remote import Limits, RemoteFunction, Worker, WorkerLost

PROBE = """
import os, socket
def probe(outside_file, submissions_folder):
    seen = {}
    seen["solutions_visible"] = os.path.exists(SOLUTIONS)
    seen["submissions_visible"] = os.path.exists(submissions_folder)
    try:
        with open(outside_file, "w") as handle:
            handle.write("escaped")
        seen["wrote_outside"] = True
    except OSError:
        seen["wrote_outside"] = False
    try:
        with open("scratch.txt", "w") as handle:
            handle.write("fine")
        seen["wrote_scratch"] = True
    except OSError:
        seen["wrote_scratch"] = False
    try:
        socket.create_connection(("pypi.org", 443), timeout=3)
        seen["network"] = True
    except OSError:
        seen["network"] = False
    return seen
"""

needs_sandbox = pytest.mark.skipif(not sandbox.status()[0], reason=sandbox.status()[1])


def probe(outside_file, submissions_folder, sandboxed: bool) -> dict:
    """What ``PROBE`` sees when it runs in a worker, sandboxed or not."""
    setup = {
        "imports": "",
        "cells": [("probe", PROBE.replace("SOLUTIONS", repr(str(SOLUTIONS))))],
        "forbidden": {},
        "threads": 1,
    }
    worker = Worker(setup, Limits(exercise_seconds=60), sandboxed=sandboxed)
    try:
        worker.start()
        worker.begin("probe")
        seen = RemoteFunction(worker, "probe")(str(outside_file), str(submissions_folder))
        worker.end()
    finally:
        worker.close()
    return seen


@needs_sandbox
def test_sandboxed_code_cannot_see_solutions_or_submissions_write_outside_or_reach_the_network(tmp_path):
    submissions = tmp_path / "submitted"
    submissions.mkdir()
    seen = probe(tmp_path / "escaped.txt", submissions, sandboxed=True)
    assert seen == {
        "solutions_visible": False,
        "submissions_visible": False,
        "wrote_outside": False,
        "wrote_scratch": True,
        "network": False,
    }
    assert not (tmp_path / "escaped.txt").exists()


def test_without_a_sandbox_the_probe_sees_everything_which_is_why_the_report_says_so(tmp_path):
    seen = probe(tmp_path / "escaped.txt", tmp_path, sandboxed=False)
    assert seen["solutions_visible"] and seen["wrote_outside"]


def test_the_sandbox_status_is_one_line():
    available, line = sandbox.status()
    assert "\n" not in line and line.startswith("sandboxed" if available else "no sandbox")


def test_a_cell_that_ends_the_worker_while_loading_is_named_with_its_exit_status():
    setup = {"imports": "", "cells": [("quits", "import os\nX = os._exit(7)")], "forbidden": {}, "threads": 1}
    worker = Worker(setup, Limits(startup_seconds=60), sandboxed=sandbox.status()[0])
    with pytest.raises(WorkerLost, match=r"ended while loading the definitions \(exit status 7\)") as lost:
        worker.start()
    assert lost.value.cell == "quits" and worker.process is None
