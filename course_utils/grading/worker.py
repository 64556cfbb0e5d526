"""The sandboxed side of grading: load a student's definitions, then serve calls to them.

Run by the grader as ``python -m course_utils.grading.worker READ_FD WRITE_FD SCRATCH`` inside
the sandbox (SCRATCH, its working folder, only names it in ``ps``). The worker

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
import dataclasses
import importlib
import os
import sys
import threading
import traceback

_exit, _fork, _waitpid, _setprofile = os._exit, os.fork, os.waitpid, sys.setprofile  # before any student code


def resolve(target: str):
    """``"package.module:Qualified.name"`` -> the object."""
    module_name, _, qualname = target.partition(":")
    value = importlib.import_module(module_name)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


class Watch:
    """The profile hook that ends the process when student code calls a forbidden reference."""

    def __init__(self, channel, targets: list[str]):
        self.channel = channel
        self.code_keys, self.builtins, self.names = {}, {}, {}
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


def encode_value(value, depth: int = 0):
    """A student's return value as something ``torch.load(weights_only=True)`` accepts."""
    import numpy as np
    import torch

    if depth > 20:
        raise TypeError("the result is nested too deeply")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone().as_subclass(torch.Tensor)
    if isinstance(value, (bool, int, float, str, type(None))):
        return type(value)(value) if value is not None else None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value)).clone(), "dtype": str(value.dtype)}
    if isinstance(value, (list, tuple)):
        items = [encode_value(item, depth + 1) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {str(key): encode_value(item, depth + 1) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = {
            field.name: encode_value(getattr(value, field.name), depth + 1) for field in dataclasses.fields(value)
        }
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    raise TypeError(f"the result contains a {type(value).__name__}, which the grader cannot read back")


def _error(error: BaseException) -> dict:
    frames = traceback.extract_tb(error.__traceback__)
    where = next(
        (f"{frame.filename}, line {frame.lineno}" for frame in reversed(frames) if frame.filename.startswith("<")), ""
    )
    return {"kind": "error", "type": type(error).__name__, "message": str(error)[:2000], "where": where}


def serve_call(namespace: dict, request: dict) -> dict:
    """Run one call and describe its outcome: the result, the generators' and global RNG's states,
    the tensor arguments as they are afterwards, and gradients where asked."""
    import torch

    from course_utils.grading.channel import tensors_in

    args, kwargs = request["args"], request["kwargs"]
    generators = request["generators"]
    torch.set_rng_state(request["rng"])
    function = namespace.get(request["name"])
    if function is None:
        return {
            "kind": "error",
            "type": "NameError",
            "message": f"name '{request['name']}' is not defined",
            "where": "",
        }
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
        return _error(error)
    try:
        reply = {
            "kind": "result",
            "result": encode_value(result),
            "gradients": encode_value(gradients),
            "generators": [generator.get_state() for generator in generators],
            "rng": torch.get_rng_state(),
            "inputs_after": encode_value(tensors_in((args, kwargs))),
        }
    except Exception as error:
        return _error(error)
    return reply


def serve_exercise(channel, namespace: dict, targets: list[str]) -> None:
    """The child's loop: serve calls until ``end``."""
    import torch

    Watch(channel, targets).start()
    while True:
        request = channel.receive()
        if request["op"] == "end":
            _exit(0)
        generators = [torch.Generator(device).manual_seed(0) for device in request["generator_devices"]]
        for generator, state in zip(generators, request["generator_states"]):
            generator.set_state(state)
        request["generators"] = generators
        # arguments, kwargs and wrt come in one pickle, so a parameter in wrt is the one in the arguments
        request["args"], request["kwargs"] = _restore_generators((request["args"], request["kwargs"]), generators)
        channel.send(serve_call(namespace, request))


def _restore_generators(value, generators):
    from course_utils.grading.channel import GeneratorSlot, map_nested

    return map_nested(value, lambda item: generators[item.index] if isinstance(item, GeneratorSlot) else item)


def load_definitions(channel, setup: dict) -> dict:
    """Run the notebook's imports, then the definitions of each solution cell; report per cell."""
    from course_utils.grading.definitions import split_definitions

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
    from course_utils.grading.channel import Channel

    channel = Channel(read_fd, write_fd, trusted_input=True)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    import torch

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
        if command["op"] == "quit":
            _exit(0)
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
