"""Plots for the course, one submodule per lab; this file holds what they share.

The palette is Okabe-Ito, which stays distinguishable for colour-blind readers; plots
that must survive greyscale printing also vary markers, hatches or line styles.

Importing ``course_utils.viz`` sets the course style (``STYLE``) once: figures at 100 dpi, at most
``MAX_WIDTH`` = 9 in wide (900 px, which JupyterLab's output area shows unshrunk beside the file browser
in a 1366-px window), and no text under ``MIN_FONT_SIZE`` = 9 pt.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

# Okabe & Ito (2008), "Color Universal Design".
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")

MAX_WIDTH = 9.0  # inches, as rendered (tight bounding box included)
MIN_FONT_SIZE = 9.0  # points
STYLE = {
    "figure.dpi": 100,
    "figure.figsize": (6.4, 4.0),
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": MIN_FONT_SIZE,
    "ytick.labelsize": MIN_FONT_SIZE,
    "legend.fontsize": MIN_FONT_SIZE,
    "legend.title_fontsize": MIN_FONT_SIZE,
    "figure.titlesize": 12,
}
plt.rcParams.update(STYLE)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where live displays can update in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


class LiveLossPlot:
    """A loss curve that redraws in place in a notebook, about ``redraws`` times per run."""

    def __init__(self, total_steps: int, redraws: int = 15):
        self.every = max(1, total_steps // redraws)
        self.next_draw = self.every
        self.handle = None
        self.enabled = in_notebook()

    def update(self, history) -> None:
        """Redraw from a ``train.History`` when enough new steps have arrived."""
        if not self.enabled or (history.steps[-1] < self.next_draw and history.steps[-1] != 1):
            return
        self.next_draw = history.steps[-1] + self.every
        from IPython.display import display

        fig = plot_loss(history)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def plot_loss(history, ax=None, label: str = "loss"):
    """Raw (faint) and smoothed training loss against step; returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3))
    else:
        fig = ax.figure
    ax.plot(history.steps, history.losses, color=PALETTE["sky"], alpha=0.4, linewidth=1)
    ax.plot(history.steps, history.smoothed(), color=PALETTE["blue"], linewidth=2, label=f"{label} (smoothed)")
    ax.set(xlabel="step", ylabel=label)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig
