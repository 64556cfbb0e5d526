"""Plots for Lab 2: fill-mask bar charts, attention heatmaps and the masking-strategy comparison."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from course_utils.text import encode_batch
from course_utils.viz import PALETTE


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
        fig, axes = plt.subplots(1, len(heads), figsize=(3.2 * len(heads), 3.4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, head in zip(axes, heads):
        image = ax.imshow(weights[head], cmap="cividis", vmin=0, vmax=1)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
        ax.set_title(f"layer {layer}, head {head}", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    return fig


def plot_strategy_comparison(results: dict[str, dict[str, float]], metric: str = "probe top-1"):
    """Bars of one ``metric`` per masking strategy: ``{"token": {"probe top-1": 0.9, ...}, ...}``."""
    if not results:
        raise ValueError("results must map strategy names to metric dicts")
    names = list(results)
    values = [results[name][metric] for name in names]
    colours = list(PALETTE.values())
    hatches = ("", "//", "..", "xx", "\\\\")
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 1.5, 3))
    bars = ax.bar(names, values, color=[colours[i % len(colours)] for i in range(len(names))])
    for i, bar in enumerate(bars):
        bar.set_hatch(hatches[i % len(hatches)])
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, f"{values[i]:.2f}", ha="center")
    ax.set(ylabel=metric, ylim=(0, 1.1), title=f"{metric} by masking strategy")
    fig.tight_layout()
    return fig


def attention_entropy(maps: list[torch.Tensor]) -> torch.Tensor:
    """Mean entropy (nats) of each head's attention rows: ``num_layers`` x ``[B, H, L, L]`` -> ``[layers, H]``."""
    return torch.stack([-(m.clamp_min(1e-12).log() * m).sum(-1).mean(dim=(0, 2)) for m in maps])
