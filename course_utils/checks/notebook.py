"""How a failed check and an unfinished exercise read in a Jupyter notebook.

Without this, a failed check shows a 30-line traceback through ``course_utils/checks`` (which
also gives away the checks that come next) and an unfinished exercise ends in a bare
``NotImplementedError:``. ``install()`` registers an IPython handler that shows instead::

    ✗ check_select_positions: you selected a [PAD] position
    Hint: ...

    ✗ select_positions is not written yet: replace `raise NotImplementedError()` with your code.

The cell still ends in an error (an ``error`` output, status ``error``), so ``nbgrader`` and
``raises-exception`` keep working: check cells carry that tag, and "Run All" goes on past them.
Any other exception keeps IPython's full traceback. Outside IPython, ``install()`` does nothing.
"""

from __future__ import annotations

import traceback

from course_utils.checks import Misconception

RED, BOLD, RESET = "\033[31m", "\033[1m", "\033[0m"
RUNS_ON = "The rest of the notebook still runs; come back, fix it and run this cell again."


def install() -> bool:
    """Register the short messages with the running IPython shell; True if there is one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((Misconception, NotImplementedError), _show)
    return True


def short_message(value: BaseException, tb) -> list[str] | None:
    """The lines shown for a failed check or an unfinished exercise; None for anything else."""
    frames = [frame for frame, _ in traceback.walk_tb(tb)]
    if isinstance(value, Misconception):
        checks = [
            f.f_code.co_name for f in frames if f.f_globals.get("__name__", "").startswith("course_utils.checks.")
        ]
        name = next((name for name in checks if name.startswith("check_")), checks[0] if checks else "check")
        first, *rest = str(value).splitlines() or [""]
        return [f"{RED}{BOLD}\u2717 {name}:{RESET} {RED}{first}{RESET}", *rest, RUNS_ON]
    if isinstance(value, NotImplementedError) and not str(value) and frames:
        innermost = frames[-1]
        if innermost.f_globals.get("__name__") == "__main__" and innermost.f_code.co_name != "<module>":
            name = innermost.f_code.co_name
            return [
                f"{RED}{BOLD}\u2717 {name} is not written yet:{RESET} "
                f"{RED}replace `raise NotImplementedError()` with your code.{RESET}",
                RUNS_ON,
            ]
    return None


def _show(shell, etype, value, tb, tb_offset=None):
    """IPython custom-exception handler: publish the short message as the cell's error output."""
    lines = short_message(value, tb)
    if lines is None:
        lines = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    shell._showtraceback(etype, value, lines)
    return lines
