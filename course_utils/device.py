"""Where the course runs: device choice, mixed precision, seeding and run profiles.

Every lab starts with::

    from course_utils.device import get_device, get_profile, by_profile, describe, seed_everything
    device, profile = get_device(), get_profile()
    steps = by_profile(ci=30, cpu=600, gpu=3000)

The profile sizes data, model and steps so that one notebook fits its budget:

* ``ci``  -- tiny, for continuous integration on a 2-core CPU (seconds per lab);
* ``cpu`` -- a laptop without a GPU (a few minutes per lab);
* ``gpu`` -- a CUDA or Apple GPU, scaled up.

``COURSE_DEVICE`` (``cuda``, ``cuda:1``, ``mps``, ``cpu``) and ``COURSE_PROFILE``
(``ci``, ``cpu``, ``gpu``) override the automatic choices; ``COURSE_MAX_STEPS=N`` caps every
training loop (``train.fit``) at N optimiser steps in any profile.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random

import numpy as np
import torch

PROFILES = ("ci", "cpu", "gpu")
PRECISION_NAMES = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast, loss scaling", None: "fp32"}


def get_device() -> torch.device:
    """The best available device: ``COURSE_DEVICE`` if set, else cuda, then mps, then cpu."""
    requested = os.environ.get("COURSE_DEVICE", "").strip()
    if requested:
        try:
            return torch.device(requested)
        except RuntimeError as error:
            raise ValueError(
                f"COURSE_DEVICE={requested!r} is not a device; expected cpu, cuda, cuda:N or mps"
            ) from error
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def max_steps() -> int | None:
    """``COURSE_MAX_STEPS`` as a positive int (every ``train.fit`` stops there), or None when unset."""
    requested = os.environ.get("COURSE_MAX_STEPS", "").strip()
    if not requested:
        return None
    if not requested.isdigit() or int(requested) < 1:
        raise ValueError(f"COURSE_MAX_STEPS={requested!r} is not a step count; expected a positive integer")
    return int(requested)


def get_profile() -> str:
    """The run profile: ``COURSE_PROFILE`` if set, else ``ci`` under CI, ``gpu`` with a GPU, else ``cpu``."""
    requested = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if requested:
        if requested not in PROFILES:
            raise ValueError(f"COURSE_PROFILE={requested!r} is not a profile; expected one of {', '.join(PROFILES)}")
        return requested
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return "ci"
    return "cpu" if get_device().type == "cpu" else "gpu"


def by_profile(*, ci, cpu, gpu, profile: str | None = None):
    """Pick the value for the current (or given) profile: ``by_profile(ci=20, cpu=400, gpu=4000)``."""
    profile = profile or get_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a profile; expected one of {', '.join(PROFILES)}")
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[profile]


PROFILE_NOTES = {
    "ci": "a smoke test with tiny data and a few steps: these numbers are not meaningful",
    "cpu": "the laptop-CPU run that the text discusses",
    "gpu": "the scaled-up GPU run; the text's figures come from the cpu profile",
}


def profile_note(profile: str | None = None) -> str:
    """Print and return one line naming the profile that produced a result cell's numbers."""
    profile = profile or get_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a profile; expected one of {', '.join(PROFILES)}")
    line = f"[profile {profile}: {PROFILE_NOTES[profile]}]"
    print(line)
    return line


def autocast_dtype(device: torch.device | str | None = None) -> torch.dtype | None:
    """The dtype that training on ``device`` autocasts to, or None for plain fp32.

    bf16 on CUDA GPUs of compute capability 8.0 or higher (A100, RTX 30xx, H100), which run it
    natively; fp16 on capability 7.x (V100, T4: tensor cores, but bf16 only emulated), which
    needs loss scaling (``fit`` uses a ``GradScaler``); fp32 on older GPUs, on MPS and on CPU,
    where autocast would slow the course's small models down.
    """
    device = torch.device(device) if device is not None else get_device()
    if device.type != "cuda":
        return None
    capability = torch.cuda.get_device_capability(device)
    if capability >= (8, 0):
        return torch.bfloat16
    return torch.float16 if capability >= (7, 0) else None


def autocast(device: torch.device | str | None = None):
    """Autocast to ``autocast_dtype(device)`` on that device; a no-op context where that is fp32."""
    device = torch.device(device) if device is not None else get_device()
    dtype = autocast_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pin_memory() -> bool:
    """Whether DataLoaders should pin host memory (only useful when batches go to a CUDA device)."""
    return get_device().type == "cuda"


def describe() -> dict:
    """Print and return what the course will run on: versions, device, GPU and profile."""
    device = get_device()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "profile": get_profile(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["compute_capability"] = f"{props.major}.{props.minor}"
        info["precision"] = PRECISION_NAMES[autocast_dtype(device)]
    for key, value in info.items():
        print(f"{key:>15}: {value}")
    return info
