"""Lab 6's image experiments: masked image modelling (MAE, SimMIM) against contrastive learning (SimCLR).

    config = image_comparison_config()              # sizes from the profile (ci, cpu, gpu)
    comparison = compare_methods(config)            # every method and seed at equal training FLOPs, with floors
    comparison.table                                # one row per method: mean, sd and 95% interval over seeds
    arms = augmentation_arms(config)                # the same methods with other views, every arm over seeds
    batches = batch_size_arms(config)               # SimCLR at other batch sizes, the same number of steps
    architecture_costs(config)                      # MAE's light decoder against SimMIM's full encoder, in FLOPs
    verdicts(comparison, arms, costs, sequences, batches)  # the comparison table, one verdict per row

**The task.** scikit-learn's 1797 digits, each upsampled to ``digit_size`` pixels and pasted at a random
whole-pixel offset on a black ``image_size`` canvas (``vision.place_digits``), so that a digit's identity
does not sit at fixed pixels and raw pixels lose their easy win. The digits are split once (stratified,
seeded): pretraining sees the training digits re-placed at fresh offsets in every batch; the probes' training
canvases are placed once (``PLACEMENT_SEED``), as are the held-out test canvases.

**Equal compute.** The three methods train the same ViT encoder (``config.encoder``, MAE's encoder through
``ViTEncoder``). The budget is what SimCLR spends in ``budget_simclr_steps`` steps of ``batch_size`` images;
MAE and SimMIM train on ``masked_batch_size`` images per step and get ``floor(budget / their FLOPs per step)``
steps. FLOPs per step are counted by ``models.flops.counted_flops`` on one forward and backward pass.
The optimiser is MAE's (AdamW, betas (0.9, 0.95), weight decay 0.05, 10% warmup then cosine).

**The probes**, on standardised frozen features (the mean of the patch tokens, before SimCLR's head):

* ``few_shot``: logistic regression on ``shots`` labels per class, the mean over ``few_shot_draws`` fixed
  draws of those labels (the primary metric: pretraining should pay most when labels are few);
* ``linear``: logistic regression on every training label;
* ``knn``: ``knn_k`` nearest neighbours (cosine).

**The floors**, printed beside every method: the same encoder with random weights (each seed's initial
weights), the raw pixels, and the pixels reduced by PCA to the encoder's width (fitted on unlabelled
pretraining canvases), so that an encoder is compared with pixels of its own dimension.

SimCLR's views come from ``contrastive.random_translate``, the batched form of the exercise's
``contrastive.digit_augmentations`` (a shift only; ``contrastive`` states the course's SimCLR defaults).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from course_utils.contrastive import TEMPERATURE, TRANSLATE, random_translate
from course_utils.device import get_device, seed_everything
from course_utils.experiments.core import (
    require_ints,
    require_subset,
    sized,
    steps_for_budget,
    summarise,
    with_interval,
)
from course_utils.models.flops import counted_flops
from course_utils.models.mae import MAEConfig, MaskedAutoencoder, extract_features
from course_utils.models.simclr import SimCLR
from course_utils.models.simmim import SimMIM
from course_utils.models.vit import ViTEncoder
from course_utils.train import TrainConfig, fit
from course_utils.vision import digits, place_digits

METHODS = ("simclr", "mae", "simmim")
RANDOM_ENCODER, PIXELS, PCA_PIXELS = "random encoder", "pixels", "pixels, PCA to the encoder's dim"
FLOORS = (RANDOM_ENCODER, PIXELS, PCA_PIXELS)
PROBES = ("few_shot", "linear", "knn")
VIEWS = ("shift", "none")  # SimCLR's two views (or the masked methods' input) shifted, or left as placed
NUM_CLASSES = 10
PLACEMENT_SEED = 12345  # where the probes' training canvases and the test canvases put their digits
FEW_SHOT_SEED = 777  # which labels each few-shot draw takes
PCA_SEED = 4242  # the unlabelled canvases the PCA floor is fitted on


@dataclass
class ImageComparisonConfig:
    """Every size of Lab 6's image experiments; ``image_comparison_config()`` picks them by profile."""

    encoder: MAEConfig = field(  # the ViT every method trains; the decoder sizes and norm_pix_loss are MAE's
        default_factory=lambda: MAEConfig(
            image_size=16, patch_size=4, channels=1, dim=64, depth=2, num_heads=4,
            decoder_dim=32, decoder_depth=1, decoder_num_heads=4, norm_pix_loss=True,
        )
    )
    digit_size: int = 12  # each digit's side on the image_size canvas
    # what each method adds
    mae_mask_ratio: float = 0.75
    simmim_mask_ratio: float = 0.6
    temperature: float = TEMPERATURE  # contrastive.TEMPERATURE states why
    projection_dim: int = 32  # SimCLR's head: dim -> dim -> projection_dim, narrowing as the paper's
    translate: float = TRANSLATE  # SimCLR's views: a shift of up to this fraction of the side
    # pretraining at equal FLOPs
    batch_size: int = 64  # SimCLR's
    masked_batch_size: int = 256  # MAE's and SimMIM's
    budget_simclr_steps: int = 650  # the FLOP budget: what SimCLR spends in this many steps of batch_size images
    learning_rate: float = 3e-3  # SimCLR's
    masked_learning_rate: float = 2e-3
    weight_decay: float = 0.05
    # probes and the runs
    test_fraction: float = 0.3
    shots: int = 10  # labels per class of each few-shot draw
    few_shot_draws: int = 20
    knn_k: int = 5
    probe_max_iter: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = METHODS
    augmentation_arms: tuple[tuple[str, str], ...] = (("simclr", "none"),)  # (method, views) beside the main runs
    deeper_encoder_depth: int = 4  # architecture_costs also counts an encoder this deep
    sweep_batch_sizes: tuple[int, ...] = (16,)  # SimCLR's other batch sizes, at budget_simclr_steps steps

    def __post_init__(self):
        require_subset("methods", self.methods, METHODS)
        require_ints("seeds", self.seeds, 0)
        for name in ("batch_size", "masked_batch_size"):
            require_ints(name, (getattr(self, name),), 2, "SimCLR needs negatives")
        require_ints("sweep_batch_sizes", self.sweep_batch_sizes, 2, "SimCLR needs negatives")
        for name in ("budget_simclr_steps", "shots", "few_shot_draws", "knn_k", "deeper_encoder_depth"):
            require_ints(name, (getattr(self, name),), 1)
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        for name in ("mae_mask_ratio", "simmim_mask_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not 0.0 <= self.translate <= 1.0:
            raise ValueError(f"translate must be in [0, 1], got {self.translate!r}")
        if not isinstance(self.encoder, MAEConfig) or self.encoder.channels != 1:
            raise ValueError(f"encoder must be a one-channel MAEConfig (the digits are grey), got {self.encoder!r}")
        if not isinstance(self.digit_size, int) or not 1 <= self.digit_size <= self.encoder.image_size:
            raise ValueError(f"digit_size must be an int in [1, {self.encoder.image_size}], got {self.digit_size!r}")
        for method, views in self.augmentation_arms:
            _check_method(method)
            if views not in VIEWS:
                raise ValueError(f"augmentation_arms' views must be one of {VIEWS}, got {views!r}")


def image_comparison_config(profile: str | None = None, **overrides) -> ImageComparisonConfig:
    """The sizes for ``profile`` (default: the current one), with ``overrides`` applied."""
    # fmt: off
    return sized(
        ImageComparisonConfig, profile, overrides,
        ci=dict(
            encoder=MAEConfig(image_size=8, patch_size=4, channels=1, dim=16, depth=1, num_heads=2,
                              decoder_dim=16, decoder_depth=1, decoder_num_heads=2, norm_pix_loss=True),
            digit_size=6, projection_dim=8, batch_size=16, masked_batch_size=16, budget_simclr_steps=4,
            seeds=(0, 1), probe_max_iter=200, few_shot_draws=3, deeper_encoder_depth=2, sweep_batch_sizes=(4,),
            augmentation_arms=(("simclr", "none"), ("mae", "shift")),
        ),
        cpu=dict(),
        gpu=dict(
            encoder=MAEConfig(image_size=32, patch_size=4, channels=1, dim=192, depth=6, num_heads=6,
                              decoder_dim=128, decoder_depth=2, decoder_num_heads=4, norm_pix_loss=True),
            digit_size=24, projection_dim=96, batch_size=256, masked_batch_size=256, budget_simclr_steps=3000,
            learning_rate=1e-3, masked_learning_rate=1e-3, deeper_encoder_depth=12,
            augmentation_arms=(("simclr", "none"), ("mae", "shift")), sweep_batch_sizes=(32, 1024),
        ),
    )
    # fmt: on


# --------------------------------------------------------------------------- data


@dataclass
class CanvasDigits:
    """The digits split once: training digits (pretraining re-places them), the probes' canvases, the test canvases."""

    train_digits: torch.Tensor  # [N, 1, s, s] in [0, 1], before placement
    train_images: torch.Tensor  # [N, 1, S, S] placed once
    train_labels: torch.Tensor  # [N]
    test_images: torch.Tensor  # [M, 1, S, S] placed once
    test_labels: torch.Tensor  # [M]


def canvas_digits(config: ImageComparisonConfig, seed: int = 0) -> CanvasDigits:
    """``vision.digits(config.digit_size)`` split stratified by label (``seed``), placed on ``image_size`` canvases."""
    from sklearn.model_selection import train_test_split

    tiles, labels = digits(config.digit_size)  # [1797, 1, s, s]
    train, test = train_test_split(
        torch.arange(len(labels)), test_size=config.test_fraction, stratify=labels, random_state=seed
    )
    generator = torch.Generator().manual_seed(PLACEMENT_SEED)
    size = config.encoder.image_size
    train_images = place_digits(tiles[train], size, generator)
    test_images = place_digits(tiles[test], size, generator)
    return CanvasDigits(tiles[train], train_images, labels[train], test_images, labels[test])


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def pretraining_batches(
    method: str, config: ImageComparisonConfig, data: CanvasDigits, generator: torch.Generator, views: str = "shift"
):
    """An endless stream of pretraining batches, each of freshly placed training digits ``[B, 1, S, S]``.

    Each batch draws B digits at random (with replacement) and pastes them at fresh offsets. SimCLR gets
    ``(view1, view2)``, two independent ``random_translate`` shifts of the same canvases (with ``views="none"``,
    the canvases twice); MAE and SimMIM get one batch, shifted only with ``views="shift"``. Everything is drawn
    from ``generator``, on the CPU.
    """
    _check_method(method)
    if views not in VIEWS:
        raise ValueError(f"views must be one of {VIEWS}, got {views!r}")
    batch_size = config.batch_size if method == "simclr" else config.masked_batch_size
    size = config.encoder.image_size
    while True:
        chosen = torch.randint(0, len(data.train_digits), (batch_size,), generator=generator)
        batch = place_digits(data.train_digits[chosen], size, generator)  # [B, 1, S, S]
        shift = lambda images: random_translate(images, config.translate, generator)  # noqa: E731
        if method == "simclr":
            yield (shift(batch), shift(batch)) if views == "shift" else (batch, batch)
        else:
            yield shift(batch) if views == "shift" else batch


# --------------------------------------------------------------------------- models and FLOPs


def default_views(method: str) -> str:
    """What ``compare_methods`` gives ``method``: SimCLR its shifted views, MAE and SimMIM the canvases as placed."""
    _check_method(method)
    return "shift" if method == "simclr" else "none"


def build_model(method: str, config: ImageComparisonConfig) -> nn.Module:
    """A fresh pretraining model for ``method`` around ``config.encoder``."""
    _check_method(method)
    if method == "simclr":
        return SimCLR(config.encoder, config.encoder.dim, config.projection_dim, config.temperature)
    return MaskedAutoencoder(config.encoder) if method == "mae" else SimMIM(config.encoder)


def pretraining_loss(method: str, config: ImageComparisonConfig, model: nn.Module, batch) -> torch.Tensor:
    """The scalar loss of one step: NT-Xent over both views, or the masked reconstruction loss."""
    if method == "simclr":
        return model(*batch)
    if method == "mae":
        return model(batch, config.mae_mask_ratio)[0]
    if method == "simmim":
        return model(batch, config.simmim_mask_ratio)[0]
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def training_flops(method: str, config: ImageComparisonConfig, batch_size: int | None = None) -> int:
    """FLOPs of one training step (forward + backward) of ``method`` on ``batch_size`` images (its own by default).

    Counted by ``models.flops.counted_flops`` on a fresh model and images on the meta device: shapes only, so
    counting costs no arithmetic at any size. SimCLR's step encodes ``2 x batch_size`` views; the optimiser's
    update is not counted.
    """
    if batch_size is None:
        batch_size = config.batch_size if method == "simclr" else config.masked_batch_size
    shape = (batch_size, 1, config.encoder.image_size, config.encoder.image_size)
    with torch.device("meta"):
        model = build_model(method, config).train()
        batch = (torch.rand(shape), torch.rand(shape)) if method == "simclr" else torch.rand(shape)
    return counted_flops(lambda: pretraining_loss(method, config, model, batch))


def pretrained_encoder(method: str, model: nn.Module) -> ViTEncoder:
    """The ``ViTEncoder`` inside a pretrained model (MAE's encoder copied out of the autoencoder)."""
    _check_method(method)
    if method != "mae":
        return model.encoder
    encoder = ViTEncoder(model.config).to(next(model.parameters()).device)
    encoder.load_state_dict(model.state_dict(), strict=False)
    return encoder.eval()


def encoder_parameters(encoder: ViTEncoder) -> int:
    """Parameters of the encoder that the probes read (SimMIM's mask token is not among them)."""
    return sum(p.numel() for name, p in encoder.named_parameters() if name != "encoder_mask_token")


def pretrain(
    method: str,
    config: ImageComparisonConfig,
    data: CanvasDigits,
    steps: int,
    seed: int,
    device: torch.device,
    views: str | None = None,
) -> tuple[nn.Module, float]:
    """Pretrain a fresh ``method`` model for ``steps`` steps on ``data``'s training digits: ``(model, seconds)``.

    ``views`` defaults to ``default_views(method)``: SimCLR's views are shifted, MAE and SimMIM see the
    placed canvases as they are.
    """
    views = views or default_views(method)
    generator = seed_everything(seed)  # a seed gives every method (and the random encoder) the same initial encoder
    model = build_model(method, config)
    stream = pretraining_batches(method, config, data, generator, views)
    lr = config.learning_rate if method == "simclr" else config.masked_learning_rate
    schedule = TrainConfig(
        steps=steps, lr=lr, weight_decay=config.weight_decay, betas=(0.9, 0.95), live_plot=False
    )
    begin = time.perf_counter()
    fit(model, stream, lambda model, batch: pretraining_loss(method, config, model, batch), schedule, device)
    return model, time.perf_counter() - begin


def random_encoder(config: ImageComparisonConfig, seed: int, device: torch.device) -> ViTEncoder:
    """The encoder every method starts from with ``seed``, untrained: the floor a pretraining must beat."""
    seed_everything(seed)
    return ViTEncoder(config.encoder).to(device).eval()


# --------------------------------------------------------------------------- probes


def few_shot_indices(labels: torch.Tensor, shots: int, draws: int) -> list[np.ndarray]:
    """``draws`` fixed draws (``FEW_SHOT_SEED``) of ``shots`` indices per class of ``labels`` ``[N]``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(FEW_SHOT_SEED)
    classes = np.unique(labels)
    return [
        np.concatenate([rng.choice(np.flatnonzero(labels == c), shots, replace=False) for c in classes])
        for _ in range(draws)
    ]


def probe_scores(train_features, train_labels, test_features, test_labels, config: ImageComparisonConfig) -> dict:
    """``{"few_shot", "linear", "knn"}`` test accuracies of probes on features ``[N, D]`` (standardised).

    One BLAS thread: threads only slow a problem this small down.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    logistic = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=config.probe_max_iter))  # noqa: E731
    with threadpool_limits(limits=1, user_api="blas"):
        few_shot = [
            logistic().fit(train_features[draw], train_labels[draw]).score(test_features, test_labels)
            for draw in few_shot_indices(train_labels, config.shots, config.few_shot_draws)
        ]
        linear = logistic().fit(train_features, train_labels).score(test_features, test_labels)
        knn = make_pipeline(StandardScaler(), KNeighborsClassifier(config.knn_k, metric="cosine"))
        knn = knn.fit(train_features, train_labels).score(test_features, test_labels)
    return dict(few_shot=float(np.mean(few_shot)), linear=float(linear), knn=float(knn))


def encoder_scores(encoder: ViTEncoder, data: CanvasDigits, config: ImageComparisonConfig) -> dict:
    """``probe_scores`` on ``encoder``'s frozen features ``[N, D]`` (the mean of its patch tokens)."""
    train = extract_features(encoder, data.train_images).numpy()
    test = extract_features(encoder, data.test_images).numpy()
    return probe_scores(train, data.train_labels, test, data.test_labels, config)


def pixel_scores(data: CanvasDigits, config: ImageComparisonConfig) -> dict[str, dict]:
    """The pixel floors: ``probe_scores`` on the raw pixels ``[N, S*S]`` and on their PCA to the encoder's width.

    The PCA is fitted on two passes of the training digits at fresh offsets (``PCA_SEED``), unlabelled, as
    pretraining sees them.
    """
    from sklearn.decomposition import PCA

    train, test = data.train_images.flatten(1).numpy(), data.test_images.flatten(1).numpy()
    generator = torch.Generator().manual_seed(PCA_SEED)
    unlabelled = torch.cat([place_digits(data.train_digits, config.encoder.image_size, generator) for _ in range(2)])
    dim = min(config.encoder.dim, train.shape[1], len(unlabelled))
    pca = PCA(dim, random_state=0).fit(unlabelled.flatten(1).numpy())
    return {
        PIXELS: probe_scores(train, data.train_labels, test, data.test_labels, config),
        PCA_PIXELS: probe_scores(
            pca.transform(train), data.train_labels, pca.transform(test), data.test_labels, config
        ),
    }


# --------------------------------------------------------------------------- the experiments


@dataclass
class MethodComparison:
    """What ``compare_methods`` measured; ``table`` summarises ``runs`` over seeds."""

    runs: pd.DataFrame  # one row per (method, seed), the floors as methods; a PROBES column each
    budget_flops: float
    seconds: float  # the whole comparison, wall-clock
    metrics: list[str] = field(default_factory=lambda: [*PROBES, "pretraining_seconds"])

    @property
    def table(self) -> pd.DataFrame:
        """One row per method: parameters, steps, FLOPs per step, then each metric's mean, sd and 95% interval."""
        fixed = ["encoder_parameters", "batch_size", "steps", "flops_per_step"]
        return summarise(self.runs, "method", self.metrics, fixed=fixed)


def _run_row(method, seed, encoder, data, config, steps=0, batch_size=0, per_step=0, seconds=0.0, **extra) -> dict:
    return dict(
        method=method, seed=seed, **extra, encoder_parameters=encoder_parameters(encoder), batch_size=batch_size,
        steps=steps, flops_per_step=per_step, **encoder_scores(encoder, data, config), pretraining_seconds=seconds,
    )


def _check_data_fits(config: ImageComparisonConfig, data: CanvasDigits) -> None:
    per_class = int(torch.bincount(data.train_labels).min())
    if config.shots > per_class:
        raise ValueError(f"shots must be <= {per_class} (the rarest class's training digits), got {config.shots}")


def compare_methods(
    config: ImageComparisonConfig | None = None, device: torch.device | None = None
) -> MethodComparison:
    """Pretrain every method in ``config.methods`` for each seed at equal FLOPs, then probe it; the floors beside.

    The floors: the random encoder for each seed (every method's initial weights for that seed), and the
    pixels, full and PCA-reduced (deterministic: measured once, one identical row per seed).
    """
    started = time.perf_counter()
    config = config or image_comparison_config()
    device = device or get_device()
    data = canvas_digits(config)
    _check_data_fits(config, data)
    flops = {method: training_flops(method, config) for method in {*config.methods, "simclr"}}
    budget = flops["simclr"] * config.budget_simclr_steps
    pixels = pixel_scores(data, config)
    runs = []
    for seed in config.seeds:
        for method in config.methods:
            steps = steps_for_budget(budget, flops[method])
            model, seconds = pretrain(method, config, data, steps, seed, device)
            batch_size = config.batch_size if method == "simclr" else config.masked_batch_size
            encoder = pretrained_encoder(method, model)
            runs.append(_run_row(method, seed, encoder, data, config, steps, batch_size, flops[method], seconds))
        runs.append(_run_row(RANDOM_ENCODER, seed, random_encoder(config, seed, device), data, config))
        for floor, scores in pixels.items():
            features = config.encoder.image_size**2 if floor == PIXELS else config.encoder.dim
            runs.append(dict(method=floor, seed=seed, encoder_parameters=0, batch_size=0, steps=0, flops_per_step=0,
                             **scores, pretraining_seconds=0.0, features=features))
    runs = pd.DataFrame(runs).drop(columns="features")
    order = {name: index for index, name in enumerate((*config.methods, *FLOORS))}
    runs = runs.sort_values(["method", "seed"], key=lambda c: c.map(order) if c.name == "method" else c)
    return MethodComparison(runs.reset_index(drop=True), budget, time.perf_counter() - started)


def augmentation_arms(
    config: ImageComparisonConfig | None = None, device: torch.device | None = None
) -> pd.DataFrame:
    """Each ``(method, views)`` of ``config.augmentation_arms`` pretrained for every seed at ``compare_methods``'s
    budget, one thing changed: SimCLR without its shift (two identical views), or MAE with one.

    Returns one row per (method, views, seed): ``method, views, seed, steps`` and the probes.
    """
    config = config or image_comparison_config()
    device = device or get_device()
    data = canvas_digits(config)
    _check_data_fits(config, data)
    budget = training_flops("simclr", config) * config.budget_simclr_steps
    rows = []
    for method, views in config.augmentation_arms:
        per_step = training_flops(method, config)
        steps = steps_for_budget(budget, per_step)
        for seed in config.seeds:
            model, seconds = pretrain(method, config, data, steps, seed, device, views=views)
            rows.append(_run_row(method, seed, pretrained_encoder(method, model), data, config, steps,
                                 per_step=per_step, seconds=seconds, views=views))
    return pd.DataFrame(rows)


def batch_size_arms(
    config: ImageComparisonConfig | None = None, device: torch.device | None = None
) -> pd.DataFrame:
    """SimCLR at each of ``config.sweep_batch_sizes`` for ``budget_simclr_steps`` steps, every seed.

    One thing changes against ``compare_methods``'s SimCLR: the batch, so the number of negatives per anchor
    (``2B - 2``) and the images seen per step. The steps stay fixed (at equal FLOPs a bigger batch would buy
    fewer steps, and the sweep would measure the step count). Returns one row per (batch size, seed):
    ``method, batch_size, negatives, seed, steps`` and the probes.
    """
    config = config or image_comparison_config()
    device = device or get_device()
    data = canvas_digits(config)
    _check_data_fits(config, data)
    rows = []
    for batch_size in config.sweep_batch_sizes:
        sized_config = replace(config, batch_size=batch_size)
        per_step = training_flops("simclr", sized_config)
        for seed in config.seeds:
            model, seconds = pretrain("simclr", sized_config, data, config.budget_simclr_steps, seed, device)
            rows.append(_run_row("simclr", seed, model.encoder, data, config, config.budget_simclr_steps, batch_size,
                                 per_step, seconds, negatives=2 * batch_size - 2))
    return pd.DataFrame(rows)


def batch_table(comparison: MethodComparison, batches: pd.DataFrame) -> pd.DataFrame:
    """``batch_size_arms``'s runs beside the main SimCLR runs, summarised per batch size (smallest first)."""
    main = comparison.runs[comparison.runs["method"] == "simclr"].assign(
        negatives=lambda runs: 2 * runs["batch_size"] - 2
    )
    runs = pd.concat([main, batches], ignore_index=True).sort_values(["batch_size", "seed"])
    return summarise(runs, "batch_size", list(PROBES), fixed=["negatives", "steps", "flops_per_step"])


def batch_reading(table: pd.DataFrame, metric: str = "few_shot") -> str:
    """One line: does SimCLR's largest batch beat its smallest on ``metric`` beyond the intervals (same steps)?"""
    small, large = table["batch_size"].min(), table["batch_size"].max()
    rows = table.assign(batch_size=table["batch_size"].astype(str))
    small, large = str(small), str(large)
    verdict = ("the larger batch is better" if above(rows, large, small, metric) else
               "the smaller batch is better" if above(rows, small, large, metric) else
               "no difference beyond the intervals")
    return (f"SimCLR, same steps: {verdict} ({metric} {summary_cell(rows, large, metric)} at batch {large}, "
            f"{summary_cell(rows, small, metric)} at batch {small})")


def architecture_costs(config: ImageComparisonConfig | None = None) -> pd.DataFrame:
    """FLOPs of one training step of MAE and SimMIM on ``masked_batch_size`` images (``counted_flops``).

    For ``config.encoder`` and for the same encoder ``deeper_encoder_depth`` layers deep, MAE's light decoder
    unchanged: the saving of MAE's asymmetric design grows with the encoder's share of the work. Returns one
    row per encoder depth: ``encoder_depth, decoder, mae_flops, simmim_flops, simmim_over_mae``.
    """
    config = config or image_comparison_config()
    rows = []
    for depth in dict.fromkeys((config.encoder.depth, config.deeper_encoder_depth)):
        sized_config = ImageComparisonConfig(**{**config.__dict__, "encoder": _with_depth(config.encoder, depth)})
        mae, simmim = (training_flops(method, sized_config) for method in ("mae", "simmim"))
        decoder = f"{config.encoder.decoder_dim} wide x {config.encoder.decoder_depth}"
        rows.append(dict(encoder_depth=depth, encoder_dim=config.encoder.dim, decoder=decoder,
                         mae_flops=mae, simmim_flops=simmim, simmim_over_mae=simmim / mae))
    return pd.DataFrame(rows)


def _with_depth(encoder: MAEConfig, depth: int) -> MAEConfig:
    return MAEConfig(**{**encoder.__dict__, "depth": depth})


# --------------------------------------------------------------------------- readings and verdicts


def above(table: pd.DataFrame, first: str, second: str, metric: str) -> bool:
    """Whether ``first``'s 95% interval of ``metric`` lies wholly above ``second``'s (a row each of a summary)."""
    rows = table.set_index(table.columns[0])
    low = rows.loc[first, f"{metric}_low"]
    high = rows.loc[second, f"{metric}_high"]
    if pd.isna(low):  # one run: its value
        low = rows.loc[first, f"{metric}_mean"]
    if pd.isna(high):
        high = rows.loc[second, f"{metric}_mean"]
    return bool(low > high)


def summary_cell(table: pd.DataFrame, name: str, metric: str) -> str:
    """``0.604 [0.526, 0.681]``: the mean of ``metric`` for row ``name`` of a summary and its 95% interval
    (``core.with_interval``); the mean alone where the interval is a point (the deterministic pixel floors)."""
    row = table.set_index(table.columns[0]).loc[name]
    mean, low, high = (row[f"{metric}_{part}"] for part in ("mean", "low", "high"))
    return f"{mean:.3f}" if low == high else with_interval(mean, low, high)


def comparison_reading(comparison: MethodComparison, metric: str = "few_shot") -> str:
    """One line: which methods' intervals of ``metric`` lie above all three floors'."""
    table = comparison.table
    methods = [m for m in table["method"] if m not in FLOORS]
    winners = [m for m in methods if all(above(table, m, floor, metric) for floor in FLOORS)]
    floors = ", ".join(f"{floor} {summary_cell(table, floor, metric)}" for floor in FLOORS)
    if not winners:
        return f"{metric}: no method's interval lies above every floor (floors: {floors})"
    shown = "; ".join(f"{m} {summary_cell(table, m, metric)}" for m in winners)
    return f"{metric}: above every floor, intervals not overlapping: {shown} (floors: {floors})"


def arms_table(comparison: MethodComparison, arms: pd.DataFrame) -> pd.DataFrame:
    """The main runs (SimCLR with its shift, MAE and SimMIM without) beside ``arms``, summarised per (method, views)."""
    main = comparison.runs[comparison.runs["method"].isin(METHODS)].copy()
    main["views"] = main["method"].map(default_views)
    runs = pd.concat([main, arms], ignore_index=True)
    runs = runs[runs["method"].isin(arms["method"].unique())]
    runs["arm"] = runs["method"] + ", views: " + runs["views"]
    return summarise(runs, "arm", list(PROBES), fixed=["method", "views", "steps"])


def arms_reading(table: pd.DataFrame, metric: str = "few_shot") -> str:
    """One line per method of an ``arms_table``: does the shift change ``metric`` beyond the intervals?"""
    lines = []
    for method in table["method"].unique():
        shift, none = f"{method}, views: shift", f"{method}, views: none"
        if shift not in set(table["arm"]) or none not in set(table["arm"]):
            continue
        helps, hurts = above(table, shift, none, metric), above(table, none, shift, metric)
        effect = "the shift helps" if helps else "the shift hurts" if hurts else "no difference beyond the intervals"
        lines.append(f"{method}: {effect} ({metric} {summary_cell(table, shift, metric)} with it, "
                     f"{summary_cell(table, none, metric)} without)")
    return "\n".join(lines)


COMPARISON_TABLE = pd.DataFrame(
    [
        ("task", "match augmented views", "reconstruct masked input"),
        ("training signal", "similarity/dissimilarity", "reconstruction error"),
        ("augmentation", "critical (defines positive pairs)", "less critical (masks provide signal)"),
        ("batch size", "often large (2048+ for SimCLR)", "can be small (256)"),
        ("architecture", "usually symmetric encoders", "can be asymmetric (MAE)"),
        ("best for", "images, multimodal, spatial data", "sequences, structured data, text"),
    ],
    columns=["aspect", "contrastive learning", "masked prediction"],
)


def verdicts(
    comparison: MethodComparison,
    arms: pd.DataFrame | None,
    costs: pd.DataFrame,
    sequences: pd.DataFrame | None = None,
    batches: pd.DataFrame | None = None,
    metric: str = "few_shot",
) -> pd.DataFrame:
    """Every row of the course's comparison table (``COMPARISON_TABLE``) with what was measured and a verdict:
    "agrees", "disagrees" or "not testable here". A claim that one thing beats another agrees only when their
    95% intervals do not overlap.

    comparison: ``compare_methods``'s result; arms: ``augmentation_arms``'s (or None); costs:
    ``architecture_costs``'s; sequences: ``record_pretraining.sequence_pretraining_comparison``'s runs (or None);
    batches: ``batch_size_arms``'s runs (or None).
    """
    table = comparison.table
    rows = [
        ("task", "agrees", "by construction: NT-Xent on two views (exercises 1-3) against masked-patch reconstruction "
         "(exercises 4-5, Lab 3)"),
        ("training signal", "agrees", "by construction: the losses are a similarity softmax and a pixel error"),
    ]
    if arms is None or arms.empty:
        rows.append(("augmentation", "not testable here", "no augmentation arm was run"))
    else:
        reading = arms_table(comparison, arms)
        lines = arms_reading(reading, metric).splitlines()
        simclr = next((line for line in lines if line.startswith("simclr")), "")
        mae = next((line for line in lines if not line.startswith("simclr")), "")
        if simclr.startswith("simclr: the shift helps"):
            verdict = "agrees"  # on the contrastive half, the claim's core; the masked half is read beside it
        elif simclr.startswith("simclr: the shift hurts"):
            verdict = "disagrees"
        else:
            verdict = "not testable here"
        rows.append(("augmentation", verdict, "; ".join(filter(None, [simclr, mae or "masked half not run"]))))
    papers = ("MAE itself pretrained with batches of 4096 and SimMIM with 2048, so 'can be small (256)' is not "
              "what either paper did")
    if batches is None or batches.empty:
        rows.append(("batch size", "not testable here", f"no batch-size arm was run; {papers}"))
    else:
        line = batch_reading(batch_table(comparison, batches), metric)
        verdict = ("agrees" if "larger batch is better" in line else
                   "disagrees" if "smaller batch is better" in line else "not testable here")
        rows.append(("batch size", verdict, f"{line}; a bigger batch also sees more images per step, so this "
                     f"does not separate negatives from data; {papers}"))
    ratio = costs["simmim_over_mae"]
    saving = ", ".join(f"{r.simmim_over_mae:.2f}x at encoder depth {r.encoder_depth}" for r in costs.itertuples())
    rows.append(("architecture", "agrees" if (ratio > 1).all() else "disagrees",
                 f"a SimMIM step costs {saving} an MAE step (decoder {costs['decoder'].iloc[0]}): the light decoder "
                 "on a deeper encoder saves more"))
    methods = set(table["method"])
    masked = [m for m in ("mae", "simmim") if m in methods]
    if "simclr" in methods and masked and all(above(table, "simclr", m, metric) for m in masked):
        image_verdict = "agrees"
    elif "simclr" in methods and any(above(table, m, "simclr", metric) for m in masked):
        image_verdict = "disagrees"
    else:
        image_verdict = "not testable here"
    image = ", ".join(f"{m} {summary_cell(table, m, metric)}" for m in table["method"])
    rows.append(("best for: images", image_verdict, f"{metric}: {image}"))
    rows.append(("best for: sequences", *sequence_verdict(sequences)))
    table = pd.DataFrame(rows, columns=["aspect", "verdict", "measured"])
    claims = COMPARISON_TABLE.set_index("aspect")
    claims.loc["best for: images"] = ("images, multimodal, spatial data", "(not named)")
    claims.loc["best for: sequences"] = ("(not named)", "sequences, structured data, text")
    return table.join(claims, on="aspect")[["aspect", *COMPARISON_TABLE.columns[1:], "verdict", "measured"]]


def sequence_verdict(sequences: pd.DataFrame | None) -> tuple[str, str]:
    """The EHR row: masked events against contrastive pretraining, AUROC at each label budget, 95% intervals."""
    if sequences is None or sequences.empty:
        return "not testable here", "the records were not run"
    pretrained = sequences[sequences["pretraining"].isin(["masked events", "contrastive", "from scratch"])]
    if pretrained.empty:
        pretrained = sequences
    table = summarise(pretrained, ["budget", "pretraining"], ["auroc"])
    wins, losses, parts = 0, 0, []
    for budget, rows in table.groupby("budget", sort=False):
        rows = rows.set_index("pretraining")
        cells = ", ".join(
            f"{name} {r.auroc_mean:.3f} [{r.auroc_low:.3f}, {r.auroc_high:.3f}]" for name, r in rows.iterrows()
        )
        if {"masked events", "contrastive"} <= set(rows.index):
            masked, contrastive = rows.loc["masked events"], rows.loc["contrastive"]
            wins += bool(masked.auroc_low > contrastive.auroc_high)
            losses += bool(contrastive.auroc_low > masked.auroc_high)
        lost = [name for name in rows.index if name == "contrastive" and "from scratch" in rows.index
                and rows.loc[name].auroc_mean < rows.loc["from scratch"].auroc_mean]
        note = "; contrastive below from scratch" if lost else ""
        parts.append(f"{budget} labels: {cells}{note}")
    verdict = "agrees" if wins and not losses else "disagrees" if losses and not wins else "not testable here"
    return verdict, " | ".join(parts)
