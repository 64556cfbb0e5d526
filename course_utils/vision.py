"""Images as sequences of patches, MAE's random masking, and the course's offline image data.

The conventions match the official MAE code (He et al., 2021, facebookresearch/mae):

* ``patchify``: patches in row-major order (left to right, then top to bottom); inside a
  patch, pixels in (row p, column q, channel c) order, so ``[B, C, H, W] -> [B, L, p*p*C]``;
* ``random_masking``: one uniform noise value per patch, ``argsort``; the patches with the
  lowest noise are kept; ``mask`` is 1 for a removed patch and 0 for a kept one, in the
  original patch order; ``ids_restore`` puts a shuffled sequence back in that order;
* ``sincos_pos_embed_2d``: fixed sine-cosine position embeddings, the first half of the
  channels encoding the column and the second half the row.

Data, all offline: ``digits`` (scikit-learn's 8x8 digits, resized, with labels),
``photo_crops`` (random crops of the colour photos that ship inside scikit-image) and,
for readers with a network, ``cifar10`` through torchvision.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import v2

# Colour photos that ship inside scikit-image itself (no pooch download needed).
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
HELD_OUT_PHOTOS = ("chelsea",)


def _check_patch_size(height: int, width: int, patch_size: int) -> None:
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    if height % patch_size or width % patch_size:
        raise ValueError(f"patch_size={patch_size} must divide the image size {height}x{width}")


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, H, W] -> [B, L, p*p*C]`` with ``L = (H/p) * (W/p)`` patches in row-major order."""
    if imgs.dim() != 4:
        raise ValueError(f"imgs must be [B, C, H, W], got shape {tuple(imgs.shape)}")
    B, C, H, W = imgs.shape
    _check_patch_size(H, W, patch_size)
    p = patch_size
    x = imgs.reshape(B, C, H // p, p, W // p, p)  # [B, C, h, p, w, q]
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, h, w, p, q, C]
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(
    x: torch.Tensor, patch_size: int, channels: int, grid_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """``[B, L, p*p*C] -> [B, C, H, W]``, the exact inverse of ``patchify``.

    ``grid_size`` is ``(H/p, W/p)``; by default the image is square, ``L`` a square number.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, L, patch_size*patch_size*channels], got shape {tuple(x.shape)}")
    B, L, patch_dim = x.shape
    p = patch_size
    if patch_dim != p * p * channels:
        raise ValueError(f"x's last dimension {patch_dim} must equal patch_size**2 * channels = {p * p * channels}")
    if grid_size is None:
        side = math.isqrt(L)
        if side * side != L:
            raise ValueError(f"x has {L} patches, not a square number; pass grid_size=(rows, columns)")
        grid_size = (side, side)
    h, w = grid_size
    if h * w != L:
        raise ValueError(f"grid_size={grid_size} holds {h * w} patches, but x has {L}")
    imgs = x.reshape(B, h, w, p, p, channels).permute(0, 5, 1, 3, 2, 4)  # [B, C, h, p, w, q]
    return imgs.reshape(B, channels, h * p, w * p)


def check_mask_ratio(mask_ratio: float) -> None:
    """MAE's mask ratio is a fraction in ``[0, 1)``: at least one patch must stay visible."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}")


def random_masking(
    x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``int(L * (1 - mask_ratio))`` patches of every sequence.

    x: ``[B, L, D]`` -> ``x_visible [B, L_keep, D]`` (kept patches, in shuffled order),
    ``mask [B, L]`` (1 = removed, 0 = kept, original order) and ``ids_restore [B, L]``
    (``gather(cat([x_visible, removed]), 1, ids_restore)`` is back in the original order).
    The noise is drawn on the generator's device (CPU by default), then moved to ``x``'s.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, L, D], got shape {tuple(x.shape)}")
    check_mask_ratio(mask_ratio)
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    noise_device = generator.device if generator is not None else x.device
    noise = torch.rand(B, L, generator=generator, device=noise_device).to(x.device)  # [B, L]
    ids_shuffle = noise.argsort(dim=1)  # lowest noise first: those patches are kept
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :keep]
    x_visible = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    mask = torch.ones(B, L, device=x.device)  # float32 even under autocast: its sum must be exact
    mask[:, :keep] = 0
    return x_visible, mask.gather(1, ids_restore), ids_restore


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[N]`` positions -> ``[N, dim]``: sines then cosines of ``position / 10000**(2i/dim)``."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None, :]  # [N, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings ``[grid_size**2, dim]`` in patchify's row-major order.

    As in MAE's ``get_2d_sincos_pos_embed``: the first ``dim/2`` channels encode the
    column, the last ``dim/2`` the row (no row for a cls token: prepend zeros for one).
    """
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4 (sin and cos for rows and columns), got {dim}")
    if not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int, got {grid_size!r}")
    rows, columns = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    embed = torch.cat([_sincos_1d(dim // 2, columns.flatten()), _sincos_1d(dim // 2, rows.flatten())], dim=1)
    return embed.float()


def digits(image_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 handwritten digits: images ``[N, 1, S, S]`` in [0, 1] and labels ``[N]``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
    resize = v2.Resize((image_size, image_size), antialias=True)
    return resize(images).clamp(0, 1), torch.tensor(data.target)


def photo(name: str) -> torch.Tensor:
    """One of scikit-image's bundled colour photos as a float image ``[3, H, W]`` in [0, 1]."""
    import skimage.data

    if name not in TRAIN_PHOTOS + HELD_OUT_PHOTOS:
        raise ValueError(f"name must be one of {TRAIN_PHOTOS + HELD_OUT_PHOTOS}, got {name!r}")
    to_float = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    return to_float(getattr(skimage.data, name)()).as_subclass(torch.Tensor)


def photo_crops(count: int, image_size: int = 32, names: tuple[str, ...] = TRAIN_PHOTOS, seed: int = 0) -> torch.Tensor:
    """``count`` random crops ``[count, 3, S, S]`` of the named photos (reproducible for a seed).

    Crops cover 1% to 10% of a photo and are flipped at random: small, natural image
    patches with edges and textures, like tiny CIFAR images.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    augment = v2.Compose(
        [v2.RandomResizedCrop(image_size, scale=(0.01, 0.1), antialias=True), v2.RandomHorizontalFlip()]
    )
    photos = [photo(name) for name in names]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        crops = [augment(photos[i % len(photos)]) for i in range(count)]
    return torch.stack(crops).clamp(0, 1)


def cifar10(root: str = "data", train: bool = True, download: bool = False):
    """CIFAR-10 through torchvision (needs a network to download once): ``(image [3, 32, 32], label)`` items.

    Optional: the course runs offline on ``digits`` and ``photo_crops``; pass
    ``download=True`` on a machine with a network to fetch the 170 MB archive into ``root``.
    """
    from torchvision.datasets import CIFAR10

    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    return CIFAR10(root, train=train, transform=transform, download=download)


def place_digits(digits: torch.Tensor, canvas_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Paste every image of ``digits`` ``[N, C, s, s]`` at a random whole-pixel offset on a black canvas.

    Returns ``[N, C, canvas_size, canvas_size]``: image i's top-left corner at ``(row, column)``, each drawn
    uniformly from ``0 .. canvas_size - s`` (from ``generator``, on the CPU); the rest of the canvas is 0.
    """
    if digits.dim() != 4 or digits.shape[-1] != digits.shape[-2]:
        raise ValueError(f"digits must be square images [N, C, s, s], got shape {tuple(digits.shape)}")
    N, C, s, _ = digits.shape
    if not isinstance(canvas_size, int) or canvas_size < s:
        raise ValueError(f"canvas_size must be an int >= the digit size {s}, got {canvas_size!r}")
    offsets = torch.randint(0, canvas_size - s + 1, (N, 2), generator=generator)  # [N, 2] (row, column)
    canvas = torch.arange(canvas_size)
    rows = canvas[None, :] - offsets[:, :1]  # [N, S]: the digit's row shown at each canvas row
    columns = canvas[None, :] - offsets[:, 1:]  # [N, S]
    inside = ((rows >= 0) & (rows < s))[:, :, None] & ((columns >= 0) & (columns < s))[:, None, :]  # [N, S, S]
    rows, columns = rows.clamp(0, s - 1), columns.clamp(0, s - 1)
    placed = digits[torch.arange(N)[:, None, None], :, rows[:, :, None], columns[:, None, :]]  # [N, S, S, C]
    return placed.permute(0, 3, 1, 2) * inside[:, None].to(digits.dtype)  # [N, C, S, S]
