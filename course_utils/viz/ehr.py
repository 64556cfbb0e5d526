"""Plots for Lab 4: the cohort, one patient's timeline, code co-occurrence, code embeddings and label budgets."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from course_utils.ehr import CODES, EHRSequence, code_group
from course_utils.viz import LINESTYLES, MARKERS, PALETTE

KIND_COLOURS = {
    "diagnosis": PALETTE["blue"],
    "medication": PALETTE["orange"],
    "lab": PALETTE["green"],
    "procedure": PALETTE["purple"],
    "demographic": PALETTE["black"],
}
GROUP_COLOURS = {
    "diabetes": PALETTE["orange"],
    "hypertension": PALETTE["blue"],
    "kidney": PALETTE["green"],
    "heart_failure": PALETTE["vermillion"],
    "hyperlipidemia": PALETTE["purple"],
    "obesity": PALETTE["yellow"],
    "acute": PALETTE["sky"],
}
OTHER_COLOUR = "#999999"


def _kind(code: str) -> str:
    entry = CODES.get(code)
    return entry.kind if entry else "other"


def plot_event_counts(events: pa.Table, top: int = 25):
    """Left: events per subject (histogram). Right: the ``top`` most frequent codes, coloured by kind."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    per_subject = pc.value_counts(events["subject_id"]).field("counts").to_numpy()
    left.hist(per_subject, bins=40, color=PALETTE["blue"], edgecolor="white")
    left.set(
        xlabel="events per subject",
        ylabel="subjects",
        title=f"{len(per_subject)} subjects, median {int(np.median(per_subject))} events",
    )
    counts = pc.value_counts(events["code"])
    codes, values = counts.field("values").to_pylist(), counts.field("counts").to_numpy()
    order = np.argsort(-values)[:top][::-1]
    colours = [KIND_COLOURS.get(_kind(codes[i]), OTHER_COLOUR) for i in order]
    right.barh([codes[i] for i in order], values[order], color=colours)
    right.set(xlabel="events", title=f"the {top} most frequent codes")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in KIND_COLOURS.values()]
    right.legend(handles, list(KIND_COLOURS), loc="lower right")
    fig.tight_layout()
    return fig


def plot_timeline(events: pa.Table, subject_id: int):
    """One patient's timestamped events: one row per code, time on x, marker by kind."""
    one = events.filter(pc.and_(pc.equal(events["subject_id"], subject_id), pc.is_valid(events["time"])))
    one = one.filter(
        pc.invert(pc.or_(pc.equal(one["code"], "MEDS_BIRTH"), pc.starts_with(one["code"], "MEDS_BIRTH//")))
    )
    if one.num_rows == 0:
        raise ValueError(f"subject_id={subject_id} has no timestamped events")
    times = one["time"].to_numpy(zero_copy_only=False)
    codes = one["code"].to_pylist()
    rows = sorted(set(codes), key=lambda code: (_kind(code), code))
    fig, ax = plt.subplots(figsize=(7.2, 0.28 * len(rows) + 1.5))
    for kind, marker in zip(KIND_COLOURS, MARKERS):
        chosen = [i for i, code in enumerate(codes) if _kind(code) == kind]
        if chosen:
            ax.scatter(
                times[chosen],
                [rows.index(codes[i]) for i in chosen],
                color=KIND_COLOURS[kind],
                marker=marker,
                s=28,
                label=kind,
            )
    ax.set_yticks(
        range(len(rows)),
        [f"{code}  {CODES[code].description[:28] if code in CODES else ''}" for code in rows],
    )
    ax.set(xlabel="time", title=f"subject {subject_id}: {one.num_rows} events")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def plot_cooccurrence(sequences: Sequence[EHRSequence], codes: Sequence[str]):
    """Share of patients with code *i* who also have code *j* (P(j | i)), for the given codes."""
    has = np.array([[code in set(sequence.tokens) for code in codes] for sequence in sequences], dtype=float)  # [N, C]
    together = has.T @ has  # [C, C]
    conditional = together / np.maximum(np.diag(together)[:, None], 1.0)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(conditional, cmap="cividis", vmin=0, vmax=1)
    labels = [f"{code} ({CODES[code].description[:18]})" if code in CODES else code for code in codes]
    ax.set_xticks(range(len(codes)), labels, rotation=90)
    ax.set_yticks(range(len(codes)), labels)
    ax.set(title="P(column code | row code) across patients")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def plot_code_map(points: np.ndarray, tokens: Sequence[str], title: str = "learned code embeddings (PCA)"):
    """A 2-D map (``points`` ``[V, 2]``) of code embeddings, coloured by clinical group; the grouped codes named."""
    fig, ax = plt.subplots(figsize=(8, 6.5))
    groups = [code_group(token) for token in tokens]
    for group in [*GROUP_COLOURS, "other"]:
        chosen = [i for i, g in enumerate(groups) if (g if g in GROUP_COLOURS else "other") == group]
        if not chosen:
            continue
        colour = GROUP_COLOURS.get(group, OTHER_COLOUR)
        ax.scatter(
            points[chosen, 0], points[chosen, 1], color=colour, s=40, edgecolor="black", linewidth=0.4, label=group
        )
        for i in chosen:  # names for the grouped codes; "other" codes and lab-value bins (//Q1...) stay unnamed
            if group != "other" and "//Q" not in tokens[i]:
                ax.annotate(tokens[i].split("//", 1)[-1], points[i], xytext=(3, 2), textcoords="offset points")
    ax.set(title=title, xlabel="component 1", ylabel="component 2")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def plot_label_budget(runs: pd.DataFrame, oracle: str = "oracle"):
    """AUROC and AUPRC against the number of labelled patients: mean ± sd over the subsamples, one line per model.

    ``runs`` is ``label_budget_experiment``'s table (columns ``budget, model, auroc, auprc``, one row per
    subsample); the ``oracle`` model, the same at every budget, is drawn as a horizontal line.
    """
    missing = {"budget", "model", "auroc", "auprc"} - set(runs.columns)
    if missing:
        raise ValueError(f"runs must be label_budget_experiment's table; it lacks the columns {sorted(missing)}")
    stats = runs.groupby(["model", "budget"], sort=False)[["auroc", "auprc"]].agg(["mean", "std"])
    models = [model for model in dict.fromkeys(runs["model"]) if model != oracle]
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 4))
    colours = [PALETTE["vermillion"], PALETTE["blue"], PALETTE["green"], PALETTE["orange"]]
    for metric, ax in zip(("auroc", "auprc"), axes):
        for name, colour, style, marker in zip(models, colours, LINESTYLES, MARKERS):
            by_budget = stats.loc[name, metric].sort_index()
            ax.errorbar(
                by_budget.index,
                by_budget["mean"],
                yerr=by_budget["std"].fillna(0.0),
                color=colour,
                linestyle=style,
                marker=marker,
                capsize=3,
                label=name,
            )
        if oracle in set(runs["model"]):
            level = runs.loc[runs["model"] == oracle, metric].mean()
            ax.axhline(level, color=PALETTE["black"], linestyle=":", label="oracle (true risk)")
        ax.set(xscale="log", xlabel="labelled patients (fine-tuning + tuning)", ylabel=metric.upper())
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle("mean ± sd over the labelled subsamples", fontsize=10)
    fig.tight_layout()
    return fig
