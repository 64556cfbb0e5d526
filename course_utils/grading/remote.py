"""The grader's side of the sandboxed worker: start it, and call student functions through it.

``Worker`` owns one worker process (see ``worker.py``) for one notebook and speaks to it in the wire
format of ``channel.py``. ``RemoteFunction`` looks like the student's function to a check: calling it
sends the arguments to the worker, which runs the student's code and sends back the result, the new
states of any ``torch.Generator`` and of the global RNG, and the tensor arguments as the call left
them (so a check can see an in-place edit). The check itself, and every comparison, runs here, where
no student code ever runs.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
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


class Worker:
    """One notebook's worker process; restartable after a hang or a crash."""

    def __init__(self, setup: dict, limits: Limits, *, sandboxed: bool):
        self.setup, self.limits, self.sandboxed = setup, limits, sandboxed
        self.process = None
        self.exercise = None
        self.deadline = None
        self.load_reports: dict[str, dict] = {}

    def start(self, skip_cells: frozenset = frozenset()) -> None:
        """Start the worker and load the definitions. Raises ``WorkerLost`` naming the cell that was loading."""
        self.close()
        self.scratch = tempfile.TemporaryDirectory(prefix="course-worker-")
        to_worker_read, to_worker_write = os.pipe()
        from_worker_read, from_worker_write = os.pipe()
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
        self.process = subprocess.Popen(
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
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for fd in (self.channel.read_fd, self.channel.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.drain.join(timeout=5)
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
