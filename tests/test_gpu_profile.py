"""Every lab runs end to end in the ``gpu`` profile's sizes on the CPU, two optimiser steps per training loop.

The ``gpu`` values of every ``by_profile(...)`` and experiment config (widths, data sizes, seeds, sweeps,
label budgets) execute here, so a shape error or an out-of-range sweep meets CI, not the first student
with a GPU. ``COURSE_MAX_STEPS=2`` caps every training loop and ``COURSE_DEVICE=cpu`` keeps the labs off
any GPU; evaluation keeps its full size. Each lab's kernel must stay under ``HOST_MEMORY_LIMIT_GB`` of host
memory: a machine that runs out of it stops answering.

The labs run two at a time, each kernel on one thread (longest first), which on two cores finishes sooner
than one lab at a time on two threads: much of each lab is single-threaded Python and scikit-learn.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest

from course_utils.labs import lab_notebooks, run_labs

HOST_MEMORY_LIMIT_GB = 16
MAX_STEPS = 2
LABS = [path.parent.name for path in lab_notebooks()]
LONGEST_FIRST = ("lab06_masked_vs_contrastive", "lab04_ehr", "lab05_objectives", "lab02_bert", "lab03_mae")


@pytest.fixture(scope="module")
def gpu_profile_runs(tmp_path_factory) -> dict[str, tuple[dict, object]]:
    """Each lab's ``run_labs`` summary and executed notebook path, run in the gpu profile on the CPU."""
    out = tmp_path_factory.mktemp("gpu_profile")
    order = sorted(LABS, key=lambda lab: LONGEST_FIRST.index(lab) if lab in LONGEST_FIRST else len(LONGEST_FIRST))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_DEVICE", "cpu")
        patch.setenv("OMP_NUM_THREADS", "1")  # read by the kernels, which run_labs starts with this environment

        def run(lab: str) -> tuple[dict, object]:
            [summary] = run_labs("gpu", out / lab, labs=[lab], max_steps=MAX_STEPS)
            return summary, out / lab / f"{lab}.ipynb"

        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(zip(order, pool.map(run, order)))


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
    summary, notebook = gpu_profile_runs[lab]
    with capsys.disabled():
        print(
            f"\n[gpu profile, COURSE_MAX_STEPS={MAX_STEPS}, on cpu, 1 thread] {lab}: {summary['seconds']} s, "
            f"peak host memory {summary['peak_host_memory_gb']:.2f} GB"
        )
    assert summary["failing_cells"] == [], failing_outputs(notebook, summary["failing_cells"])
    assert summary["peak_host_memory_gb"] < HOST_MEMORY_LIMIT_GB, f"{lab} used {summary['peak_host_memory_gb']} GB"
