"""Plots for Lab 6's image experiments (``course_utils.experiments.image_pretraining``): methods, batch sizes, augmentations."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from course_utils.viz import MARKERS, PALETTE

METHOD_COLOURS = dict(simclr=PALETTE["vermillion"], mae=PALETTE["blue"], simmim=PALETTE["green"])
FLOOR_STYLES = {"random encoder": ("--", PALETTE["black"]), "raw pixels": (":", PALETTE["purple"])}


def plot_method_comparison(result):
    """Bars of mean ± sd over seeds per method, one group per metric (linear probe, then each label budget);
    the floors (random encoder, raw pixels) as horizontal lines over their metric's group.

    result: a ``MethodComparison`` from ``compare_methods``.
    """
    table = result.table.set_index("method")
    metrics = [metric for metric in result.metrics if metric != "pretraining_seconds"]
    methods = [method for method in table.index if method in METHOD_COLOURS]
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(2.2 + 2.2 * len(metrics), 4))
    for index, method in enumerate(methods):
        offsets = [group + (index - (len(methods) - 1) / 2) * width for group in range(len(metrics))]
        ax.bar(
            offsets,
            [table.loc[method, f"{metric}_mean"] for metric in metrics],
            width,
            yerr=[0.0 if pd.isna(sd) else sd for sd in (table.loc[method, f"{metric}_sd"] for metric in metrics)],
            capsize=3,
            color=METHOD_COLOURS[method],
            label=method,
        )
    for floor, (linestyle, colour) in FLOOR_STYLES.items():
        if floor not in table.index:
            continue
        for group, metric in enumerate(metrics):
            value = table.loc[floor, f"{metric}_mean"]
            if not pd.isna(value):
                ax.hlines(value, group - 0.45, group + 0.45, colors=colour, linestyles=linestyle,
                          label=floor if group == 0 else None)
    labels = [m.replace("finetune_", "fine-tune, ") + " labels" for m in metrics]
    labels = ["linear probe" if m == "probe_accuracy" else label for m, label in zip(metrics, labels)]
    ax.set_xticks(range(len(metrics)), labels)
    ax.set_ylabel("test accuracy (10 digits)")
    ax.set_ylim(0, 1.05)
    budget = f"{result.budget_flops / 1e9:.1f} GFLOPs each"
    ax.set_title(f"equal training FLOPs ({budget}), mean ± sd over seeds", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_batch_sweep(df: pd.DataFrame):
    """Linear probe accuracy against batch size (log scale), one line per method, at equal training FLOPs.

    df: ``batch_size_sweep``'s table (``method, batch_size, steps, probe_accuracy, ...``).
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for index, (method, rows) in enumerate(df.groupby("method", sort=False)):
        rows = rows.sort_values("batch_size")
        ax.plot(rows["batch_size"], rows["probe_accuracy"], marker=MARKERS[index % len(MARKERS)],
                color=METHOD_COLOURS.get(method, PALETTE["black"]), label=method)
        for _, row in rows.iterrows():
            ax.annotate(f"{row['steps']} steps", (row["batch_size"], row["probe_accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(df["batch_size"].unique()), [str(b) for b in sorted(df["batch_size"].unique())])
    ax.set_xlabel("batch size (SimCLR: 2B - 2 negatives per view)")
    ax.set_ylabel("linear probe accuracy")
    ax.set_title("same FLOPs: bigger batches, fewer steps", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_augmentation_ablation(df: pd.DataFrame):
    """Linear probe accuracy per (method, augmentation), horizontal bars, at equal training FLOPs.

    df: ``augmentation_ablation``'s table (``method, augmentation, probe_accuracy, ...``).
    """
    labels = [f"{method}: {augmentation}" for method, augmentation in zip(df["method"], df["augmentation"])]
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(df) + 1.2))
    colours = [METHOD_COLOURS.get(method, PALETTE["black"]) for method in df["method"]]
    hatches = ["" if augmentation != "none" else "//" for augmentation in df["augmentation"]]
    bars = ax.barh(range(len(df)), df["probe_accuracy"], color=colours)
    for bar, hatch in zip(bars, hatches):
        bar.set_hatch(hatch)
    ax.set_yticks(range(len(df)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("linear probe accuracy (grey digits: no colour augmentation)")
    ax.set_title("what each method owes its augmentations", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
