"""Plots for Lab 5: the permutation LM's two attention masks, and the equal-compute comparison."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch

from course_utils.viz import LINESTYLES, MARKERS, MAX_WIDTH, PALETTE

OBJECTIVE_COLOURS = dict(
    mlm=PALETTE["blue"],
    electra=PALETTE["vermillion"],
    causal=PALETTE["green"],
    albert=PALETTE["orange"],
    permutation=PALETTE["purple"],
)


def plot_permutation_masks(
    content_mask: torch.Tensor, query_mask: torch.Tensor, targets: torch.Tensor, tokens: list[str]
):
    """One sentence's content and query masks side by side (rows: queries, columns: keys), with a colour key;
    targets starred.

    content_mask, query_mask: ``[L, L]`` bool; targets: ``[L]`` bool; tokens: the ``L`` token strings.
    """
    length = len(tokens)
    if content_mask.shape != (length, length) or query_mask.shape != (length, length) or targets.shape != (length,):
        raise ValueError(f"masks must be [L, L] and targets [L] for the {length} tokens")
    labels = [f"{token} *" if target else token for token, target in zip(tokens, targets.tolist())]
    fig, axes = plt.subplots(1, 2, figsize=(min(MAX_WIDTH, 2 + 0.8 * length), 0.45 * length + 1.9))
    cmap = plt.get_cmap("Blues")
    titles = ("content stream h:\nrank(j) <= rank(i)", "query stream g:\nrank(j) < rank(i)")
    for ax, mask, title in zip(axes, (content_mask, query_mask), titles):
        ax.imshow(mask.cpu().float().numpy(), cmap=cmap, vmin=0, vmax=1.3)
        ax.set_xticks(range(length), tokens, rotation=60, ha="right")
        ax.set_yticks(range(length), labels)
        ax.set_xlabel("key j")
        ax.set_title(title)
    axes[0].set_ylabel("query i (* = a target)")
    key = [Patch(facecolor=cmap(1 / 1.3), label="i sees j"),
           Patch(facecolor=cmap(0.0), edgecolor="0.6", label="j hidden from i")]
    fig.legend(handles=key, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    plt.close(fig)
    return fig


def _plot_curves(ax, comparison, metric: str, ylabel: str, title: str) -> None:
    """``metric`` against training FLOPs: each seed thin, the mean over seeds bold, the budget dotted."""
    curves = comparison.curves.dropna(subset=[metric])
    for index, (objective, runs) in enumerate(curves.groupby("objective", sort=False)):
        colour = OBJECTIVE_COLOURS.get(objective, PALETTE["black"])
        for _, seed_run in runs.groupby("seed"):
            ax.plot(seed_run["training_flops"], seed_run[metric], color=colour, alpha=0.25, linewidth=1)
        mean = runs.groupby("step").agg(flops=("training_flops", "first"), value=(metric, "mean"))
        ax.plot(
            mean["flops"],
            mean["value"],
            color=colour,
            linestyle=LINESTYLES[index % len(LINESTYLES)],
            marker=MARKERS[index % len(MARKERS)] if metric != "loss" else None,
            markersize=4,
            label=objective,
        )
    ax.axvline(comparison.budget_flops, color=PALETTE["black"], linewidth=0.8, linestyle=":")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)


def _plot_floors(ax, comparison, probe: str) -> None:
    """The phrasing prior (dashed) and true chance (dotted) of ``probe``'s MRR."""
    ax.axhline(comparison.floor("phrasing prior", probe, "mrr"), color=PALETTE["black"], linewidth=1, linestyle="--",
               label="phrasing prior")
    ax.axhline(comparison.floor("true chance", probe, "mrr"), color=PALETTE["black"], linewidth=1, linestyle=":",
               label="true chance")
    ax.set_ylim(0, 1.03)


def plot_comparison(comparison, metrics: list[str] | None = None):
    """One 2 x 2 figure (8.6 in wide): each objective's own training loss against FLOPs; the held-out and the seen
    probe's MRR against FLOPs with the phrasing prior and true chance; each downstream metric of ``metrics``
    (default: every label budget) per objective, mean with its 95% interval."""
    table = comparison.table
    metrics = metrics or [m for m in comparison.metrics if m.startswith("fact_check_")]
    fig, axes = plt.subplots(2, 2, figsize=(8.6, 7.5))
    loss, downstream, held_out, seen = axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]
    _plot_curves(loss, comparison, "loss", "training loss (log scale)", "each objective's own loss (not comparable)")
    loss.set_yscale("log")
    loss.legend()
    _plot_curves(held_out, comparison, "probe_mrr", "mean reciprocal rank", "fact probe MRR, held-out pairs")
    _plot_floors(held_out, comparison, "held-out")
    _plot_curves(seen, comparison, "seen_mrr", "mean reciprocal rank", "fact probe MRR, pairs seen in training")
    _plot_floors(seen, comparison, "seen")
    held_out.legend()
    width = 0.8 / max(1, len(metrics))
    objectives = list(table["objective"])
    for index, metric in enumerate(metrics):
        offsets = [i + (index - (len(metrics) - 1) / 2) * width for i in range(len(objectives))]
        mean = table[f"{metric}_mean"]
        errors = [(mean - table[f"{metric}_low"]).fillna(0.0), (table[f"{metric}_high"] - mean).fillna(0.0)]
        downstream.bar(
            offsets,
            mean,
            width,
            yerr=errors,
            capsize=3,
            color=[PALETTE["sky"], PALETTE["blue"], PALETTE["black"], PALETTE["green"]][index % 4],
            label=metric.replace("fact_check_", "") + " labels",
        )
    downstream.axhline(0.5, color=PALETTE["black"], linewidth=0.8, linestyle=":")
    downstream.set_xticks(range(len(objectives)), objectives, rotation=20, ha="right")
    downstream.set_ylabel("fact-check accuracy, held-out phrasings")
    downstream.set_ylim(0, 1)
    downstream.set_title("fine-tuned fact check, 95% interval (dotted: chance)", fontsize=9)
    downstream.legend(title="label budget")
    fig.tight_layout()
    plt.close(fig)
    return fig
