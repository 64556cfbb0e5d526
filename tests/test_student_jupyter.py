"""The student copy's JupyterLab shows no instructor-only nbgrader UI: its `make lab` reads the Jupyter settings
the copy writes, which turn off nbgrader's lab plugins (create assignment, the Formgrader and Courses menu,
assignment list, Validate) and its server extensions, and JupyterLab's "official Jupyter news?" prompt."""

import re

from jupyter_core.paths import jupyter_config_path, jupyter_path
from jupyter_server.extension.config import ExtensionConfigManager
from jupyterlab_server.config import get_page_config

from course_utils.grading import handout

NBGRADER_PLUGINS = {
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:menu",  # Formgrader, Assignment List and Courses
    "@jupyter/nbgrader:assignment-list",
    "@jupyter/nbgrader:course-list",
    "@jupyter/nbgrader:validate-assignment",
}
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"  # JupyterLab's news prompt and update check
NBGRADER_SERVER_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
}


def test_the_student_copy_s_jupyterlab_has_no_nbgrader_instructor_ui(tmp_path, monkeypatch):
    monkeypatch.setattr(handout, "release", lambda **options: [])  # the release's freshness is tested elsewhere
    copy = handout.export_student(tmp_path / "student")
    (recipe,) = re.findall(r"^lab:.*\n\t(.*)$", (copy / "Makefile").read_text(), flags=re.MULTILINE)
    assert recipe.startswith("JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter "), recipe
    assert "make check" in (copy / "README.md").read_text()

    # What JupyterLab and Jupyter Server read, with and without the copy's settings.
    as_installed = set(get_page_config(jupyter_path("labextensions"))["disabledExtensions"])
    servers_as_installed = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(copy / "jupyter"))
    disabled = set(get_page_config(jupyter_path("labextensions"))["disabledExtensions"])
    servers = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()

    assert not NBGRADER_PLUGINS & as_installed, "the instructor's own JupyterLab keeps them"
    assert NBGRADER_PLUGINS <= disabled, NBGRADER_PLUGINS - disabled
    assert ANNOUNCEMENTS in disabled, "no 'official Jupyter news?' prompt on a student's first launch"
    assert all(servers_as_installed.get(name) for name in NBGRADER_SERVER_EXTENSIONS)
    assert not any(servers.get(name) for name in NBGRADER_SERVER_EXTENSIONS), servers
    assert servers.get("jupyterlab"), "JupyterLab itself stays on"
