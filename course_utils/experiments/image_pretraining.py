"""Lab 6's image experiments: masked image modelling (MAE, SimMIM) against contrastive learning (SimCLR).

    config = image_comparison_config()              # sizes from the profile (ci, cpu, gpu)
    comparison = compare_methods(config)            # every method and seed at equal training FLOPs
    comparison.table                                # one row per method: mean and sd over seeds
    batch_size_sweep(config)                        # does contrastive learning need large batches?
    augmentation_ablation(config)                   # which method depends on its augmentations?

The data are scikit-learn's 1797 handwritten digits, upsampled to ``image_size`` (1 channel),
split once (stratified, seeded) into a pretraining set, whose labels only the probes and
fine-tuning read, and a held-out test set. The three methods train the same ViT encoder
(``config.encoder``, MAE's encoder through ``ViTEncoder``) for the same budget of
training FLOPs: the budget is what MAE spends in ``budget_mae_steps`` steps of ``batch_size``
images, and each method gets ``floor(budget / its FLOPs per step)`` steps. FLOPs per step are
counted once per method and batch size by ``models.flops.counted_flops`` on one forward and
backward pass (``training_flops``); SimCLR's step encodes both views of every image.

Each pretrained encoder is measured by

* a **linear probe**: logistic regression on its frozen features (the mean of its patch tokens,
  before SimCLR's projection head), trained on the pretraining set's labels, tested on the test set;
* **fine-tuning** at each label budget: encoder + linear head trained on ``label_budget`` labelled
  images, part of them kept for early stopping (``core.fine_tune``, as in Labs 4 and 5);
* its parameter count, steps, FLOPs per step and pretraining wall-clock seconds.

Two floors frame the numbers: a randomly initialised encoder (probed and fine-tuned) and a
linear probe on the raw pixels.

SimCLR's views come from ``crop_and_flip``, a batched version of ``contrastive.augmentations``'s
crop and flip (one ``grid_sample`` per batch, not a Python loop per image: about 30 times faster
on a CPU). The digits are grey: colour distortion does not apply.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.device import get_device, seed_everything
from course_utils.experiments.core import (
    FineTuning,
    finetuned_accuracy,
    require_ints,
    require_subset,
    sized,
    steps_for_budget,
    summarise,
)
from course_utils.models.flops import counted_flops
from course_utils.models.mae import MAEConfig, MaskedAutoencoder, extract_features, linear_probe_accuracy
from course_utils.models.simclr import SimCLR
from course_utils.models.simmim import SimMIM
from course_utils.models.vit import ViTEncoder
from course_utils.train import TrainConfig, fit
from course_utils.vision import digits

METHODS = ("simclr", "mae", "simmim")
FLOORS = ("random encoder", "raw pixels")
NUM_CLASSES = 10
# Grey digits have no colour to distort: SimCLR's colour jitter does not apply, crop and flip remain.
AUGMENTATIONS = {
    "crop+flip": dict(crop=True, flip=True),
    "crop": dict(crop=True, flip=False),
    "flip": dict(crop=False, flip=True),
    "none": dict(crop=False, flip=False),
}


@dataclass
class ImageComparisonConfig:
    """Every size of Lab 6's image experiments; ``image_comparison_config()`` picks them by profile."""

    encoder: MAEConfig = field(  # the ViT every method trains (one channel); the decoder sizes are MAE's own
        default_factory=lambda: MAEConfig(
            image_size=16, patch_size=4, channels=1, dim=32, depth=2, num_heads=4,
            decoder_dim=32, decoder_depth=1, decoder_num_heads=4,
        )
    )
    # what each method adds
    mae_mask_ratio: float = 0.75
    simmim_mask_ratio: float = 0.6
    projection_dim: int = 64  # SimCLR's projection head: dim -> dim -> projection_dim
    temperature: float = 0.2
    crop_min_scale: float = 0.5  # the smallest crop, a fraction of the image's area (SimCLR: 0.08; a digit needs more)
    masked_augmentation: str = "none"  # what MAE and SimMIM see in compare_methods (a key of AUGMENTATIONS)
    # pretraining at equal FLOPs
    batch_size: int = 64
    budget_mae_steps: int = 400  # the FLOP budget: what MAE spends in this many steps of batch_size images
    learning_rate: float = 3e-3
    # probes, fine-tuning and the runs
    test_fraction: float = 0.3
    label_budgets: tuple[int, ...] = (50, 500)
    finetune: FineTuning = field(
        default_factory=lambda: FineTuning(max_steps=80, eval_every=10, patience=3, lr=2e-3, warmup_steps=8)
    )
    probe_max_iter: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    sweep_batch_sizes: tuple[int, ...] = (16, 64, 256)
    methods: tuple[str, ...] = METHODS

    def __post_init__(self):
        require_subset("methods", self.methods, METHODS)
        require_ints("seeds", self.seeds, 0)
        require_ints("label_budgets", self.label_budgets, 4, "part of each is kept for early stopping")
        require_ints("sweep_batch_sizes", self.sweep_batch_sizes, 2, "SimCLR needs negatives")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2 (SimCLR needs negatives), got {self.batch_size!r}")
        if not isinstance(self.budget_mae_steps, int) or self.budget_mae_steps < 1:
            raise ValueError(f"budget_mae_steps must be a positive int, got {self.budget_mae_steps!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        for name in ("mae_mask_ratio", "simmim_mask_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not 0.0 < self.crop_min_scale <= 1.0:
            raise ValueError(f"crop_min_scale must be in (0, 1], got {self.crop_min_scale!r}")
        if self.masked_augmentation not in AUGMENTATIONS:
            raise ValueError(
                f"masked_augmentation must be one of {tuple(AUGMENTATIONS)}, got {self.masked_augmentation!r}"
            )
        if not isinstance(self.encoder, MAEConfig) or self.encoder.channels != 1:
            raise ValueError(f"encoder must be a one-channel MAEConfig (the digits are grey), got {self.encoder!r}")


def image_comparison_config(profile: str | None = None, **overrides) -> ImageComparisonConfig:
    """The sizes for ``profile`` (default: the current one), with ``overrides`` applied."""
    # fmt: off
    return sized(
        ImageComparisonConfig, profile, overrides,
        ci=dict(
            encoder=MAEConfig(image_size=8, patch_size=4, channels=1, dim=16, depth=1, num_heads=2,
                              decoder_dim=16, decoder_depth=1, decoder_num_heads=2),
            projection_dim=16, batch_size=16, budget_mae_steps=6, seeds=(0, 1), sweep_batch_sizes=(8, 32),
            probe_max_iter=200, label_budgets=(12, 20),
            finetune=FineTuning(max_steps=6, eval_every=3, patience=2, lr=2e-3, warmup_steps=1, batch_size=8),
        ),
        cpu=dict(),
        gpu=dict(
            encoder=MAEConfig(image_size=32, patch_size=4, channels=1, dim=192, depth=6, num_heads=6,
                              decoder_dim=128, decoder_depth=2, decoder_num_heads=4),
            projection_dim=128,
            batch_size=256, budget_mae_steps=3000, learning_rate=1e-3, seeds=(0, 1, 2, 3, 4),
            sweep_batch_sizes=(32, 128, 512, 1024),
            finetune=FineTuning(max_steps=400, eval_every=25, patience=3, lr=2e-3, warmup_steps=40),
        ),
    )
    # fmt: on


# --------------------------------------------------------------------------- data


@dataclass
class DigitSplit:
    """The digits split once: ``train`` (pretraining, probe and fine-tuning labels) and held-out ``test``."""

    train_images: torch.Tensor  # [N, 1, S, S] in [0, 1]
    train_labels: torch.Tensor  # [N]
    test_images: torch.Tensor  # [M, 1, S, S]
    test_labels: torch.Tensor  # [M]


def split_digits(config: ImageComparisonConfig, seed: int = 0) -> DigitSplit:
    """``vision.digits(config.encoder.image_size)`` split stratified by label, ``config.test_fraction`` held out."""
    from sklearn.model_selection import train_test_split

    images, labels = digits(config.encoder.image_size)
    train, test = train_test_split(
        torch.arange(len(labels)), test_size=config.test_fraction, stratify=labels, random_state=seed
    )
    return DigitSplit(images[train], labels[train], images[test], labels[test])


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _check_augmentation(augmentation: str) -> None:
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {tuple(AUGMENTATIONS)}, got {augmentation!r}")


def crop_and_flip(
    images: torch.Tensor,
    crop: bool = True,
    flip: bool = True,
    min_scale: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SimCLR's crop and flip (``contrastive.augmentations`` without colour), batched: ``[B, C, H, W]`` -> same shape.

    Each image gets its own ``RandomResizedCrop`` (``min_scale`` to 100% of the area, aspect ratio 3/4 to 4/3,
    resized back bilinearly) and its own horizontal flip with probability 1/2, as one
    ``affine_grid`` / ``grid_sample`` for the whole batch instead of a Python loop over images.
    torchvision retries a crop that does not fit; here its sides are clipped to the image.
    """
    B = images.shape[0]
    rand = lambda: torch.rand(B, generator=generator)  # noqa: E731  [B] uniforms on the CPU
    width = height = torch.ones(B)
    if crop:
        area, log_ratio = min_scale + (1 - min_scale) * rand(), math.log(3 / 4) + math.log(16 / 9) * rand()
        width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # fractions of the image side
        height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    centre_x, centre_y = (1 - width) * (2 * rand() - 1), (1 - height) * (2 * rand() - 1)  # in [-1, 1] units
    mirror = torch.where(rand() < 0.5, -1.0, 1.0) if flip else torch.ones(B)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)  # [B, H, W, 2]
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pretraining_batches(
    method: str,
    images: torch.Tensor,
    batch_size: int,
    augmentation: str,
    generator: torch.Generator,
    crop_min_scale: float = 0.2,
):
    """An endless stream of shuffled batches (reshuffled every epoch, the last partial batch dropped).

    SimCLR gets ``(view1, view2)``, two independent augmentations ``[B, C, H, W]`` of the same B
    images (with ``"none"``, the images twice); MAE and SimMIM get one batch ``[B, C, H, W]``,
    augmented unless ``augmentation == "none"``. Everything is drawn from ``generator``, on the CPU.
    """
    _check_method(method)
    _check_augmentation(augmentation)
    if not 2 <= batch_size <= len(images):
        raise ValueError(f"batch_size must be in [2, {len(images)}] (the number of images), got {batch_size!r}")
    options = AUGMENTATIONS[augmentation] | dict(min_scale=crop_min_scale, generator=generator)
    while True:
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images) - batch_size + 1, batch_size):
            batch = images[order[start : start + batch_size]]  # [B, C, H, W]
            if augmentation == "none":
                yield (batch, batch) if method == "simclr" else batch
            elif method == "simclr":
                yield crop_and_flip(batch, **options), crop_and_flip(batch, **options)
            else:
                yield crop_and_flip(batch, **options)


# --------------------------------------------------------------------------- models and FLOPs


def build_model(method: str, config: ImageComparisonConfig) -> nn.Module:
    """A fresh pretraining model for ``method`` around ``config.encoder``."""
    _check_method(method)
    sizes = config.encoder
    if method == "simclr":
        return SimCLR(sizes, hidden_dim=config.encoder.dim, out_dim=config.projection_dim, temperature=config.temperature)
    return MaskedAutoencoder(sizes) if method == "mae" else SimMIM(sizes)


def pretraining_loss(method: str, config: ImageComparisonConfig, model: nn.Module, batch) -> torch.Tensor:
    """The scalar loss of one step: NT-Xent over both views, or the masked reconstruction loss."""
    if method == "simclr":
        return model(*batch)
    if method == "mae":
        return model(batch, config.mae_mask_ratio)[0]
    if method == "simmim":
        return model(batch, config.simmim_mask_ratio)[0]
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def training_flops(method: str, config: ImageComparisonConfig, batch_size: int) -> int:
    """FLOPs of one training step (forward + backward) of ``method`` on ``batch_size`` images.

    Counted by ``models.flops.counted_flops`` on a fresh CPU model and random images. SimCLR's step
    encodes ``2 x batch_size`` views; the optimiser's update is not counted.
    """
    model = build_model(method, config).train()
    shape = (batch_size, 1, config.encoder.image_size, config.encoder.image_size)
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
    """Parameters of the encoder that probes and fine-tuning read (SimMIM's mask token is not among them)."""
    return sum(p.numel() for name, p in encoder.named_parameters() if name != "encoder_mask_token")


def pretrain(
    method: str,
    config: ImageComparisonConfig,
    images: torch.Tensor,
    steps: int,
    seed: int,
    device: torch.device,
    batch_size: int | None = None,
    augmentation: str | None = None,
    learning_rate: float | None = None,
) -> tuple[nn.Module, float]:
    """Pretrain a fresh ``method`` model on ``images`` ``[N, C, H, W]`` for ``steps`` steps: ``(model, seconds)``.

    ``augmentation`` defaults to ``"crop+flip"`` for SimCLR and ``config.masked_augmentation``
    for MAE and SimMIM; ``batch_size`` and ``learning_rate`` default to the config's.
    """
    generator = seed_everything(seed)  # a seed gives SimCLR and MAE the same initial encoder
    model = build_model(method, config)
    if augmentation is None:
        augmentation = "crop+flip" if method == "simclr" else config.masked_augmentation
    stream = pretraining_batches(
        method, images, batch_size or config.batch_size, augmentation, generator, config.crop_min_scale
    )
    schedule = TrainConfig(steps=steps, lr=learning_rate or config.learning_rate, live_plot=False)
    begin = time.perf_counter()
    fit(model, stream, lambda model, batch: pretraining_loss(method, config, model, batch), schedule, device)
    return model, time.perf_counter() - begin


# --------------------------------------------------------------------------- measurements


def probe_accuracy(encoder: ViTEncoder, data: DigitSplit, config: ImageComparisonConfig) -> float:
    """Linear probe test accuracy on ``encoder``'s frozen features ``[N, D]`` (mean of the patch tokens)."""
    train = extract_features(encoder, data.train_images)
    test = extract_features(encoder, data.test_images)
    return _probe(train, data.train_labels, test, data.test_labels, config)


def pixel_probe_accuracy(data: DigitSplit, config: ImageComparisonConfig) -> float:
    """Linear probe test accuracy on the raw pixels, ``[N, C*H*W]``: the floor every encoder should beat."""
    train, test = data.train_images.flatten(1), data.test_images.flatten(1)  # [N, C*H*W]
    return _probe(train, data.train_labels, test, data.test_labels, config)


def _probe(train_features, train_labels, test_features, test_labels, config: ImageComparisonConfig) -> float:
    """``linear_probe_accuracy`` on one BLAS thread: threads only slow a problem this small down."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return linear_probe_accuracy(train_features, train_labels, test_features, test_labels, config.probe_max_iter)


class ImageClassifier(nn.Module):
    """An encoder, its patch tokens averaged, then a linear head: ``[B, C, H, W]`` -> logits ``[B, classes]``.

    The head is MAE's linear-probing head: a ``BatchNorm1d`` without affine parameters, then a linear
    layer. It standardises the features as the probe's ``StandardScaler`` does; without it a
    masked model's features, close together, barely move a freshly initialised head.
    """

    def __init__(self, encoder: ViTEncoder, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.encoder = encoder
        dim = encoder.config.dim
        self.head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, C, H, W]`` -> logits ``[B, classes]``."""
        pooled = self.encoder(images)[:, 1:].mean(dim=1)  # [B, 1+L, D] -> [B, D]
        return self.head(pooled)  # [B, classes]


def finetune_accuracy(
    encoder: ViTEncoder, data: DigitSplit, label_budget: int, recipe: FineTuning, seed: int, device: torch.device
) -> float:
    """Test accuracy after fine-tuning a copy of ``encoder`` plus a linear head on ``label_budget`` labelled images
    of ``data.train_*`` (``core.finetuned_accuracy``); ``encoder`` is untouched."""
    seed_everything(seed)
    classifier = ImageClassifier(copy.deepcopy(encoder))
    train = dict(images=data.train_images, labels=data.train_labels)
    test = dict(images=data.test_images, labels=data.test_labels)
    return finetuned_accuracy(classifier, train, test, label_budget, recipe, seed, device)


def finetune_metric(label_budget: int) -> str:
    """The column name of the fine-tuning accuracy with ``label_budget`` labels."""
    return f"finetune_{label_budget}"


# --------------------------------------------------------------------------- the experiments


@dataclass
class MethodComparison:
    """What ``compare_methods`` measured; ``table`` summarises ``runs`` over seeds."""

    runs: pd.DataFrame  # one row per (method, seed), the floors as methods "random encoder" and "raw pixels"
    budget_flops: float
    seconds: float  # the whole comparison, wall-clock
    metrics: list[str] = field(default_factory=list)  # the columns of runs that vary over seeds

    @property
    def table(self) -> pd.DataFrame:
        """One row per method: parameters, steps, FLOPs per step, then each metric's mean, sd and interval over seeds."""
        fixed = ["parameters", "encoder_parameters", "steps", "flops_per_step"]
        return summarise(self.runs, "method", self.metrics, fixed=fixed)


def _check_data_fits(config: ImageComparisonConfig, data: DigitSplit) -> None:
    available = len(data.train_labels)
    if max(config.label_budgets) > available:
        raise ValueError(f"label_budgets must be <= {available} (the pretraining images), got {config.label_budgets}")
    if max(config.batch_size, *config.sweep_batch_sizes) > available:
        raise ValueError(f"batch_size and sweep_batch_sizes must be <= {available} (the pretraining images)")


def compare_methods(
    config: ImageComparisonConfig | None = None, device: torch.device | None = None
) -> MethodComparison:
    """Pretrain every method in ``config.methods`` for each seed at equal FLOPs, then probe and fine-tune it.

    The floors: a random encoder per seed (SimCLR's and MAE's initial weights for that seed),
    probed and fine-tuned; and a linear probe on raw pixels (deterministic: computed once, one row per seed).
    """
    started = time.perf_counter()
    config = config or image_comparison_config()
    device = device or get_device()
    data = split_digits(config)
    _check_data_fits(config, data)
    flops = {method: training_flops(method, config, config.batch_size) for method in {*config.methods, "mae"}}
    budget = flops["mae"] * config.budget_mae_steps
    pixels = pixel_probe_accuracy(data, config)
    runs = []
    for seed in config.seeds:
        for method in (*config.methods, "random encoder"):
            if method == "random encoder":
                seed_everything(seed)
                model, steps, per_step, seconds = ViTEncoder(config.encoder).to(device), 0, 0, 0.0
                encoder = model
            else:
                per_step = flops[method]
                steps = steps_for_budget(budget, per_step)
                model, seconds = pretrain(method, config, data.train_images, steps, seed, device)
                encoder = pretrained_encoder(method, model)
            row = dict(
                method=method,
                seed=seed,
                parameters=sum(p.numel() for p in model.parameters()),
                encoder_parameters=encoder_parameters(encoder),
                steps=steps,
                flops_per_step=per_step,
                probe_accuracy=probe_accuracy(encoder, data, config),
                pretraining_seconds=seconds,
            )
            for label_budget in config.label_budgets:
                accuracy = finetune_accuracy(encoder, data, label_budget, config.finetune, seed, device)
                row[finetune_metric(label_budget)] = accuracy
            runs.append(row)
        runs.append(
            dict(method="raw pixels", seed=seed, parameters=0, encoder_parameters=0, steps=0, flops_per_step=0,
                 probe_accuracy=pixels, pretraining_seconds=0.0)
        )
    metrics = ["probe_accuracy", *map(finetune_metric, config.label_budgets), "pretraining_seconds"]
    runs = pd.DataFrame(runs)
    order = {name: index for index, name in enumerate((*config.methods, *FLOORS))}
    runs = runs.sort_values(
        ["method", "seed"], key=lambda column: column.map(order) if column.name == "method" else column
    )
    return MethodComparison(runs.reset_index(drop=True), budget, time.perf_counter() - started, metrics)


def batch_size_sweep(
    config: ImageComparisonConfig | None = None, device: torch.device | None = None
) -> pd.DataFrame:
    """SimCLR and MAE at each of ``config.sweep_batch_sizes``, at ``compare_methods``'s FLOP budget, one seed.

    Equal FLOPs means fewer steps for bigger batches (about the same number of images seen, as
    SimCLR's batch-size study at a fixed number of epochs). SimCLR's negatives for each view are the
    other ``2B - 2`` views of its batch. The learning rate scales with ``sqrt(B / config.batch_size)``
    (SimCLR's square-root scaling). Returns one row per (method, batch size): ``method, batch_size,
    negatives, steps, flops_per_step, probe_accuracy, pretraining_seconds``.
    """
    config = config or image_comparison_config()
    device = device or get_device()
    data = split_digits(config)
    _check_data_fits(config, data)
    budget = training_flops("mae", config, config.batch_size) * config.budget_mae_steps
    rows = []
    for batch_size in config.sweep_batch_sizes:
        for method in ("simclr", "mae"):
            per_step = training_flops(method, config, batch_size)
            steps = steps_for_budget(budget, per_step)
            lr = config.learning_rate * math.sqrt(batch_size / config.batch_size)
            model, seconds = pretrain(
                method, config, data.train_images, steps, config.seeds[0], device, batch_size, learning_rate=lr
            )
            rows.append(
                dict(
                    method=method,
                    batch_size=batch_size,
                    negatives=2 * batch_size - 2 if method == "simclr" else 0,
                    steps=steps,
                    flops_per_step=per_step,
                    probe_accuracy=probe_accuracy(pretrained_encoder(method, model), data, config),
                    pretraining_seconds=seconds,
                )
            )
    return pd.DataFrame(rows)


def augmentation_ablation(
    config: ImageComparisonConfig | None = None, device: torch.device | None = None
) -> pd.DataFrame:
    """SimCLR with crop+flip, crop only, flip only and none; MAE with crop+flip and none; equal FLOPs, one seed.

    The digits are grey, so SimCLR's colour distortion (the augmentation its paper found to matter
    most, with cropping) does not apply; only crop (``crop_and_flip``: ``config.crop_min_scale`` to 100%
    of the area) and horizontal flip are ablated. A CIFAR-10 copy on disk (``vision.cifar10``, never
    downloaded here) would let colour be ablated too; these functions use the digits only.
    Returns one row per (method, augmentation): ``method, augmentation, steps, probe_accuracy,
    pretraining_seconds``.
    """
    config = config or image_comparison_config()
    device = device or get_device()
    data = split_digits(config)
    _check_data_fits(config, data)
    flops = {method: training_flops(method, config, config.batch_size) for method in ("simclr", "mae")}
    budget = flops["mae"] * config.budget_mae_steps
    rows = []
    for method, augmentation in [*(("simclr", name) for name in AUGMENTATIONS), ("mae", "crop+flip"), ("mae", "none")]:
        steps = steps_for_budget(budget, flops[method])
        model, seconds = pretrain(
            method, config, data.train_images, steps, config.seeds[0], device, augmentation=augmentation
        )
        rows.append(
            dict(
                method=method,
                augmentation=augmentation,
                steps=steps,
                probe_accuracy=probe_accuracy(pretrained_encoder(method, model), data, config),
                pretraining_seconds=seconds,
            )
        )
    return pd.DataFrame(rows)
