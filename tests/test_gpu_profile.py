"""Every lab runs end to end in the ``gpu`` profile's sizes on the CPU, two optimiser steps per training loop.

The ``gpu`` values of every ``by_profile(...)`` and experiment config (widths, data sizes, seeds, sweeps,
label budgets) execute here, so a shape error or an out-of-range sweep meets CI, not the first student
with a GPU. ``COURSE_MAX_STEPS=2`` caps every training loop and ``COURSE_DEVICE=cpu`` keeps the labs off
any GPU; evaluation keeps its full size. Each lab's kernel must stay under ``HOST_MEMORY_LIMIT_GB`` of host
memory: a machine that runs out of it stops answering.

The labs run in the background from the session's start, one at a time on one thread, beside the rest of
the suite (``conftest.gpu_profile_runs``); these tests run last and wait for them.
"""

from __future__ import annotations

import nbformat
import pytest

from course_utils.labs import lab_notebooks

HOST_MEMORY_LIMIT_GB = 16
LABS = [path.parent.name for path in lab_notebooks()]


def failing_outputs(notebook_path, cell_ids: list[str]) -> str:
    """The error name and value of each failing cell."""
    notebook = nbformat.read(notebook_path, as_version=4)
    lines = [
        f"cell {cell.id}: {output['ename']}: {output['evalue']}"
        for cell in notebook.cells
        if cell.get("id") in cell_ids
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    return "\n".join(lines) or "(a cell timed out)"


@pytest.mark.gpu_profile
@pytest.mark.parametrize("lab", LABS)
def test_lab_runs_in_the_gpu_profile_on_the_cpu_within_host_memory(lab, gpu_profile_runs, capsys):
    summary, notebook = gpu_profile_runs.result()[lab]  # conftest starts every lab's run when the session starts
    with capsys.disabled():
        print(
            f"\n[gpu profile, COURSE_MAX_STEPS={summary['max_steps']}, on cpu, 1 thread] {lab}: "
            f"{summary['seconds']} s, "
            f"peak host memory {summary['peak_host_memory_gb']:.2f} GB"
        )
    assert summary["failing_cells"] == [], failing_outputs(notebook, summary["failing_cells"])
    assert summary["peak_host_memory_gb"] < HOST_MEMORY_LIMIT_GB, f"{lab} used {summary['peak_host_memory_gb']} GB"
