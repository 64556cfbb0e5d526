"""SimCLR's two views and its NT-Xent loss (Chen et al., 2020): the references of Lab 6's contrastive exercises.

    view1, view2 = two_views(imgs, augmentations(32), generator)  # two augmentations of each image
    loss = nt_xent_loss(z1, z2, temperature=TEMPERATURE)          # z1, z2 [B, P]: paired projections
    view = random_translate(imgs, TRANSLATE, generator)           # the digits' views, batched

* ``augmentations``: SimCLR's random crop, flip and colour distortion (torchvision v2), or, for the
  canvas digits, ``digit_augmentations``: a random shift only;
* ``augment_each`` and ``two_views``: two independent augmentations of every image, reproducible for a generator;
* ``random_translate``: ``v2.RandomAffine(degrees=0, translate=...)`` for a whole batch at once;
* ``nt_xent_loss``: the normalised temperature-scaled cross-entropy (InfoNCE) of SimCLR.

The course's SimCLR defaults, each stated once here (the paper's value, then ours and why):

* ``CROP_SCALE = (0.08, 1.0)``: the paper's ``RandomResizedCrop`` area range, used for colour images. The
  canvas digits of Lab 6 use no crop: a crop of 8% cuts a 12-pixel digit to a stroke, and a shift alone
  gave better features than any crop we measured;
* ``TEMPERATURE = 0.1``: the paper's ImageNet value (0.5 on CIFAR-10); on the canvas digits 0.1 beat 0.2 and 0.5;
* the projection head narrows, ``dim -> dim -> dim // 2`` (``models.simclr.SimCLR``), as the paper's
  2048 -> 2048 -> 128 does;
* ``TRANSLATE = 0.15``: the digits' views shift by up to 15% of the image side in each direction (the
  paper has no shift: its crops move the content).

The models that train with them are ``course_utils.models.simclr.SimCLR`` (images) and
``course_utils.models.behrt.BehrtContrastive`` (patient records).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

CROP_SCALE = (0.08, 1.0)  # RandomResizedCrop's area range (SimCLR's)
TEMPERATURE = 0.1  # NT-Xent's temperature (SimCLR's on ImageNet)
TRANSLATE = 0.15  # the digits' shift, a fraction of the image side in each direction


def augmentations(
    image_size: int, channels: int = 3, crop: bool = True, flip: bool = True, colour: bool = True
) -> v2.Compose:
    """SimCLR's augmentations for ``[C, H, W]`` float images in [0, 1] (or uint8), as a ``v2.Compose``.

    * crop: ``RandomResizedCrop`` of ``CROP_SCALE`` (8% to 100%) of the image, resized to ``image_size``;
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
        steps.append(v2.RandomResizedCrop(image_size, scale=CROP_SCALE, antialias=True))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if colour and channels == 3:
        steps += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    return v2.Compose(steps or [v2.Identity()])


def digit_augmentations(translate: float = TRANSLATE) -> v2.RandomAffine:
    """The canvas digits' views: ``v2.RandomAffine(degrees=0, translate=(translate, translate))``, a shift only.

    No flip (a mirrored 2, 3 or 7 is not that digit) and no crop (see ``CROP_SCALE``); the digits are grey.
    """
    return v2.RandomAffine(degrees=0, translate=(translate, translate))


def random_translate(
    images: torch.Tensor, translate: float = TRANSLATE, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each image of ``images`` ``[B, C, H, W]`` shifted on its own, as ``digit_augmentations`` does, in one batch.

    Image i moves by ``(dx, dy)`` pixels, each drawn uniformly from ``[-translate * W, translate * W]`` (``H`` for dy)
    from ``generator`` (CPU); uncovered pixels are 0. v2's ``RandomAffine`` draws the same uniform and rounds it to
    whole pixels; here the shift keeps its fraction (bilinear ``grid_sample``), so rounding it gives v2's
    distribution (``tests/test_contrastive.py`` checks it). One ``grid_sample`` for the batch instead of a Python
    loop over images: per-image v2 calls would roughly double SimCLR's pretraining time on a CPU.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if not 0.0 <= translate <= 1.0:
        raise ValueError(f"translate must be in [0, 1], got {translate!r}")
    B, _, H, W = images.shape
    shift_x = (2 * torch.rand(B, generator=generator) - 1) * translate * W  # [B] pixels
    shift_y = (2 * torch.rand(B, generator=generator) - 1) * translate * H
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = -2 * shift_x / W, -2 * shift_y / H  # output pixel reads input at (x - dx)
    grid = F.affine_grid(theta.to(images.device, torch.float32), list(images.shape), align_corners=False)
    shifted = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return shifted.to(images.dtype)  # [B, C, H, W]


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
    gives new views), different generator states give different views, and the caller's global
    RNG is left exactly as it was (``torch.get_rng_state()`` is unchanged). Without one, they draw
    from the global RNG (``torch.manual_seed`` makes that reproducible).
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


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimCLR's NT-Xent loss of the paired embeddings ``z1``, ``z2`` ``[B, D]`` (row i of each: one image's views).

    Each of the 2B embeddings is an anchor whose positive is its pair; the other 2B - 2 are
    negatives, and the anchor itself is excluded. With cosine similarities ``s`` and
    temperature ``t``, anchor i's loss is ``-log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t))``;
    the result is the mean over the 2B anchors.

    Two reference values: identical views whose images are mutually orthogonal score
    ``log(1 + (2B - 2) exp(-1/t))`` (each negative's similarity 0); this is not the minimum, since negatives can
    point further apart (at most ``B`` images can all have cosine ``-1/(B - 1)`` with one another).
    """
    _check_embeddings(z1, z2, temperature)
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2B, D], unit rows
    logits = z @ z.T / temperature  # [2B, 2B] cosine similarities / t
    self_pairs = torch.eye(2 * B, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))  # an anchor is not its own negative
    positives = torch.arange(2 * B, device=z.device).roll(B)  # i <-> i + B
    return F.cross_entropy(logits.float(), positives)
