"""The wire format between the grading process (``remote``) and its sandboxed worker (``worker``).

Both sides import it, so what one side sends and the other reads is defined once, here.

- Transport: each message is ``torch.save`` bytes behind an 8-byte length (``Channel``). The grader sends
  full pickles (it is trusted); what comes back from the worker, where student code runs, is read with
  ``torch.load(weights_only=True)``, so it can carry tensors, numbers, strings and containers but never an
  object that runs code when it is loaded.
- Values: a student's result goes out as ``encode_value`` makes it and is rebuilt by ``decode_value``.
- References: code is named ``"package.module:Qualified.name"`` (``resolve``), as in the forbidden lists.
- Stand-ins: a ``torch.Generator`` among a call's arguments travels as a ``GeneratorSlot``, with its state.
- Messages, grader to worker: the setup ``{imports, cells, forbidden, threads}``; ``{"op": "fork", exercise}``;
  the call request (``call_request``); ``{"op": "end"}``.
- Messages, worker to grader, by ``kind``: ``loading`` and ``loaded`` (per cell), ``ready``, ``result``
  (``result_reply``), ``error`` (``error_reply``), ``forbidden`` (the reference called) and ``exited``.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
import select
import struct
import time
import traceback

import torch

HEADER = struct.Struct("!Q")
MAX_MESSAGE = 1 << 31


def resolve(target: str):
    """``"package.module:Qualified.name"`` -> the object."""
    module_name, _, qualname = target.partition(":")
    value = importlib.import_module(module_name)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


@dataclasses.dataclass(frozen=True)
class GeneratorSlot:
    """Stands in for the ``index``-th ``torch.Generator`` of a call's arguments;
    the worker rebuilds it from its state."""

    index: int


def map_nested(value, leaf):
    """``value`` with ``leaf`` applied to everything that is not a list, tuple or dict, containers rebuilt."""
    if isinstance(value, tuple):
        return tuple(map_nested(item, leaf) for item in value)
    if isinstance(value, list):
        return [map_nested(item, leaf) for item in value]
    if isinstance(value, dict):
        return {key: map_nested(item, leaf) for key, item in value.items()}
    return leaf(value)


def tensors_in(value) -> list:
    """The tensors inside ``value`` and its nested lists, tuples and dicts, in a fixed order."""
    found = []
    map_nested(value, lambda item: found.append(item) if isinstance(item, torch.Tensor) else None)
    return found


def encode_value(value, depth: int = 0):
    """A student's return value as something ``torch.load(weights_only=True)`` accepts."""
    import numpy as np

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


def decode_value(value):
    """Undo ``encode_value``: rebuild arrays and the course's own dataclasses."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return value["__ndarray__"].numpy().astype(value["dtype"], copy=False)
        if "__dataclass__" in value:
            module_name, _, qualname = value["__dataclass__"].partition(":")
            fields = {key: decode_value(item) for key, item in value["fields"].items()}
            if module_name.startswith("course_utils."):
                cls = getattr(importlib.import_module(module_name), qualname, None)
                if dataclasses.is_dataclass(cls):
                    return cls(**fields)
            return fields
        return {key: decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(decode_value(item) for item in value)
    return value


def call_request(
    name: str, args: tuple, kwargs: dict, wrt: list | None, output_index: int | None
) -> tuple[dict, list[torch.Generator]]:
    """The request to run ``name(*args, **kwargs)`` in the worker, and the generators that ``GeneratorSlot``
    stands in for. Arguments, kwargs and ``wrt`` go in one pickle, so a parameter in ``wrt`` is the one in
    the arguments."""
    generators: list[torch.Generator] = []

    def slot(item):
        if not isinstance(item, torch.Generator):
            return item
        generators.append(item)
        return GeneratorSlot(len(generators) - 1)

    remote_args, remote_kwargs = map_nested((args, kwargs), slot)
    request = {
        "op": "call",
        "name": name,
        "args": remote_args,
        "kwargs": remote_kwargs,
        "wrt": wrt,
        "output_index": output_index,
        "generator_devices": [str(generator.device) for generator in generators],
        "generator_states": [generator.get_state() for generator in generators],
        "rng": torch.get_rng_state(),
    }
    return request, generators


def with_generators(request: dict) -> dict:
    """A received call request with its generators rebuilt (under ``generators``) and put back in their slots."""
    generators = [torch.Generator(device).manual_seed(0) for device in request["generator_devices"]]
    for generator, state in zip(generators, request["generator_states"]):
        generator.set_state(state)

    def restore(item):
        return generators[item.index] if isinstance(item, GeneratorSlot) else item

    args, kwargs = map_nested((request["args"], request["kwargs"]), restore)
    return dict(request, generators=generators, args=args, kwargs=kwargs)


def result_reply(result, gradients, generators: list, inputs) -> dict:
    """The reply to a call that returned: the result, gradients where asked, the generators' and global RNG's
    states, and the tensors of ``inputs`` (the call's arguments) as the call left them. Raises ``TypeError``
    for a value the grader could not read back."""
    return {
        "kind": "result",
        "result": encode_value(result),
        "gradients": encode_value(gradients),
        "generators": [generator.get_state() for generator in generators],
        "rng": torch.get_rng_state(),
        "inputs_after": encode_value(tensors_in(inputs)),
    }


def error_reply(error: BaseException) -> dict:
    """The reply to a call that raised: the exception's type and message, and where in the student's cells."""
    frames = traceback.extract_tb(error.__traceback__)
    where = next(
        (f"{frame.filename}, line {frame.lineno}" for frame in reversed(frames) if frame.filename.startswith("<")), ""
    )
    return {"kind": "error", "type": type(error).__name__, "message": str(error)[:2000], "where": where}


class ChannelClosed(EOFError):
    """The other side closed its end, or sent something that is not a message."""


class ChannelTimeout(TimeoutError):
    """No whole message arrived before the deadline."""


def frame(message) -> bytes:
    """``message`` as it goes down the pipe: its length, then its ``torch.save`` bytes."""
    buffer = io.BytesIO()
    torch.save(message, buffer)
    payload = buffer.getvalue()
    return HEADER.pack(len(payload)) + payload


class Channel:
    """One reading and one writing file descriptor. ``trusted_input`` picks how replies are unpickled."""

    def __init__(self, read_fd: int, write_fd: int, *, trusted_input: bool):
        self.read_fd, self.write_fd, self.trusted_input = read_fd, write_fd, trusted_input

    def send(self, message) -> None:
        data = memoryview(frame(message))
        while data:
            written = os.write(self.write_fd, data)
            data = data[written:]

    def _read_exactly(self, size: int, deadline: float | None) -> bytes:
        chunks, left = [], size
        while left:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.read_fd], [], [], remaining)[0]:
                    raise ChannelTimeout()
            chunk = os.read(self.read_fd, min(left, 1 << 20))
            if not chunk:
                raise ChannelClosed("the other side closed the channel")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def receive(self, deadline: float | None = None):
        (size,) = HEADER.unpack(self._read_exactly(HEADER.size, deadline))
        if size > MAX_MESSAGE:
            raise ChannelClosed(f"message of {size} bytes is larger than the limit")
        payload = self._read_exactly(size, deadline)
        try:
            return torch.load(io.BytesIO(payload), weights_only=not self.trusted_input)
        except Exception as error:  # a message that cannot be read safely is a broken channel
            raise ChannelClosed(f"unreadable message: {type(error).__name__}: {error}") from error
