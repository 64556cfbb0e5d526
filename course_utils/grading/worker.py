"""The sandboxed side of grading: load a student's definitions, then serve calls to them.

Run by the grader as ``python -m course_utils.grading.worker READ_FD WRITE_FD SCRATCH`` inside
the sandbox (SCRATCH, its working folder, only names it in ``ps``), or forked by a pool slot's zygote
(``zygote.py``), which calls ``main``. The worker

1. receives the setup: the notebook's own imports (from the instructor's copy), the student's
   solution cells, and for every exercise the reference code it must not call;
2. runs the definitions of each solution cell (``definitions.split_definitions``), reporting
   what it skipped or what failed;
3. for each exercise, forks a child that serves ``call`` requests until ``end``. The child
   watches every Python and C call (``sys.setprofile``): a call into that exercise's reference,
   or an attempt to remove the watch, ends the child at once with a ``forbidden`` message.

The grader compares what comes back; nothing here decides a mark.
"""

from __future__ import annotations

import ast
import builtins
import os
import sys
import threading

import torch

from course_utils.grading.channel import Channel, error_reply, resolve, result_reply, with_generators
from course_utils.grading.definitions import split_definitions

_exit, _fork, _waitpid, _setprofile = os._exit, os.fork, os.waitpid, sys.setprofile  # before any student code


class Watch:
    """The profile hook that ends the process when student code calls a forbidden reference."""

    def __init__(self, channel, targets: list[str]):
        self.channel = channel
        self.code_keys, self.builtins = {}, {}
        for target in targets:
            value = resolve(target)
            code = getattr(value, "__code__", None)
            if code is not None:  # a Python function: match by file and qualified name, so reloads match too
                self.code_keys[(code.co_filename, code.co_qualname)] = target
            else:
                self.builtins[id(value)] = (value, target)
        self.builtins[id(_setprofile)] = (_setprofile, "sys.setprofile")

    def __call__(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            target = self.code_keys.get((code.co_filename, code.co_qualname))
            if target is not None:
                self.trip(target)
        elif event == "c_call" and id(arg) in self.builtins and self.builtins[id(arg)][0] is arg:
            self.trip(self.builtins[id(arg)][1])

    def trip(self, target: str):
        try:
            self.channel.send({"kind": "forbidden", "target": target})
        finally:
            _exit(3)

    def start(self):
        threading.setprofile(self)
        _setprofile(self)


def serve_call(namespace: dict, request: dict) -> dict:
    """Run one call (a request ``with_generators``) and describe its outcome: the result, the generators' and
    global RNG's states, the tensor arguments as they are afterwards, and gradients where asked."""
    args, kwargs = request["args"], request["kwargs"]
    generators = request["generators"]
    torch.set_rng_state(request["rng"])
    function = namespace.get(request["name"])
    if function is None:
        return error_reply(NameError(f"name '{request['name']}' is not defined"))
    wrt = request.get("wrt")
    try:
        with torch.enable_grad():
            if wrt is not None:
                for tensor in wrt:
                    tensor.grad = None
            result = function(*args, **kwargs)
            gradients = None
            if wrt is not None:
                output = result if request["output_index"] is None else result[request["output_index"]]
                output.sum().backward()
                gradients = [tensor.grad for tensor in wrt]
    except (Exception, SystemExit, KeyboardInterrupt) as error:
        return error_reply(error)
    try:
        return result_reply(result, gradients, generators, (args, kwargs))
    except Exception as error:
        return error_reply(error)


def serve_exercise(channel, namespace: dict, targets: list[str]) -> None:
    """The child's loop: serve calls until ``end``."""
    Watch(channel, targets).start()
    while True:
        request = channel.receive()
        if request["op"] == "end":
            _exit(0)
        channel.send(serve_call(namespace, with_generators(request)))


def load_definitions(channel, setup: dict) -> dict:
    """Run the notebook's imports, then the definitions of each solution cell; report per cell."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(setup["imports"], "<notebook imports>", "exec"), namespace)
    for cell_id, source in setup["cells"]:
        channel.send({"kind": "loading", "cell": cell_id})
        filename = f"<solution cell {cell_id}>"
        try:
            kept, skipped = split_definitions(source, filename)
        except SyntaxError as error:
            channel.send(
                {
                    "kind": "loaded",
                    "cell": cell_id,
                    "skipped": [],
                    "error": f"SyntaxError: {error.msg} (line {error.lineno})",
                }
            )
            continue
        error_text = ""
        for node in kept:
            try:
                exec(compile(ast.Module([node], []), filename, "exec"), namespace)
            except (Exception, SystemExit, KeyboardInterrupt) as error:
                error_text = error_text or f"{type(error).__name__}: {str(error)[:500]} (line {node.lineno})"
        channel.send({"kind": "loaded", "cell": cell_id, "skipped": skipped, "error": error_text})
    return namespace


def main(read_fd: int, write_fd: int) -> None:
    channel = Channel(read_fd, write_fd, trusted_input=True)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    setup = channel.receive()
    torch.set_num_threads(setup["threads"])
    targets = {exercise: list(names) for exercise, names in setup["forbidden"].items()}
    for names in targets.values():
        for name in names:
            resolve(name)  # fail now, before student code, if a reference has moved
    namespace = load_definitions(channel, setup)
    channel.send({"kind": "ready"})
    while True:
        command = channel.receive()
        pid = _fork()
        if pid == 0:
            try:
                serve_exercise(channel, namespace, targets.get(command["exercise"], []))
            finally:
                _exit(4)
        _, status = _waitpid(pid, 0)
        channel.send({"kind": "exited", "status": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
