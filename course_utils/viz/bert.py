"""Plots for Lab 2: fill-mask bar charts, the loss beside the fact probe, attention heatmaps and the
fact probe of each masking strategy during training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from course_utils.text import encode_batch
from course_utils.viz import LINESTYLES, MARKERS, MAX_WIDTH, PALETTE, plot_loss


def plot_fill_mask(predictions: list[tuple[str, float]], title: str = "", answer: str | None = None, ax=None):
    """Horizontal bars of ``fill_mask``'s ``(token, probability)`` pairs; ``answer`` is drawn hatched in orange."""
    if not predictions:
        raise ValueError("predictions must be a non-empty list of (token, probability) pairs")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 0.4 * len(predictions) + 1))
    else:
        fig = ax.figure
    tokens, probabilities = zip(*predictions)
    is_answer = [token == answer for token in tokens]
    bars = ax.barh(
        range(len(tokens)), probabilities, color=[PALETTE["orange"] if hit else PALETTE["blue"] for hit in is_answer]
    )
    for bar, hit in zip(bars, is_answer):
        bar.set_hatch("//" if hit else "")
    ax.set_yticks(range(len(tokens)), tokens)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="probability", title=title)
    for y, p in enumerate(probabilities):
        ax.text(min(p + 0.01, 0.9), y, f"{p:.2f}", va="center")
    fig.tight_layout()
    return fig


def plot_loss_and_probes(history, metrics: list[str] | None = None):
    """The training loss (top, log scale) above the metrics that ``fit`` evaluated along the way (bottom),
    on one step axis.

    ``history`` is ``fit``'s ``History``; ``metrics`` names keys of its ``evaluations`` (values in [0, 1],
    such as probe accuracies), default all of them.
    """
    if not history.evaluations:
        raise ValueError(
            "history.evaluations is empty: train with fit(..., evaluate=...) and TrainConfig(eval_every=...)"
        )
    available = [key for key in history.evaluations[0] if key != "step"]
    metrics = available if metrics is None else list(metrics)
    unknown = sorted(set(metrics) - set(available))
    if unknown or not metrics:
        raise ValueError(f"metrics must name some of the evaluated metrics {available}, got {metrics}")
    fig, (loss_ax, metric_ax) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    plot_loss(history, ax=loss_ax)
    loss_ax.set(xlabel="", ylabel="loss (log scale)", yscale="log")  # a second, smaller drop stays visible
    loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # ticks at 0.2, 0.5, 1, 2, 5
    loss_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # read as 0.2, not 2 x 10^-1
    loss_ax.yaxis.set_minor_formatter(NullFormatter())
    steps = [evaluation["step"] for evaluation in history.evaluations]
    colours = (PALETTE["orange"], PALETTE["green"], PALETTE["vermillion"], PALETTE["purple"])
    for i, name in enumerate(metrics):
        values = [evaluation[name] for evaluation in history.evaluations]
        style = dict(color=colours[i % len(colours)], linestyle=LINESTYLES[i % len(LINESTYLES)])
        metric_ax.plot(steps, values, marker=MARKERS[i % len(MARKERS)], markersize=4, label=name, **style)
    metric_ax.set(xlabel="step", ylabel="top-1 accuracy", ylim=(-0.03, 1.03))
    metric_ax.grid(alpha=0.3)
    metric_ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_attention(model, tokenizer, text: str, layer: int, heads=None, axes=None):
    """Heatmaps of the attention weights of ``layer`` for the chosen ``heads`` (default: all) on ``text``.

    Row = query token, column = key token; each row sums to 1.
    """
    num_layers = len(model.encoder.blocks)
    if not 0 <= layer < num_layers:
        raise ValueError(f"layer must be in [0, {num_layers}), got {layer}")
    batch = encode_batch(tokenizer, [text])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    maps = model.attention_maps(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    model.train(was_training)
    weights = maps[layer][0].float().cpu()  # [H, L, L]
    heads = list(range(weights.shape[0])) if heads is None else list(heads)
    tokens = [tokenizer.id_to_token(i) for i in batch["input_ids"][0].tolist()]
    if axes is None:
        fig, axes = plt.subplots(1, len(heads), figsize=(min(MAX_WIDTH - 0.4, 3.2 * len(heads)), 3.4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for index, (ax, head) in enumerate(zip(axes, heads)):
        image = ax.imshow(weights[head], cmap="cividis", vmin=0, vmax=1)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90)
        ax.set_yticks(range(len(tokens)), tokens if index == 0 else [])  # the rows' tokens once, at the left
        ax.set_title(f"layer {layer}, head {head}", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    return fig


def plot_probe_by_strategy(histories: dict, metric: str):
    """One evaluated ``metric`` against step, a line per masking strategy: ``{"token": History, "span": History}``.

    Each ``History`` comes from ``fit(..., evaluate=...)``; ``metric`` is a key of its ``evaluations`` in [0, 1].
    """
    if not histories:
        raise ValueError("histories must map strategy names to fit's History objects")
    fig, ax = plt.subplots(figsize=(6, 3))
    colours = (PALETTE["blue"], PALETTE["vermillion"], PALETTE["green"], PALETTE["purple"])
    for i, (name, history) in enumerate(histories.items()):
        if not history.evaluations or metric not in history.evaluations[0]:
            raise ValueError(f"histories[{name!r}].evaluations must hold {metric!r}: train with fit(..., evaluate=...)")
        steps = [evaluation["step"] for evaluation in history.evaluations]
        values = [evaluation[metric] for evaluation in history.evaluations]
        style = dict(color=colours[i % len(colours)], linestyle=LINESTYLES[i % len(LINESTYLES)])
        ax.plot(steps, values, marker=MARKERS[i % len(MARKERS)], markersize=4, label=name, **style)
    ax.set(xlabel="step", ylabel=metric, ylim=(-0.03, 1.03), title=f"{metric} by masking strategy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def attention_entropy(maps: list[torch.Tensor]) -> torch.Tensor:
    """Mean entropy (nats) of each head's attention rows: ``num_layers`` x ``[B, H, L, L]`` -> ``[layers, H]``."""
    return torch.stack([-(m.clamp_min(1e-12).log() * m).sum(-1).mean(dim=(0, 2)) for m in maps])
