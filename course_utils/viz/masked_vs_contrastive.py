"""Plots for Lab 6's image experiments (``course_utils.experiments.image_pretraining``): the methods against their
floors, and the augmentation arms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from course_utils.viz import MAX_WIDTH, PALETTE

METHOD_COLOURS = dict(simclr=PALETTE["vermillion"], mae=PALETTE["blue"], simmim=PALETTE["green"])
FLOOR_STYLES = {
    "random encoder": ("--", PALETTE["black"]),
    "pixels": (":", PALETTE["purple"]),
    "pixels, PCA to the encoder's dim": ("-.", PALETTE["orange"]),
}
PROBE_NAMES = dict(few_shot="few-shot probe", linear="linear probe", knn="k-NN")


def _error_bars(rows: pd.DataFrame, metric: str) -> list[list[float]]:
    """``[below, above]`` distances from each row's mean to its 95% interval (0 where there is none)."""
    mean, low, high = rows[f"{metric}_mean"], rows[f"{metric}_low"], rows[f"{metric}_high"]
    return [(mean - low).fillna(0).clip(lower=0).tolist(), (high - mean).fillna(0).clip(lower=0).tolist()]


def plot_method_comparison(result, metrics=("few_shot", "linear", "knn")):
    """Bars of the mean and 95% interval over seeds per method, one group per probe; the floors (random encoder,
    pixels, PCA pixels) as horizontal lines over each group.

    result: a ``MethodComparison`` from ``compare_methods``.
    """
    table = result.table.set_index("method")
    methods = [method for method in table.index if method in METHOD_COLOURS]
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH - 0.4, 2.4 + 2.0 * len(metrics)), 4.6))
    for index, method in enumerate(methods):
        offsets = [group + (index - (len(methods) - 1) / 2) * width for group in range(len(metrics))]
        row = table.loc[[method]]
        ax.bar(
            offsets,
            [float(row[f"{metric}_mean"].iloc[0]) for metric in metrics],
            width,
            yerr=[[bars[0][0] for bars in (_error_bars(row, m) for m in metrics)],
                  [bars[1][0] for bars in (_error_bars(row, m) for m in metrics)]],
            capsize=3,
            color=METHOD_COLOURS[method],
            label=method,
        )
    for floor, (linestyle, colour) in FLOOR_STYLES.items():
        if floor not in table.index:
            continue
        for group, metric in enumerate(metrics):
            ax.hlines(table.loc[floor, f"{metric}_mean"], group - 0.45, group + 0.45, colors=colour,
                      linestyles=linestyle, label=floor if group == 0 else None)
    ax.set_xticks(range(len(metrics)), [PROBE_NAMES.get(metric, metric) for metric in metrics])
    ax.set_ylabel("test accuracy (10 digits)")
    ax.set_ylim(0, 1.05)
    budget = f"{result.budget_flops / 1e9:.3g} GFLOPs each"
    ax.set_title(f"equal training FLOPs ({budget}), mean and 95% interval over seeds", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_arms(table: pd.DataFrame, metric: str = "few_shot"):
    """Horizontal bars of ``metric`` per arm (method, views), with 95% intervals; views "none" hatched.

    table: ``image_pretraining.arms_table``'s summary.
    """
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(table) + 1.3))
    colours = [METHOD_COLOURS.get(method, PALETTE["black"]) for method in table["method"]]
    bars = ax.barh(range(len(table)), table[f"{metric}_mean"], xerr=_error_bars(table, metric), capsize=3,
                   color=colours)
    for bar, views in zip(bars, table["views"]):
        bar.set_hatch("//" if views == "none" else "")
    ax.set_yticks(range(len(table)), table["arm"])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)  # room for an interval that reaches 1
    ax.set_xlabel(f"{PROBE_NAMES.get(metric, metric)} accuracy, mean and 95% interval over seeds")
    ax.set_title("what each method owes its views", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
