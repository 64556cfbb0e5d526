"""Plots for Lab 5: the permutation LM's two attention masks, and the equal-compute comparison."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from course_utils.viz import LINESTYLES, MARKERS, PALETTE

OBJECTIVE_COLOURS = dict(
    mlm=PALETTE["blue"],
    electra=PALETTE["vermillion"],
    causal=PALETTE["green"],
    albert=PALETTE["orange"],
    permutation=PALETTE["purple"],
)


def plot_permutation_masks(content_mask: torch.Tensor, query_mask: torch.Tensor, targets: torch.Tensor, tokens: list[str]):
    """One sentence's content and query masks side by side (rows: queries, columns: keys); targets starred.

    content_mask, query_mask: ``[L, L]`` bool; targets: ``[L]`` bool; tokens: the ``L`` token strings.
    """
    length = len(tokens)
    if content_mask.shape != (length, length) or query_mask.shape != (length, length) or targets.shape != (length,):
        raise ValueError(f"masks must be [L, L] and targets [L] for the {length} tokens")
    labels = [f"{token} *" if target else token for token, target in zip(tokens, targets.tolist())]
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.9 * length, 0.5 * length + 1.2))
    for ax, mask, title in zip(axes, (content_mask, query_mask), ("content stream h: rank(j) <= rank(i)", "query stream g: rank(j) < rank(i)")):
        ax.imshow(mask.cpu().float().numpy(), cmap="Blues", vmin=0, vmax=1.3)
        ax.set_xticks(range(length), tokens, rotation=60, ha="right")
        ax.set_yticks(range(length), labels)
        ax.set_xlabel("key j (may be seen)")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("query i (* = a target)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _plot_curves(ax, comparison, metric: str, title: str) -> None:
    """``metric`` against training FLOPs: each seed thin, the mean over seeds bold, the budget dotted."""
    for index, (objective, runs) in enumerate(comparison.curves.groupby("objective", sort=False)):
        colour = OBJECTIVE_COLOURS.get(objective, PALETTE["black"])
        for _, seed_run in runs.groupby("seed"):
            ax.plot(seed_run["training_flops"], seed_run[metric], color=colour, alpha=0.25, linewidth=1)
        mean = runs.groupby("step").agg(flops=("training_flops", "first"), accuracy=(metric, "mean"))
        ax.plot(
            mean["flops"],
            mean["accuracy"],
            color=colour,
            linestyle=LINESTYLES[index % len(LINESTYLES)],
            marker=MARKERS[index % len(MARKERS)],
            label=objective,
        )
    ax.axvline(comparison.budget_flops, color=PALETTE["black"], linewidth=0.8, linestyle=":")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("probe accuracy (24 capitals)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10)


def plot_comparison(comparison, metrics: list[str] | None = None):
    """The fact probe against training FLOPs on held-out and on seen phrasings (mean over seeds bold, each
    seed thin), and each downstream metric of ``metrics`` (default: every label budget) per objective, mean ± sd."""
    table = comparison.table
    metrics = metrics or [m for m in comparison.metrics if m.startswith("fact_check_")]
    fig, (held_out, seen, right) = plt.subplots(1, 3, figsize=(16, 4.2))
    _plot_curves(held_out, comparison, "probe_accuracy", "fact probe, held-out phrasings (dotted: the budget)")
    _plot_curves(seen, comparison, "seen_probe_accuracy", "fact probe, phrasings seen in training")
    held_out.legend(fontsize=8)
    width = 0.8 / max(1, len(metrics))
    objectives = list(table["objective"])
    for index, metric in enumerate(metrics):
        offsets = [i + (index - (len(metrics) - 1) / 2) * width for i in range(len(objectives))]
        right.bar(
            offsets,
            table[f"{metric}_mean"],
            width,
            yerr=table[f"{metric}_sd"].fillna(0.0),
            capsize=3,
            color=[PALETTE["sky"], PALETTE["blue"], PALETTE["black"], PALETTE["green"]][index % 4],
            label=metric.replace("fact_check_", "") + " labels",
        )
    right.axhline(0.5, color=PALETTE["black"], linewidth=0.8, linestyle=":")
    right.set_xticks(range(len(objectives)), objectives)
    right.set_ylabel("fact-check accuracy, held-out phrasings")
    right.set_ylim(0, 1)
    right.set_title("downstream, fine-tuned from each encoder (dotted: chance)", fontsize=10)
    right.legend(fontsize=8, title="label budget", title_fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig
