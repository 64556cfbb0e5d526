"""Length-prefixed messages between the grader and its sandboxed worker.

Each message is ``torch.save`` bytes behind an 8-byte length. The grader sends full pickles
(it is trusted); what comes back from the worker, where student code runs, is read with
``torch.load(weights_only=True)``, so it can carry tensors, numbers, strings and containers
but never an object that runs code when it is loaded.
"""

from __future__ import annotations

import io
import os
import select
import struct
import time
from dataclasses import dataclass

import torch

HEADER = struct.Struct("!Q")
MAX_MESSAGE = 1 << 31


@dataclass(frozen=True)
class GeneratorSlot:
    """Stands in for the ``index``-th ``torch.Generator`` of a call's arguments; the worker rebuilds it from its state."""

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


class ChannelClosed(EOFError):
    """The other side closed its end, or sent something that is not a message."""


class ChannelTimeout(TimeoutError):
    """No whole message arrived before the deadline."""


def encode(message) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    payload = buffer.getvalue()
    return HEADER.pack(len(payload)) + payload


class Channel:
    """One reading and one writing file descriptor. ``trusted_input`` picks how replies are unpickled."""

    def __init__(self, read_fd: int, write_fd: int, *, trusted_input: bool):
        self.read_fd, self.write_fd, self.trusted_input = read_fd, write_fd, trusted_input

    def send(self, message) -> None:
        data = memoryview(encode(message))
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
