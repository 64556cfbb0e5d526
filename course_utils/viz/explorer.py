"""The box that holds an interactive explorer (Lab 1's masking viewer, Lab 3's MAE explorer).

A widget's state is not saved with the notebook, so after a reopen JupyterLab shows "Error displaying
widget: model not found" in its place, and other viewers show its text fallback. An ``Explorer`` is an
ipywidgets ``VBox`` that, shown as a cell's last expression, first prints one plain-text line saying that
it needs its cell re-run, and whose own text fallback says the same.
"""

from __future__ import annotations

import ipywidgets as widgets
from IPython.display import display

RERUN_NOTE = (
    "Interactive explorer: it needs a running kernel. If no controls show below "
    "(after reopening the notebook, for example), re-run this cell."
)
FALLBACK = "[interactive explorer: re-run this cell to use it]"


class Explorer(widgets.VBox):
    """A ``VBox`` shown under a plain-text note that it needs its cell re-run once its state is gone."""

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = FALLBACK
        return bundle

    def _ipython_display_(self):
        display({"text/plain": RERUN_NOTE}, raw=True)
        display(self._repr_mimebundle_(), raw=True)
