"""Contrastive learning on images: SimCLR (Chen et al., 2020) on the course's shared ViT encoder.

    view1, view2 = two_views(imgs, augmentations(32), generator)  # two augmentations of each image
    model = SimCLR(MAEConfig(image_size=32, patch_size=4))
    loss = model(view1, view2)                                    # NT-Xent over the 2B views
    features = model.features(imgs)                               # [B, D] for a linear probe

SimCLR learns by telling apart which two views come from the same image; MAE and SimMIM
(``course_utils.models.simmim``) learn by filling in masked patches. All three train the
same encoder (``ViTEncoder``, MAE's), so their probes and FLOPs compare like with like.

* ``augmentations``: SimCLR's random crop, flip and colour distortion (torchvision v2);
* ``two_views``: two independent augmentations of every image, reproducible for a generator;
* ``nt_xent_loss``: the normalised temperature-scaled cross-entropy (InfoNCE) of SimCLR;
* ``ProjectionHead`` and ``SimCLR``: the model; ``simclr_training_flops``: its cost per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from course_utils.models.mae import MAEConfig
from course_utils.models.simmim import ViTEncoder, encoder_forward_flops, patch_embedding_flops


def augmentations(
    image_size: int, channels: int = 3, crop: bool = True, flip: bool = True, colour: bool = True
) -> v2.Compose:
    """SimCLR's augmentations for ``[C, H, W]`` float images in [0, 1] (or uint8), as a ``v2.Compose``.

    * crop: ``RandomResizedCrop`` of 20% to 100% of the image, resized to ``image_size``;
    * flip: a horizontal flip with probability 1/2;
    * colour (``channels == 3`` only; a 1-channel image has no colour to distort): with
      probability 0.8 a ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` (SimCLR's strength 0.5, its CIFAR
      setting), then grey with probability 0.2. SimCLR's Gaussian blur is left out, as on CIFAR.

    With every step switched off, the identity (a baseline without augmentation).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    steps = []
    if crop:
        steps.append(v2.RandomResizedCrop(image_size, scale=(0.2, 1.0), antialias=True))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if colour and channels == 3:
        steps += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    return v2.Compose(steps or [v2.Identity()])


def augment_each(images: torch.Tensor, transform) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, H', W']``: ``transform`` applied to each image on its own (own crop, flip, colour)."""
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    return torch.stack([transform(image) for image in images])


def two_views(
    images: torch.Tensor, transform, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views ``[B, C, H', W']`` of every image in ``images`` ``[B, C, H, W]``.

    torchvision's v2 transforms draw from torch's global CPU RNG. With a ``generator``, one
    seed is drawn from it and the transforms run under ``torch.random.fork_rng`` seeded with
    it: the same generator state gives the same views, the generator advances (the next call
    gives new views), and the global RNG is left as it was. Without one, they draw from the
    global RNG (``torch.manual_seed`` makes that reproducible).
    """
    if generator is None:
        return augment_each(images, transform), augment_each(images, transform)
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return augment_each(images, transform), augment_each(images, transform)


def _check_embeddings(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> None:
    if z1.dim() != 2 or z1.shape[0] < 2:
        raise ValueError(f"z1 must be [B, D] with B >= 2 (other pairs are the negatives), got shape {tuple(z1.shape)}")
    if z2.shape != z1.shape:
        raise ValueError(f"z2 must have z1's shape {tuple(z1.shape)}, got {tuple(z2.shape)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss of the paired embeddings ``z1``, ``z2`` ``[B, D]`` (row i of each: one image's views).

    Each of the 2B embeddings is an anchor whose positive is its pair; the other 2B - 2 are
    negatives, and the anchor itself is excluded. With cosine similarities ``s`` and
    temperature ``t``, anchor i's loss is ``-log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t))``;
    the result is the mean over the 2B anchors.
    """
    _check_embeddings(z1, z2, temperature)
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2B, D], unit rows
    logits = z @ z.T / temperature  # [2B, 2B] cosine similarities / t
    self_pairs = torch.eye(2 * B, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))  # an anchor is not its own negative
    positives = torch.arange(2 * B, device=z.device).roll(B)  # i <-> i + B
    return F.cross_entropy(logits.float(), positives)


class ProjectionHead(nn.Sequential):
    """SimCLR's projection head g: ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``, ``[B, in] -> [B, out]``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class SimCLR(nn.Module):
    """SimCLR: ``loss = model(view1, view2)``; ``model.features(imgs)`` for probes.

    The representation is the mean of the encoder's patch tokens (MAE's ``encode`` default,
    so probes of the three models read the same thing); the loss reads the projection
    ``g(representation)``. Only the encoder sizes of ``config`` are used.
    """

    def __init__(self, config: MAEConfig, hidden_dim: int | None = None, out_dim: int = 64, temperature: float = 0.5):
        super().__init__()
        self.config = config
        self.temperature = temperature
        self.encoder = ViTEncoder(config)
        self.projection_head = ProjectionHead(config.dim, hidden_dim or config.dim, out_dim)

    def represent(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs ``[B, C, H, W]`` -> representations ``[B, D]``: the mean of the patch tokens."""
        return self.encoder(imgs)[:, 1:].mean(dim=1)  # [B, 1+L, D] -> [B, D]

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Two views ``[B, C, H, W]`` of the same B images -> the NT-Xent loss (both views in one encoder pass)."""
        z = self.projection_head(self.represent(torch.cat([view1, view2])))  # [2B, out_dim]
        z1, z2 = z.chunk(2)
        return nt_xent_loss(z1, z2, self.temperature)

    @torch.no_grad()
    def features(self, imgs: torch.Tensor) -> torch.Tensor:
        """Frozen features ``[B, D]`` of whole images, before the projection head."""
        return self.represent(imgs)


def simclr_training_flops(config: MAEConfig, batch_size: int, hidden_dim: int, out_dim: int) -> float:
    """Training FLOPs (forward + backward) of one SimCLR step on ``batch_size`` images, so ``2 x batch_size`` views.

    Matrix products only: the encoder over all ``1+L`` tokens of each view, the projection
    head, and the ``[2B, 2B]`` similarity matrix. A product's backward costs two products,
    except the patch embedding's (no gradient for the pixels): ``3 x forward - embedding``.
    """
    views = 2 * batch_size
    head = views * 2 * (config.dim * hidden_dim + hidden_dim * out_dim)
    similarities = 2 * views * views * out_dim
    forward = encoder_forward_flops(config, views) + head + similarities
    return 3 * forward - patch_embedding_flops(config, views)
