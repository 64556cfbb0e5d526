"""Progress bars that a saved notebook keeps as plain text.

    from course_utils.progress import tqdm
    for step in tqdm(range(steps), desc="train", leave=False):
        ...

``tqdm.auto`` draws an ipywidget in a notebook; widget state is not saved with the notebook, so a
reopened notebook shows "Error displaying widget: model not found" where each bar was. This ``tqdm``
draws tqdm's own text line into one display output instead, updated in place while the loop runs
(JupyterLab and nbclient both replace the output on each update), so the saved notebook holds the
finished line, e.g. ``label budgets: 100%|██████████| 6/6 [00:12<00:00, 2.01s/it]``. A
``leave=False`` bar ends as an empty output, which the next such bar of the same cell reuses: a cell
that trains twenty models keeps one empty output, not twenty. Outside a Jupyter kernel (a terminal,
pytest) it is tqdm's usual bar on stderr.
"""

from __future__ import annotations

import io

from tqdm.std import tqdm as _text_tqdm

from course_utils.viz import in_notebook


class tqdm(_text_tqdm):
    """``tqdm.tqdm`` whose line, in a Jupyter kernel, is a plain-text display output updated in place."""

    monitor_interval = 0  # no monitor thread: every redraw comes from the loop's own thread and cell
    _cleared = {"cell": None, "handles": []}  # the current cell's emptied outputs, free for its next bars

    def __init__(self, *args, **kwargs):
        self._handle = None
        self._in_notebook = in_notebook()
        if self._in_notebook:
            kwargs["file"] = io.StringIO()  # the terminal stream tqdm also writes line ends to
            kwargs.setdefault("ascii", False)  # a StringIO has no encoding; the output area shows Unicode
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        """Redraw the bar (``msg=""``: clear it, as ``close`` does for ``leave=False``)."""
        if not self._in_notebook:
            return super().display(msg, pos)
        from IPython import get_ipython
        from IPython.display import display

        line = str(self) if msg is None else msg
        bundle = {"text/plain": line} if line else {}
        cleared, cell = tqdm._cleared, get_ipython().execution_count
        if cleared["cell"] != cell:
            cleared.update(cell=cell, handles=[])
        if self._handle is None and cleared["handles"]:
            self._handle = cleared["handles"].pop()
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        if not line:
            cleared["handles"].append(self._handle)
            self._handle = None
        return True
