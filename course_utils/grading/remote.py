"""The grader's side of the sandboxed worker: start it, and call student functions through it.

``Worker`` owns one worker process (see ``worker.py``) for one notebook and speaks to it in the wire
format of ``channel.py``. The process is a fresh sandboxed Python or, when grading a class, a child forked
by the pool slot's ``Zygote`` (see ``zygote.py``), which saves each notebook the start of Python and the
imports. ``RemoteFunction`` looks like the student's function to a check: calling it sends the arguments
to the worker, which runs the student's code and sends back the result, the new states of any
``torch.Generator`` and of the global RNG, and the tensor arguments as the call left them (so a check can
see an in-place edit). The check itself, and every comparison, runs here, where no student code ever runs.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from course_utils.grading import sandbox
from course_utils.grading.channel import Channel, ChannelClosed, ChannelTimeout, call_request, decode_value, tensors_in


class ForbiddenCall(BaseException):
    """The student's code called the reference implementation of its own exercise."""


class WorkerLost(BaseException):
    """The student's code ended, hung or outgrew the worker process."""


class StudentError(Exception):
    """An exception raised by the student's code whose type has no builtin counterpart here."""


@dataclasses.dataclass
class Limits:
    """Bounds on one notebook's worker: seconds per exercise, for loading and for the whole notebook;
    bytes of memory (the worker's data segment) and of output kept."""

    exercise_seconds: float = 120.0
    startup_seconds: float = 120.0
    notebook_seconds: float = 600.0
    memory_bytes: int = 4 << 30
    output_bytes: int = 64 << 10


def _limit_memory(memory_bytes: int):
    def apply():  # runs between fork and exec: no imports, no locks
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))

    return apply


class _OutputDrain(threading.Thread):
    """Reads the worker's stdout/stderr so it never blocks; keeps the first ``limit`` bytes."""

    def __init__(self, stream, limit: int):
        super().__init__(daemon=True)
        self.stream, self.limit, self.kept = stream, limit, bytearray()

    def run(self):
        while chunk := self.stream.read(1 << 16):
            if len(self.kept) < self.limit:
                self.kept += chunk[: self.limit - len(self.kept)]


def _raise_student_error(reply: dict):
    import builtins

    cls = getattr(builtins, reply["type"], None)
    message = reply["message"]
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, AssertionError):
        try:
            error = cls(message)
        except Exception:
            error = StudentError(f"{reply['type']}: {message}")
    else:
        error = StudentError(f"{reply['type']}: {message}")
    error.student_location = reply.get("where", "")
    raise error


class _Session(subprocess.Popen):
    """A fresh worker process, the leader of its own session."""

    def end(self) -> None:
        """Kill it and everything it started (in the sandbox, its pid namespace dies with it)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.wait()


class _ZygoteLost(Exception):
    """The zygote did not answer as it should; its sandbox is discarded."""


class Zygote:
    """One pool slot's sandbox with a zygote in it (``zygote.py``): it forks a worker per notebook and, when the
    notebook is done, kills everything the worker started and empties every writable place. Started on first
    use; restarted in a new sandbox whenever it fails to answer. ``close`` when the slot ends."""

    def __init__(self, startup_seconds: float = 120.0):
        self.startup_seconds = startup_seconds
        self.process, self.slot, self.failure, self.worker = None, None, "", None

    def available(self) -> bool:
        """Whether a worker can be forked here (starting the zygote if needed); if not, ``failure`` says why."""
        if self.process is None and not self.failure:
            try:
                self._start()
            except (_ZygoteLost, OSError) as error:
                self.close()
                self.failure = str(error)
        return self.process is not None

    def _start(self) -> None:
        self.slot = tempfile.mkdtemp(prefix="course-worker-")  # the slot folder names the zygote in `ps`
        ours, theirs = socket.socketpair()
        self.socket = ours
        self.channel = Channel(ours.fileno(), ours.fileno(), trusted_input=False)
        python = [sys.executable, "-P", "-m", "course_utils.grading.zygote", str(theirs.fileno()), self.slot]
        self.process = _Session(
            sandbox.command(Path(self.slot)) + python,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(theirs.fileno(),),
            cwd=self.slot,
            start_new_session=True,
        )
        theirs.close()
        self.drain = _OutputDrain(self.process.stdout, 1 << 16)
        self.drain.start()
        message = self._receive(self.startup_seconds, "starting")
        if message["kind"] != "ready":
            raise _ZygoteLost(f"the zygote could not start: {message.get('reason', message['kind'])}")

    def _receive(self, seconds: float, doing: str) -> dict:
        try:
            return self.channel.receive(time.monotonic() + seconds)
        except (ChannelClosed, ChannelTimeout) as error:
            tail = bytes(self.drain.kept[-300:]).decode(errors="replace").strip().splitlines()[-1:]
            raise _ZygoteLost(
                f"the zygote failed while {doing} ({type(error).__name__}{': ' + tail[0] if tail else ''})"
            )

    def spawn(self, worker_fds: tuple[int, int], limits: Limits, preload: list[str]) -> ForkedWorker:
        """Fork a worker that reads requests from and writes replies to ``worker_fds``, once the zygote has
        imported the modules ``preload`` (trusted names: the instructor's); ``available()`` first."""
        output_read, output_write = os.pipe()
        try:
            socket.send_fds(self.socket, [b"s"], [*worker_fds, output_write])
            self.channel.send({"memory_bytes": limits.memory_bytes, "preload": preload})
        except OSError:
            self.close()
            raise
        finally:
            os.close(output_write)
        self.worker = ForkedWorker(self, os.fdopen(output_read, "rb"))
        return self.worker

    def end_worker(self) -> None:
        """Kill everything the worker started and empty the sandbox's writable places; a new sandbox if that fails."""
        try:
            self.socket.send(b"k")
            while (message := self._receive(60, "ending a worker"))["kind"] != "clean":
                self._note(message)
        except (_ZygoteLost, OSError):
            self.close()

    def worker_status(self, seconds: float) -> int:
        """The exit status of the worker (negative: the signal that killed it), waiting up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while self.worker.status is None:
            try:
                self._note(self._receive(max(0.0, deadline - time.monotonic()), "waiting for a worker"))
            except _ZygoteLost:
                if time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired("worker", seconds) from None
                self.worker.status = -signal.SIGKILL  # the zygote died, and its sandbox with it
        return self.worker.status

    def _note(self, message: dict) -> None:
        if message["kind"] == "exited" and self.worker is not None:
            self.worker.status = message["status"]

    def close(self) -> None:
        """Kill the sandbox and everything in it, and remove the slot folder."""
        if self.process is not None:
            self.process.end()
            self.socket.close()
            self.drain.join(timeout=5)
            self.process = None
        if self.slot is not None:
            shutil.rmtree(self.slot, ignore_errors=True)
            self.slot = None


class ForkedWorker:
    """A worker forked by a ``Zygote``: what ``Worker`` needs of its process."""

    def __init__(self, zygote: Zygote, stdout):
        self.zygote, self.stdout, self.status = zygote, stdout, None

    def wait(self, timeout: float | None = None) -> int:
        if self.status is None and self.zygote.process is None:
            self.status = -signal.SIGKILL
        return self.status if self.status is not None else self.zygote.worker_status(timeout or 3600)

    def end(self) -> None:
        """Kill it and everything it started, and empty its scratch."""
        if self.zygote.process is not None:
            self.zygote.end_worker()


def imported_modules(setup: dict) -> list[str]:
    """The modules a worker of ``setup`` imports before any student code: the notebook's imports and the
    forbidden references' modules."""
    modules = [target.partition(":")[0] for targets in setup["forbidden"].values() for target in targets]
    for node in ast.walk(ast.parse(setup["imports"])):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.append(node.module)
    return list(dict.fromkeys(modules))


class Worker:
    """One notebook's worker process; restartable after a hang or a crash. With a ``zygote`` (only for a
    trusted ``setup``: the instructor's imports) the process is forked by it where it is ``available()``,
    else started fresh."""

    def __init__(self, setup: dict, limits: Limits, *, sandboxed: bool, zygote: Zygote | None = None):
        self.setup, self.limits, self.sandboxed, self.zygote = setup, limits, sandboxed, zygote
        self.process = None
        self.exercise = None
        self.deadline = None
        self.load_reports: dict[str, dict] = {}

    def _launch(self, to_worker_read: int, from_worker_write: int) -> None:
        if self.zygote is not None and self.zygote.available():
            self.scratch = None  # the zygote gives each worker its scratch, and empties it
            fds = (to_worker_read, from_worker_write)
            self.process = self.zygote.spawn(fds, self.limits, imported_modules(self.setup))
            return
        self.scratch = tempfile.TemporaryDirectory(prefix="course-worker-")
        python = [
            sys.executable,
            "-m",
            "course_utils.grading.worker",
            str(to_worker_read),
            str(from_worker_write),
            self.scratch.name,
        ]  # the scratch folder names the worker in `ps`
        prefix = sandbox.command(Path(self.scratch.name)) if self.sandboxed else []
        package_root = str(sandbox.PACKAGE.parent)  # the worker imports the course_utils that the grader runs
        env = (
            None
            if self.sandboxed
            else {
                **os.environ,
                "HOME": self.scratch.name,
                "MPLCONFIGDIR": self.scratch.name,
                "PYTHONPATH": package_root,
            }
        )
        self.process = _Session(
            prefix + python,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(to_worker_read, from_worker_write),
            cwd=self.scratch.name,
            env=env,
            start_new_session=True,
            preexec_fn=_limit_memory(self.limits.memory_bytes),
        )

    def start(self, skip_cells: frozenset = frozenset()) -> None:
        """Start the worker and load the definitions. Raises ``WorkerLost`` naming the cell that was loading."""
        self.close()
        to_worker_read, to_worker_write = os.pipe()
        from_worker_read, from_worker_write = os.pipe()
        try:
            self._launch(to_worker_read, from_worker_write)
        finally:
            os.close(to_worker_read)
            os.close(from_worker_write)
        self.channel = Channel(from_worker_read, to_worker_write, trusted_input=False)
        self.drain = _OutputDrain(self.process.stdout, self.limits.output_bytes)
        self.drain.start()
        setup = dict(self.setup, cells=[cell for cell in self.setup["cells"] if cell[0] not in skip_cells])
        deadline = time.monotonic() + self.limits.startup_seconds
        loading = None
        try:
            self.channel.send(setup)
            while True:
                message = self.channel.receive(deadline)
                if message["kind"] == "loading":
                    loading = message["cell"]
                elif message["kind"] == "loaded":
                    self.load_reports[message["cell"]] = message
                    loading = None
                elif message["kind"] == "ready":
                    return
        except (ChannelClosed, ChannelTimeout, BrokenPipeError) as error:
            lost = WorkerLost(
                f"loading the definitions timed out after {self.limits.startup_seconds:g} s"
                if isinstance(error, ChannelTimeout)
                else f"the grading process ended while loading the definitions ({self._ending()})"
            )
            self.close()
            lost.cell = loading
            raise lost from None

    def _ending(self) -> str:
        """How the worker ended: its signal or exit status, and the last line it printed."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = "unknown (still running)"
        if isinstance(code, int) and code < 0:
            name = signal.Signals(-code).name
            return f"killed by {name}" + (", probably out of memory" if name in ("SIGKILL", "SIGSEGV") else "")
        tail = bytes(self.drain.kept[-300:]).decode(errors="replace").strip().splitlines()
        return f"exit status {code}" + (f": {tail[-1]}" if tail else "")

    def begin(self, exercise: str, seconds: float | None = None) -> None:
        """Fork a fresh child for ``exercise`` with its forbidden references watched; it has ``seconds``
        (default: the exercise limit) for all its calls."""
        self.exercise = exercise
        self.seconds = seconds or self.limits.exercise_seconds
        self.deadline = time.monotonic() + self.seconds
        self._send({"op": "fork", "exercise": exercise})

    def end(self) -> None:
        """Finish the current exercise's child."""
        if self.process is None or self.exercise is None:
            return
        self.exercise = None
        try:
            self.channel.send({"op": "end"})
            while self.channel.receive(time.monotonic() + 30)["kind"] != "exited":
                pass
        except (ChannelClosed, ChannelTimeout, OSError):
            self.close()

    def _send(self, message) -> None:
        try:
            self.channel.send(message)
        except (BrokenPipeError, OSError):
            self._lost("the grading process had already ended")

    def _lost(self, reason: str):
        self.close()
        raise WorkerLost(reason)

    def _reply(self) -> dict:
        try:
            message = self.channel.receive(self.deadline)
        except ChannelTimeout:
            self._lost(f"timed out after {self.seconds:g} s")
        except ChannelClosed as error:
            self._lost(f"the grading process ended ({self._ending()}; {error})")
        if message["kind"] == "forbidden":
            self.exercise = None
            target = message["target"]
            self._await_exit()
            if target == "sys.setprofile":
                raise ForbiddenCall("your code tried to switch off the grader's call watch (sys.setprofile)")
            raise ForbiddenCall(
                f"your code calls the reference implementation {target}, which this exercise asks you to write"
            )
        if message["kind"] == "exited":
            self.exercise = None
            status = message["status"]
            how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
            raise WorkerLost(f"your code ended the process ({how})")
        return message

    def _await_exit(self) -> None:
        try:
            self.channel.receive(time.monotonic() + 30)
        except (ChannelClosed, ChannelTimeout):
            self.close()

    def call(self, name: str, args: tuple, kwargs: dict, wrt: list | None = None, output_index: int | None = None):
        """Run the student's ``name(*args, **kwargs)`` in the worker; returns ``(result, gradients)``."""
        request, generators = call_request(name, args, kwargs, wrt, output_index)
        self._send(request)
        reply = self._reply()
        if reply["kind"] == "error":
            _raise_student_error(reply)
        for generator, state in zip(generators, reply["generators"]):
            generator.set_state(state)
        torch.set_rng_state(reply["rng"])
        with torch.no_grad():
            for original, after in zip(tensors_in((args, kwargs)), reply["inputs_after"]):
                if original.shape != after.shape or not torch.equal(original, after.to(original.dtype)):
                    original.set_(after.to(original.dtype)) if original.shape != after.shape else original.copy_(after)
        return decode_value(reply["result"]), decode_value(reply["gradients"])

    def close(self) -> None:
        """Kill the worker and everything it started; remove its scratch folder."""
        if self.process is None:
            return
        self.process.end()
        for fd in (self.channel.read_fd, self.channel.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.drain.join(timeout=5)
        if self.scratch is not None:
            self.scratch.cleanup()
        self.process = None


class RemoteFunction:
    """A stand-in for the student's function ``name``: calls run in the worker, results come back as data."""

    def __init__(self, worker: Worker, name: str):
        self.worker, self.__name__ = worker, name

    def __call__(self, *args, **kwargs):
        return self.worker.call(self.__name__, args, kwargs)[0]

    def gradients(self, args: tuple, kwargs: dict, wrt: list, output_index: int | None):
        """``(result, [d sum(output) / d t for t in wrt])`` computed in the worker."""
        return self.worker.call(self.__name__, args, kwargs, wrt=wrt, output_index=output_index)

    def __repr__(self):
        return f"<student function {self.__name__}>"
