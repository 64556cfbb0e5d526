"""Shared test setup: every notebook and kernel runs in the tiny `ci` profile unless told otherwise.

The ``gpu_profile`` tests run last, and the labs they check start in the background when the session
starts (``gpu_profile_runs``): one lab at a time, on one thread, beside the rest of the suite. Every
kernel and process the suite starts uses one torch thread (``OMP_NUM_THREADS=1``): the `ci` sizes gain
nothing from a second, and two-thread kernels beside the background lab stall each other.
"""

import os
import threading
from concurrent.futures import Future

import pytest

os.environ.setdefault("COURSE_PROFILE", "ci")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")


GPU_PROFILE_MAX_STEPS = 2
GPU_PROFILE_KERNEL_ENV = {"COURSE_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}  # no GPU, and one core for the suite


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("gpu_profile") is not None)  # stable: gpu_profile last


@pytest.fixture(scope="session", autouse=True)
def gpu_profile_runs(request, tmp_path_factory) -> Future | None:
    """Every selected gpu_profile lab run with ``run_labs("gpu", max_steps=2)`` in the background, from the
    session's start: a future of ``{lab: (summary line, executed notebook path)}``, or None if none is selected."""
    selected = [item for item in request.session.items if item.get_closest_marker("gpu_profile")]
    labs = sorted({item.callspec.params["lab"] for item in selected})
    if not labs:
        yield None
        return
    from course_utils.labs import run_labs

    out = tmp_path_factory.mktemp("gpu_profile")

    def run_all() -> dict:
        summaries = run_labs("gpu", out, labs, max_steps=GPU_PROFILE_MAX_STEPS, kernel_env=GPU_PROFILE_KERNEL_ENV)
        return {summary["lab"]: (summary, out / f"{summary['lab']}.ipynb") for summary in summaries}

    future = Future()

    def run_in_background() -> None:
        try:
            future.set_result(run_all())
        except BaseException as error:  # noqa: BLE001 - handed to the tests that wait for it
            future.set_exception(error)

    # a daemon thread: an interrupted session exits at once (each kernel exits when its parent does)
    threading.Thread(target=run_in_background, name="gpu_profile", daemon=True).start()
    yield future
