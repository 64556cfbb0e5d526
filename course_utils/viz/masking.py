"""Pictures for Lab 1: masking rates against binomial bands, masking speed, and a live masking viewer."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
import torch
from scipy.stats import binom

from course_utils.masking import IGNORE_INDEX, mask_by_strategy
from course_utils.text import encode_batch, masker_ids, train_tokenizer
from course_utils.viz import MARKERS, PALETTE

DEMO_CORPUS = (
    "Masked language models learn by filling in blanks. BERT hides fifteen percent of the tokens "
    "and predicts them from both sides of the sentence. The patient presented with severe chest pain "
    "and was treated in the emergency department. Pretraining on unlabelled text teaches the encoder "
    "grammar, meaning and facts, which transfer to downstream tasks such as question answering."
)
STATUS_COLOURS = {"mask": PALETTE["vermillion"], "random": PALETTE["orange"], "kept": PALETTE["sky"]}
UNSELECTED_OUTLINE = "#ccc"


def plot_rates_with_bands(
    counts: Mapping[str, Sequence[int]],
    totals: Mapping[str, Sequence[int]],
    expected: Mapping[str, float],
    level: float = 0.95,
):
    """One panel per rate: the rate observed in each draw (``counts[k] / totals[k]``) against the
    expected rate and its binomial ``level`` band for that draw's size. Returns the figure.

    About ``1 - level`` of the draws should fall outside the band; many more means a biased masker.
    """
    names = list(expected)
    columns = min(2, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3 * rows), squeeze=False)
    for ax, name, marker in zip(axes.flat, names, MARKERS * 2):
        count, total, p = np.asarray(counts[name]), np.asarray(totals[name]), expected[name]
        draw = np.arange(len(count))
        low, high = binom.interval(level, total, p)
        ax.fill_between(
            draw,
            low / total,
            high / total,
            step="mid",
            color=PALETTE["sky"],
            alpha=0.35,
            label=f"{level:.0%} binomial band",
        )
        ax.axhline(p, color=PALETTE["blue"], linewidth=1.5, label=f"expected {p:g}")
        rate = count / total
        inside = (count >= low) & (count <= high)
        ax.plot(draw[inside], rate[inside], marker, linestyle="", markersize=3, color=PALETTE["black"])
        ax.plot(draw[~inside], rate[~inside], "x", color=PALETTE["vermillion"], label="outside the band")
        ax.set(title=f"{name}: {inside.mean():.0%} inside", xlabel="draw", ylabel="observed rate")
        ax.grid(alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.1, 1, 1))
    return fig


def duration_label(seconds: float, _position=None) -> str:
    """A time in seconds as a short label with units: 2e-05 -> '20 µs', 0.5 -> '500 ms', 3 -> '3 s'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"


def plot_speed(batch_sizes: Sequence[int], seconds: Mapping[str, Sequence[float]], seq_len: int):
    """Time per batch against batch size (log-log), one line per masker. Returns the figure.

    The x ticks are the batch sizes; the y ticks are labelled with units (µs, ms, s): powers of ten,
    or 1-2-5 steps when the times span less than two decades.
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    colours = (PALETTE["vermillion"], PALETTE["blue"], PALETTE["green"], PALETTE["orange"])
    for (name, times), colour, marker in zip(seconds.items(), colours, MARKERS):
        ax.plot(batch_sizes, times, marker=marker, color=colour, label=name)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=f"batch size (sequences of {seq_len} tokens)",
        ylabel="time per batch (median)",
        title="Masking one batch",
    )
    ax.xaxis.set_major_locator(ticker.FixedLocator(list(batch_sizes)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda size, _position: f"{size:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    low, high = ax.get_ylim()
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0,) if high / low >= 100 else (1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(duration_label))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def demo_tokenizer(corpus: str = DEMO_CORPUS, vocab_size: int = 200):
    """A tiny WordPiece tokenizer trained in memory on ``corpus`` (``course_utils.text.train_tokenizer``):
    BERT's specials at ids 0-4, [CLS] ... [SEP] around every text, and a vocabulary small enough
    to split most words into pieces."""
    return train_tokenizer([corpus], vocab_size=vocab_size, min_frequency=0)


def masked_html(
    original: Sequence[str], shown: Sequence[str], labels: Sequence[int], mask_token: str = "[MASK]"
) -> str:
    """Tokens as HTML boxes, then a legend: a selected token is filled by what the model sees,
    [MASK] (vermillion), random (orange, with the token it replaced struck through) or kept (sky);
    a token that is not selected (label -100) has a thin grey outline."""
    box = "padding:2px 4px; margin:2px; border-radius:3px; display:inline-block"
    unselected = f"border:1px solid {UNSELECTED_OUTLINE};"
    boxes = []
    for before, after, label in zip(original, shown, labels):
        status = (
            None
            if label == IGNORE_INDEX
            else "mask" if after == mask_token else "kept" if after == before else "random"
        )
        text = html.escape(after) + (f" <s>{html.escape(before)}</s>" if status == "random" else "")
        style = f"background:{STATUS_COLOURS[status]};" if status else unselected
        boxes.append(f'<span style="{style} {box}">{text}</span>')
    names = {"mask": html.escape(mask_token), "random": "random", "kept": "kept"}
    legend = " ".join(
        f'<span style="background:{colour}; padding:1px 6px">{names[status]}</span>'
        for status, colour in STATUS_COLOURS.items()
    )
    return (
        f'<div style="font-family:monospace; line-height:2">{"".join(boxes)}</div>'
        f"<div>selected (the loss scores it), shown as: {legend} &nbsp; "
        f'<span style="{unselected} padding:1px 6px">grey outline</span>: not selected (label -100)</div>'
    )


def masking_viewer(
    text: str = "The patient presented with severe chest pain, and masked language models learn by filling blanks.",
):
    """An ipywidgets viewer: a masking-probability slider, a strategy choice (token, whole word,
    span of whole words) and a redraw button, showing ``text`` tokenized by ``demo_tokenizer``
    with each selected token coloured (``masked_html``).

    Returns the widget without displaying it: a notebook shows it once, as the cell's last expression.
    """
    import ipywidgets as widgets

    from course_utils.viz.explorer import Explorer

    tokenizer = demo_tokenizer()
    batch = encode_batch(tokenizer, [text])
    input_ids, word_ids = batch["input_ids"], batch["word_ids"]
    tokens = [tokenizer.id_to_token(i) for i in input_ids[0].tolist()]
    ids = masker_ids(tokenizer)
    probability = widgets.FloatSlider(value=0.15, min=0.0, max=1.0, step=0.05, description="probability")
    strategy = widgets.ToggleButtons(
        options=[("token", "token"), ("whole word", "whole_word"), ("span", "span")], description="strategy"
    )
    redraw = widgets.Button(description="draw again")
    view = widgets.HTML()
    draws = torch.Generator().manual_seed(0)

    def show(*_):
        masked_ids, labels = mask_by_strategy(
            strategy.value,
            input_ids,
            word_ids,
            mlm_probability=probability.value,
            generator=draws,
            **ids,
        )
        shown = [tokenizer.id_to_token(i) for i in masked_ids[0].tolist()]
        view.value = masked_html(tokens, shown, labels[0].tolist())

    for control in (probability, strategy):
        control.observe(show, names="value")
    redraw.on_click(show)
    show()
    return Explorer([widgets.HBox([probability, redraw]), strategy, view])
