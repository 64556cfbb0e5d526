"""Pictures for Lab 3 (MAE): image grids, the four-panel reconstruction view with a patch-grid
overlay, a live ipywidgets explorer, and the mask-ratio sweep.

Removed patches are drawn mid-grey *and* hatched, so they stay distinguishable from grey
image content in greyscale print; curves differ in colour (Okabe-Ito), marker and line style.

Each figure appears once in a notebook: the plot functions draw a pyplot figure and return it
without displaying it (end the cell with ``plt.show()``, as Lab 3 does: a returned figure left
as a cell's last expression would show a second time); ``mae_explorer`` returns its widget
without displaying it (leave the call as the cell's last expression).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torchvision.utils import make_grid

from course_utils.vision import unpatchify
from course_utils.viz import LINESTYLES, MARKERS, MAX_WIDTH, PALETTE

PANELS = ("original", "masked", "reconstruction", "reconstruction + visible")


def _as_numpy_image(img: torch.Tensor):
    """``[C, H, W]`` in [0, 1] -> what ``imshow`` wants (``[H, W]`` for one channel)."""
    img = img.detach().float().clamp(0, 1).cpu()
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def show_images(imgs: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None):
    """A grid of images ``[B, C, H, W]`` (``torchvision.utils.make_grid``); returns the figure."""
    grid = make_grid(imgs.detach().float().cpu(), nrow=nrow, padding=1, pad_value=1.0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(MAX_WIDTH - 0.4, 1.2 * nrow), 1.2 * -(-len(imgs) // nrow) + 0.4))
    ax.imshow(_as_numpy_image(grid), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def pixel_mask(mask: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """Patch mask ``[B, L]`` (1 = removed) -> pixel mask ``[B, C, H, W]``."""
    patches = mask[..., None].expand(-1, -1, patch_size * patch_size * channels).float()
    return unpatchify(patches, patch_size, channels)


def reconstruction_panels(
    model, imgs: torch.Tensor, mask_ratio: float = 0.75, generator=None
) -> dict[str, torch.Tensor]:
    """The four panels, each ``[B, C, H, W]``: original, masked (removed = 0.5), reconstruction, and
    the reconstruction with the visible patches pasted back from the original."""
    model.eval()
    device = next(model.parameters()).device
    reconstruction, mask = model.reconstruct(imgs.to(device), mask_ratio, generator)
    imgs, reconstruction = imgs.float().cpu(), reconstruction.float().cpu()
    removed = pixel_mask(mask.cpu(), model.config.patch_size, model.config.channels)
    return {
        "original": imgs,
        "masked": imgs * (1 - removed) + 0.5 * removed,
        "reconstruction": reconstruction.clamp(0, 1),
        "reconstruction + visible": (imgs * (1 - removed) + reconstruction * removed).clamp(0, 1),
        "mask": mask.cpu(),
    }


def _overlay_patch_grid(ax, size: int, patch_size: int, mask_row: torch.Tensor | None = None) -> None:
    """Thin patch boundaries; with ``mask_row`` ``[L]``, hatch the removed patches."""
    for edge in range(patch_size, size, patch_size):
        ax.axhline(edge - 0.5, color="white", linewidth=0.6, alpha=0.8)
        ax.axvline(edge - 0.5, color="white", linewidth=0.6, alpha=0.8)
    if mask_row is None:
        return
    per_row = size // patch_size
    for index in torch.nonzero(mask_row).flatten().tolist():
        row, column = divmod(index, per_row)
        corner = (column * patch_size - 0.5, row * patch_size - 0.5)
        ax.add_patch(Rectangle(corner, patch_size, patch_size, fill=False, hatch="///", edgecolor="black", linewidth=0))


def plot_reconstructions(model, imgs: torch.Tensor, mask_ratio: float = 0.75, generator=None, grid: bool = True):
    """One row per image: original | masked | reconstruction | reconstruction + visible; returns the figure."""
    panels = reconstruction_panels(model, imgs, mask_ratio, generator)
    rows, size, patch_size = len(imgs), imgs.shape[-1], model.config.patch_size
    fig, axes = plt.subplots(rows, 4, figsize=(8, 2 * rows + 0.3), squeeze=False)
    for row in range(rows):
        for column, name in enumerate(PANELS):
            ax = axes[row, column]
            ax.imshow(_as_numpy_image(panels[name][row]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if grid:
                _overlay_patch_grid(ax, size, patch_size, panels["mask"][row] if name == "masked" else None)
            if row == 0:
                ax.set_title(name, fontsize=9)
    kept = int(panels["mask"].shape[1] * (1 - mask_ratio))
    fig.suptitle(
        f"mask ratio {mask_ratio:.2f}: the encoder saw {kept} of {panels['mask'].shape[1]} patches", fontsize=10
    )
    fig.tight_layout()
    return fig


def mae_explorer(models, images: torch.Tensor, seed: int = 0):
    """An ipywidgets explorer: sliders for mask ratio and image, a patch-size menu when ``models``
    is a ``{patch_size: model}`` dict with several entries. Re-runs inference on every change.

    Returns the widget, not displayed: a notebook shows it once as the cell's last expression.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from course_utils.viz.explorer import Explorer

    models = models if isinstance(models, dict) else {models.config.patch_size: models}
    controls = {
        "mask_ratio": widgets.FloatSlider(value=0.75, min=0.0, max=0.95, step=0.05, description="mask ratio"),
        "index": widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
        "patch_size": widgets.Dropdown(options=sorted(models), description="patch size", disabled=len(models) == 1),
    }

    def draw(mask_ratio, index, patch_size):
        generator = torch.Generator().manual_seed(seed + index)
        fig = plot_reconstructions(models[patch_size], images[index : index + 1], mask_ratio, generator)
        display(fig)
        plt.close(fig)

    output = widgets.interactive_output(draw, controls)
    return Explorer([widgets.HBox(list(controls.values())), output])


def plot_mask_ratio_sweep(sweep: dict[str, list[float]], trained_ratio: float = 0.75):
    """Two panels against mask ratio: held-out reconstruction loss, and encoder MFLOPs per image.

    ``sweep`` is what ``models.mae.mask_ratio_sweep`` returns; returns the figure.
    """
    fig, (loss_ax, cost_ax) = plt.subplots(1, 2, figsize=(8.6, 3.2))
    ratios = sweep["mask_ratio"]
    loss_ax.plot(
        ratios, sweep["loss"], color=PALETTE["blue"], linestyle=LINESTYLES[0], marker=MARKERS[0], label="held-out loss"
    )
    cost_ax.plot(
        ratios,
        sweep["encoder_mflops"],
        color=PALETTE["vermillion"],
        linestyle=LINESTYLES[1],
        marker=MARKERS[1],
        label="encoder MFLOPs",
    )
    for ax, ylabel in ((loss_ax, "reconstruction loss (removed patches)"), (cost_ax, "encoder MFLOPs per image")):
        ax.axvline(
            trained_ratio,
            color=PALETTE["black"],
            linestyle=LINESTYLES[2],
            linewidth=1,
            label=f"trained at {trained_ratio}",
        )
        ax.set(xlabel="mask ratio", ylabel=ylabel)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.grid(alpha=0.3)
        ax.legend()
    cost_ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def plot_probe_accuracies(accuracies: dict[str, float], chance: float = 0.1):
    """Horizontal bars of linear-probe accuracy per feature set, hatched differently for greyscale."""
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(accuracies) + 0.8))
    names = list(accuracies)
    colours = [PALETTE["blue"], PALETTE["orange"], PALETTE["green"], PALETTE["purple"]]
    hatches = ["", "//", "..", "xx"]
    for i, name in enumerate(names):
        ax.barh(i, accuracies[name], color=colours[i % 4], hatch=hatches[i % 4], edgecolor="black")
        ax.text(accuracies[name] + 0.01, i, f"{accuracies[name]:.3f}", va="center")
    ax.axvline(chance, color=PALETTE["black"], linestyle=LINESTYLES[1], linewidth=1, label="chance")
    ax.set(yticks=range(len(names)), yticklabels=names, xlim=(0, 1.1), xlabel="test accuracy (logistic regression)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_probe_during_pretraining(
    evaluations: list[dict[str, float]], baselines: dict[str, float], metric: str = "probe accuracy"
):
    """Probe accuracy against pretraining step, with a dashed line per baseline; returns the figure.

    ``evaluations`` is ``History.evaluations`` (``[{"step": s, metric: value}, ...]``), ``baselines``
    ``{name: accuracy}`` for feature sets that do not train (a random encoder, raw pixels).
    """
    if not evaluations or any(metric not in evaluation for evaluation in evaluations):
        raise ValueError(f"evaluations must be a non-empty list of dicts with 'step' and {metric!r}")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = [evaluation["step"] for evaluation in evaluations]
    ax.plot(
        steps,
        [evaluation[metric] for evaluation in evaluations],
        color=PALETTE["blue"],
        linestyle=LINESTYLES[0],
        marker=MARKERS[0],
        label="MAE-pretrained encoder",
    )
    colours = [PALETTE["orange"], PALETTE["green"], PALETTE["purple"]]
    for i, (name, accuracy) in enumerate(baselines.items()):
        ax.axhline(accuracy, color=colours[i % 3], linestyle=LINESTYLES[1 + i % 3], linewidth=1.5, label=name)
    ax.set(xlabel="pretraining step", ylabel=f"{metric} (test)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
