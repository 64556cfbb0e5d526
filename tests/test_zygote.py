"""One pool slot's zygote grades submission after submission: nothing a student leaves behind (a process, a
file, an environment or module change, a working folder, a signal handler, an IPC object) reaches the next."""

from __future__ import annotations

import os

import pytest

from course_utils.grading import sandbox
from course_utils.grading.remote import Limits, RemoteFunction, Worker, WorkerLost, Zygote

pytestmark = pytest.mark.skipif(not sandbox.status()[0], reason=sandbox.status()[1])

MARKER = "leftover-from-the-last-student"
SHM_KEY = 0x5EED

LEAVE_TRACES = f"""
import ctypes, os, signal, subprocess, sys
import course_utils.checks as checks

def leave_traces():
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)", "{MARKER}"]
    subprocess.Popen(sleeper, start_new_session=True)
    if os.fork() == 0:  # a daemon: fork, new session, fork again, and the middle process exits
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, sleeper)
        os._exit(0)
    os.wait()
    home = os.environ["HOME"]  # the scratch folder, also the working folder until the chdir below
    for folder in ("/tmp", "/dev/shm", home, os.path.dirname(home)):
        with open(os.path.join(folder, "{MARKER}.txt"), "w") as handle:
            handle.write("answers")
    os.environ["LEFTOVER"] = "{MARKER}"
    sys.modules["leftover_module"] = sys
    checks.expect = lambda *args, **kwargs: None
    os.chdir("/tmp")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return ctypes.CDLL(None).shmget({SHM_KEY}, 4096, 0o1600) >= 0  # IPC_CREAT

_traces = leave_traces()
"""

LOOK = f"""
import ctypes, os, signal, sys
import course_utils.checks as checks

def look():
    processes = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if "{MARKER}" in open(f"/proc/{{pid}}/cmdline", "rb").read().decode(errors="replace"):
                processes.append(pid)
        except OSError:
            pass
    files = [os.path.join(root, name) for top in ("/tmp", "/dev/shm") for root, _, names in os.walk(top)
             for name in names if "{MARKER}" in name]
    return {{
        "processes": processes,
        "files": files,
        "environment": os.environ.get("LEFTOVER"),
        "module": "leftover_module" in sys.modules,
        "patched": checks.expect.__name__ != "expect",
        "cwd_is_home": os.getcwd() == os.environ["HOME"],
        "scratch": os.listdir("."),
        "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "shm": ctypes.CDLL(None).shmget({SHM_KEY}, 0, 0) >= 0,
    }}
"""

CLEAN = {
    "processes": [],
    "files": [],
    "environment": None,
    "module": False,
    "patched": False,
    "cwd_is_home": True,
    "scratch": [],
    "sigterm_default": True,
    "shm": False,
}


def run(zygote: Zygote, name: str, source: str):
    """Load ``source`` in a worker forked by ``zygote`` and call its function ``name()``."""
    setup = {"imports": "", "cells": [(name, source)], "forbidden": {}, "threads": 1}
    worker = Worker(setup, Limits(exercise_seconds=60, startup_seconds=60), sandboxed=True, zygote=zygote)
    try:
        worker.start()
        worker.begin(name)
        return RemoteFunction(worker, name)()
    finally:
        worker.close()


def host_processes(marker: str) -> list[str]:
    """Processes on this machine, sandboxed or not, whose command line holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if marker in handle.read().decode(errors="replace"):
                    found.append(pid)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def zygote():
    """One slot's zygote for the whole module, as in a class: each test grades its submissions one after another."""
    zygote = Zygote(startup_seconds=60)
    yield zygote
    zygote.close()


def test_nothing_a_student_leaves_behind_reaches_the_next_student(zygote):
    assert run(zygote, "leave_traces", LEAVE_TRACES) is True, "the hostile submission did not run"
    assert zygote.process is not None and not zygote.failure, zygote.failure
    same_zygote = zygote.process.pid
    assert not host_processes(MARKER), "a process of the last submission outlived it"
    assert run(zygote, "look", LOOK) == CLEAN
    assert zygote.process.pid == same_zygote, "the zygote was restarted, so this test did not test it"


def test_a_student_who_kills_the_zygote_loses_only_their_own_grading(zygote):
    """The worker dies with its zygote. (The sleep gives the zygote's death time to arrive: without it, a worker
    on a loaded machine may answer before, and keep a grade it did not lose anything for.)"""
    assert zygote.available()
    first = zygote.process.pid
    source = (
        "import os, signal, time\n_ = os.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)\ndef kill():\n    pass\n"
    )
    with pytest.raises(WorkerLost):
        run(zygote, "kill", source)
    assert run(zygote, "look", LOOK) == CLEAN
    assert zygote.process.pid != first


def test_a_student_cannot_read_the_zygotes_memory_or_trace_it(zygote):
    source = (
        "import ctypes, os\n"
        "def pry():\n"
        "    try:\n"
        "        open(f'/proc/{os.getppid()}/mem', 'rb').close()\n"
        "        readable = True\n"
        "    except OSError:\n"
        "        readable = False\n"
        "    return readable, ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == 0\n"  # PTRACE_ATTACH
    )
    assert run(zygote, "pry", source) == (False, False)


def test_the_scratch_folder_is_gone_when_the_slot_closes(zygote):
    assert run(zygote, "look", LOOK) == CLEAN
    slot = zygote.slot
    zygote.close()
    assert not os.path.exists(slot) and zygote.process is None
