"""The sandboxed side of one pool slot: a process that imports torch and the worker once, then forks a fresh
worker (``worker.main``) for each submission.

Run by the grader (``remote.Zygote``) as ``python -P -m course_utils.grading.zygote SOCKET_FD SLOT`` inside
the sandbox; SLOT, the slot's writable folder, names it in ``ps`` (and ``-P`` keeps it off ``sys.path``). No
student code runs in the zygote itself: only in the workers it forks, and each of those gets

- its own scratch folder ``SLOT/submission-N`` (its working folder and ``$HOME``), its own session and process
  group, and its own user and IPC namespaces (so SysV and POSIX IPC objects die with it);
- a copy of the zygote's memory: what it changes (``os.environ``, ``sys.modules``, patched functions, signal
  handlers, the working folder) changes its copy only.

When the grader ends a submission (``k``), the zygote kills every other process in the sandbox (its pid
namespace holds nothing else), waits until they are gone, then empties every writable place (``/tmp``,
``/dev/shm`` and SLOT) before it answers ``clean``; if it cannot, it exits and the grader starts a new sandbox.
The zygote is not dumpable, so a worker can neither trace it nor read its memory.

Messages on SOCKET, in ``channel``'s framing: from the grader, the byte ``s`` carrying three descriptors (the
worker's request-read, reply-write and output ends) followed by ``{"memory_bytes", "preload"}``, or the byte
``k``; to the grader, ``ready``, ``exited`` (the worker's exit status) and ``clean``.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import re
import resource
import select
import shutil
import signal
import socket
import sys
import time
import traceback

import torch  # noqa: F401  (imported here once, for every worker)

from course_utils.grading import worker
from course_utils.grading.channel import Channel

WRITABLE = ("/tmp", "/dev/shm")  # with SLOT, every place in the sandbox a worker can write (sandbox.command)
CLONE_NEWUSER, CLONE_NEWIPC = 0x10000000, 0x08000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
_libc = ctypes.CDLL(None, use_errno=True)


def _own_namespaces() -> None:
    """Put this (single-threaded) process in new user and IPC namespaces."""
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER | CLONE_NEWIPC) failed for the worker")


def _run_worker(fds: list[int], scratch: str, memory_bytes: int, zygote: int) -> None:
    """In the forked child: become a fresh worker in ``scratch``, then serve the grader (never returns).

    The worker dies with its zygote (``zygote``: its pid), so a student whose code kills the zygote ends their
    own grading there and then, rather than whenever the sandbox's init notices."""
    try:
        read_fd, write_fd, output_fd = fds
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        keep = {0, 1, 2, read_fd, write_fd}
        for name in os.listdir("/proc/self/fd"):  # the zygote's socket and anything else it holds
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        os.setsid()
        _own_namespaces()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the new user namespace, which would clear it
        if os.getppid() != zygote:  # it died before the line above
            os._exit(1)
        os.mkdir(scratch, 0o700)
        os.chdir(scratch)
        os.environ.update(HOME=scratch, MPLCONFIGDIR=scratch)
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
        worker.main(read_fd, write_fd)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(1)


def _kill_all_but_me(seconds: float = 10.0) -> None:
    """SIGKILL every process in this pid namespace but this one and its init; return once none is left."""
    me, deadline = os.getpid(), time.monotonic() + seconds
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:  # reap our own children; the init reaps the orphans
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not [pid for pid in _processes() if pid not in (1, me)]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("processes of the last submission survived SIGKILL")
        time.sleep(0.005)


def _processes() -> list[int]:
    """The live (not zombie) processes of this pid namespace."""
    alive = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    state = handle.read().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):
                alive.append(int(name))
    return alive


def _mount_points() -> set[str]:
    """Every mount point in this sandbox (``/proc/self/mountinfo``): the folders bound in, such as a course or
    a virtual environment that lives under ``/tmp``, which emptying must leave alone."""
    with open("/proc/self/mountinfo") as file:  # the 5th field, with spaces and the like as octal escapes
        return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in file}


def _empty(folder: str, keep: str, mounts: set[str]) -> None:
    """Remove everything under ``folder`` but the folder ``keep`` (emptied instead), the ``mounts`` (left as they
    are) and the folders on the way to either (emptied around them). Read-only and unreadable folders are made
    removable first."""
    for entry in os.scandir(folder):
        path = entry.path
        if entry.is_dir(follow_symlinks=False):
            if path in mounts and path != keep:
                continue
            os.chmod(path, 0o700)
            if path == keep or _holds(path, {keep, *mounts}):
                _empty(path, keep, mounts)
                continue
            for root, folders, _ in os.walk(path):
                for name in folders:
                    if not os.path.islink(os.path.join(root, name)):
                        os.chmod(os.path.join(root, name), 0o700)
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _holds(folder: str, paths: set[str]) -> bool:
    """Whether one of ``paths`` lies inside ``folder``."""
    return any(path.startswith(folder + os.sep) for path in paths)


def end_submission(slot: str) -> None:
    """Kill everything the submission started, then empty every writable place. Raises if anything is left."""
    _kill_all_but_me()
    mounts = _mount_points()
    for folder in (*WRITABLE, slot):
        _empty(folder, slot, mounts)
    left = [os.path.join(folder, name) for folder in (*WRITABLE, slot) for name in os.listdir(folder)]
    kept = {slot, *mounts}
    if [path for path in left if path not in kept and not _holds(path, kept)]:
        raise RuntimeError(f"could not empty the sandbox: {left}")


def _namespaces_work() -> bool:
    """Whether a forked child can have its own user and IPC namespaces here."""
    child = os.fork()
    if child == 0:
        try:
            _own_namespaces()
            os._exit(0)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


def main(socket_fd: int, slot: str) -> None:
    _libc.prctl(PR_SET_DUMPABLE, 0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    control = socket.socket(fileno=socket_fd)
    channel = Channel(socket_fd, socket_fd, trusted_input=True)
    if not _namespaces_work():
        channel.send({"kind": "failed", "reason": "a worker cannot have its own user and IPC namespaces here"})
        return
    channel.send({"kind": "ready"})
    count, child, pidfd, zygote = 0, None, None, os.getpid()
    while True:
        readable = select.select([control] + ([pidfd] if pidfd is not None else []), [], [])[0]
        if pidfd is not None and pidfd in readable:
            status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            os.close(pidfd)
            child = pidfd = None
            channel.send({"kind": "exited", "status": status})
        if control not in readable:
            continue
        op, fds, _, _ = socket.recv_fds(control, 1, 3)
        if not op:
            return  # the grader has gone
        if op == b"s":
            if child is not None:  # the grader did not end the last submission: end it now
                os.close(pidfd)
                child = pidfd = None
                end_submission(slot)
            request = channel.receive()
            for module in request["preload"]:
                try:
                    importlib.import_module(module)
                except Exception:  # the worker meets the same error, and reports it
                    pass
            count += 1
            child = os.fork()
            if child == 0:
                _run_worker(fds, os.path.join(slot, f"submission-{count}"), request["memory_bytes"], zygote)
            for fd in fds:
                os.close(fd)
            pidfd = os.pidfd_open(child)
        elif op == b"k":
            if pidfd is not None:
                os.close(pidfd)
                child = pidfd = None
            end_submission(slot)
            channel.send({"kind": "clean"})


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
