"""Run the solution notebooks one after another, writing everything out as it goes.

    python -m course_utils run-labs --profile gpu --out runs/gpu            # every lab
    python -m course_utils run-labs --profile cpu --labs lab05_objectives --out runs/cpu

Each lab's executed notebook is written to ``OUT/<lab>.ipynb`` after every cell, and when a lab
ends one JSON line goes to ``OUT/summary.jsonl``: lab, profile, device, seconds, failing cells,
peak device memory and peak host memory of its kernel; in a full `cpu` run, also the numbers that the
lab's prose quotes from "our `cpu` run" and that no output printed (``quotes_not_printed``: stale text to
fix). A lab that hangs, or a machine that dies, therefore leaves every finished lab and the cells run so
far on disk. ``COURSE_MAX_STEPS`` (read by
``train.fit``) caps every training loop, so ``--max-steps 2`` checks a profile's sizes end to end quickly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course_utils.device import PROFILES
from course_utils.quoted_results import unprinted_quotes

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"

# Run in the kernel after the lab's last cell; its one printed line is the lab's resource use.
RESOURCE_PROBE = """\
import json as _json, resource as _resource, torch as _torch
from course_utils.device import get_device as _get_device
_cuda = _torch.cuda.is_available()
print(_json.dumps({
    "device": str(_get_device()),
    "peak_device_memory_gb": _torch.cuda.max_memory_allocated() / 2**30 if _cuda else None,
    "peak_host_memory_gb": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 2**20,
}))
"""


def lab_notebooks(solutions: Path = SOLUTIONS, labs: Sequence[str] | None = None) -> list[Path]:
    """The solution notebooks ``solutions/<lab>/<lab>.ipynb`` of ``labs`` (default: every lab), in course order."""
    available = {path.parent.name: path for path in sorted(Path(solutions).glob("*/*.ipynb"))}
    unknown = [lab for lab in labs or () if lab not in available]
    if unknown:
        raise ValueError(f"labs must be among {sorted(available)}, got unknown {unknown}")
    return [available[lab] for lab in (labs or sorted(available))]


def run_lab(path: Path, out: Path, env: dict[str, str], timeout: int = 3600) -> dict:
    """Execute one notebook cell by cell in a kernel with environment ``env``, saving ``out`` after each cell;
    return its summary (without lab and profile)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    )  # fmt: skip
    failing, usage = [], {}
    start = time.perf_counter()
    with client.setup_kernel(env=env):
        for index, cell in enumerate(notebook.cells):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError:  # a timeout; errors inside a cell are kept as its output
                failing.append(cell.get("id", str(index)))
            if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
                failing.append(cell.get("id", str(index)))
            nbformat.write(notebook, out)
        seconds = time.perf_counter() - start
        notebook.cells.append(nbformat.v4.new_code_cell(RESOURCE_PROBE))
        probe = client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
        notebook.cells.pop()  # the saved notebook is the lab's own
        for output in probe.get("outputs", []):
            if output.get("name") == "stdout":
                usage = json.loads(output["text"].strip().splitlines()[-1])
    return {"seconds": round(seconds, 1), "failing_cells": sorted(set(failing)), **usage}


def run_labs(
    profile: str,
    out: str | Path,
    labs: Sequence[str] | None = None,
    max_steps: int | None = None,
    solutions: str | Path = SOLUTIONS,
    kernel_env: Mapping[str, str] | None = None,
) -> list[dict]:
    """Run ``labs`` (default: all) in ``profile`` one after another; return the summary lines written to ``OUT``.

    The kernels get this process's environment with the profile, the step cap and ``kernel_env`` on top.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
    notebooks = lab_notebooks(Path(solutions), labs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COURSE_PROFILE": profile}  # for the kernels only: this process's environment is untouched
    env.pop("COURSE_MAX_STEPS", None)
    if max_steps is not None:
        env["COURSE_MAX_STEPS"] = str(max_steps)
    env.update(kernel_env or {})
    summaries = []
    for path in notebooks:
        lab = path.parent.name
        summary = {"lab": lab, "profile": profile, "max_steps": max_steps, **run_lab(path, out / f"{lab}.ipynb", env)}
        if profile == "cpu" and max_steps is None:  # the run the prose quotes
            summary["quotes_not_printed"] = unprinted_quotes(nbformat.read(out / f"{lab}.ipynb", as_version=4))
        with open(out / "summary.jsonl", "a") as file:
            file.write(json.dumps(summary) + "\n")
        summaries.append(summary)
    return summaries
