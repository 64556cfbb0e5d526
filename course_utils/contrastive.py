"""SimCLR's two views and its NT-Xent loss (Chen et al., 2020): the references of Lab 6's contrastive exercises.

    view1, view2 = two_views(imgs, augmentations(32), generator)  # two augmentations of each image
    loss = nt_xent_loss(z1, z2, temperature=0.5)                  # z1, z2 [B, P]: paired projections

* ``augmentations``: SimCLR's random crop, flip and colour distortion (torchvision v2);
* ``augment_each`` and ``two_views``: two independent augmentations of every image, reproducible for a generator;
* ``nt_xent_loss``: the normalised temperature-scaled cross-entropy (InfoNCE) of SimCLR.

The models that train with them are ``course_utils.models.simclr.SimCLR`` (images) and
``course_utils.models.behrt.BehrtContrastive`` (patient records).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2


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
