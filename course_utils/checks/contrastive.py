"""Checks for Lab 6 (masked against contrastive): SimCLR's two views, the NT-Xent loss, the SimCLR loss
through the projection head, SimMIM's encoder input with mask tokens and its masked-only L1 loss.

``two_views`` is random: ``check_two_views`` judges two binomial counts (``expect_binomial``), so it fails
correct work with probability at most 2 * ``FALSE_FAILURE`` over seeds (``course_utils.checks``, the
course's one policy). Every other check is deterministic. No check changes the student's global RNG: the
ones that seed it do so inside ``torch.random.fork_rng``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from course_utils import contrastive
from course_utils.checks import (
    expect,
    expect_binomial,
    expect_close,
    expect_input_untouched,
    expect_tensor,
    gradients,
    passed,
)
from course_utils.models.mae import MAEConfig
from course_utils.models.simclr import SimCLR
from course_utils.models.simmim import masked_l1

# --------------------------------------------------------------------------- SimCLR's views


def asymmetric_images(count: int, channels: int = 1, size: int = 6) -> torch.Tensor:
    """``[count, C, size, size]`` images whose left half is brighter than their right: a flip is visible."""
    images = torch.linspace(1.0, 0.0, size).expand(count, channels, size, size).clone()
    return images + 0.01 * torch.arange(count, dtype=images.dtype)[:, None, None, None]


def flipped(view: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: which images of a view were flipped (their left half is darker than their right)."""
    half = view.shape[-1] // 2
    return view[..., :half].mean(dim=(1, 2, 3)) < view[..., half:].mean(dim=(1, 2, 3))


def expect_flip_counts(view1: torch.Tensor, view2: torch.Tensor) -> None:
    """Every image of every view flipped on its own with p = 1/2; the two views of an image agree with p = 1/2.

    Two binomial counts at ``FALSE_FAILURE`` each."""
    first, second = flipped(view1), flipped(view2)
    count = len(first)

    def uniform(flips: torch.Tensor) -> bool:  # a correct view of 100+ images is uniform with chance below 2^-99
        return bool(flips.all() or (~flips).all())

    expect(
        not (uniform(first) and uniform(second)),
        "every image of a view got the same flip: the transform drew once for the whole batch",
        "apply transform to each image on its own (v2 transforms draw one set of parameters per call)",
    )
    expect(
        not torch.equal(view1, view2),
        "your two views are identical: draw the augmentation twice, once per view",
    )
    expect_binomial(
        first.sum() + second.sum(),
        2 * count,
        0.5,
        None,
        "the images are not flipped half of the time: RandomHorizontalFlip flips each image with p = 1/2",
        "apply the transform you are given once to every image of every view",
    )
    expect_binomial(
        (first == second).sum(),
        count,
        0.5,
        None,
        "the two views of an image agree on the flip more or less often than independent draws would",
        "draw view 2 independently of view 1",
    )


def expect_global_rng_untouched(two_views_fn, images, transform, generator) -> tuple:
    """Call ``two_views_fn(images, transform, generator)``; fail if the caller's global CPU RNG state changed."""
    before = torch.get_rng_state()
    views = two_views_fn(images, transform, generator)
    expect(
        torch.equal(torch.get_rng_state(), before),
        "two_views with a generator changed the caller's global RNG",
        "seed torchvision's draws inside torch.random.fork_rng(devices=[]), which restores the global RNG on exit",
    )
    return views


def check_two_views(two_views_fn) -> None:
    """Exercise 1: two independent augmentations of every image, reproducible under a generator, the caller's
    global RNG left as it was.

    Two binomial counts: a correct function fails this check with probability at most 2 * ``FALSE_FAILURE``
    (over seeds). The check runs under ``torch.random.fork_rng``: it leaves the student's global RNG as it
    found it, whatever the function does.
    """
    with torch.random.fork_rng(devices=[]):
        _check_two_views(two_views_fn)


def _check_two_views(two_views_fn) -> None:
    images = asymmetric_images(300)
    flip = v2.RandomHorizontalFlip(p=0.5)
    views = expect_input_untouched(two_views_fn, images, flip, torch.Generator().manual_seed(0))
    expect(isinstance(views, (tuple, list)) and len(views) == 2, "return the two views as a tuple (view1, view2)")
    view1, view2 = views
    for name, view in (("view1", view1), ("view2", view2)):
        expect_tensor(view, name, shape=images.shape, dtype=images.dtype)
    expect_flip_counts(view1, view2)
    passed("each image is augmented on its own, and the two views independently")
    again = two_views_fn(images, flip, torch.Generator().manual_seed(0))  # a global-RNG function moved it on
    expect(
        torch.equal(again[0], view1) and torch.equal(again[1], view2),
        "the same generator seed must give the same views",
        "torchvision's v2 transforms draw from torch's global RNG: seed it from generator inside "
        "torch.random.fork_rng(), so the caller's global RNG is left alone",
    )
    other = two_views_fn(images, flip, torch.Generator().manual_seed(1))
    expect(not torch.equal(other[0], view1), "a different generator seed gave the same views")
    passed("reproducible under a seeded generator; another seed gives other views")
    expect_global_rng_untouched(two_views_fn, images, flip, torch.Generator().manual_seed(2))
    passed("the caller's global RNG is left as it was")
    crop = v2.RandomResizedCrop(4, scale=(0.2, 1.0), antialias=True)
    colour = asymmetric_images(5, channels=3, size=8)
    view1, view2 = two_views_fn(colour, crop, torch.Generator().manual_seed(2))
    for name, view in (("view1", view1), ("view2", view2)):
        expect_tensor(view, f"{name} of a 4x4 crop of [5, 3, 8, 8] images", shape=(5, 3, 4, 4), dtype=colour.dtype)
    passed("a crop-and-resize keeps the batch, the channels and the dtype, and sets the size")


# --------------------------------------------------------------------------- NT-Xent


def nt_xent_example(seed: int = 0, batch: int = 6, dim: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(batch, dim, generator=generator) * 3
    return z1, z1 + torch.randn(batch, dim, generator=generator)


def _without_self_mask(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    positives = torch.arange(len(z)).roll(len(z1))
    return F.cross_entropy(z @ z.T / temperature, positives)


def _dot_products(z1, z2, temperature):
    z = torch.cat([z1, z2])
    logits = (z @ z.T / temperature).masked_fill(torch.eye(len(z), dtype=torch.bool), -torch.inf)
    return F.cross_entropy(logits, torch.arange(len(z)).roll(len(z1)))


def _cross_view_only(z1, z2, temperature):
    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature
    targets = torch.arange(len(z1))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def check_nt_xent_loss(nt_xent_loss_fn) -> None:
    """Exercise 2: cosine similarities / temperature, the pair as the positive, the other 2B - 2 as negatives."""
    z1, z2 = nt_xent_example()
    loss = expect_input_untouched(nt_xent_loss_fn, z1, z2, 0.5)
    expect_tensor(loss, "the loss", shape=())
    expected = contrastive.nt_xent_loss(z1, z2, 0.5)
    wrong = {
        "each view counts as its own negative: mask the self-similarity (the diagonal) out": _without_self_mask(
            z1, z2, 0.5
        ),
        "you used dot products: NT-Xent compares cosine similarities (normalise the embeddings)": _dot_products(
            z1, z2, 0.5
        ),
        "the temperature is ignored: divide the similarities by it": contrastive.nt_xent_loss(z1, z2, 1.0),
        "only the other view's embeddings are negatives: NT-Xent's negatives are all 2B - 2 other views": (
            _cross_view_only(z1, z2, 0.5)
        ),
    }
    for misconception, value in wrong.items():
        expect(not torch.isclose(loss.detach().float(), value, atol=1e-4), misconception)
    expect_close(loss, expected, "your loss differs from NT-Xent over the 2B views", atol=1e-4)
    passed("NT-Xent over 2B anchors, cosine similarities / temperature, self-similarity masked")
    identical = torch.eye(4, 8) * 5  # 4 orthogonal embeddings, both views the same
    orthogonal = torch.log1p(torch.tensor(6.0) * torch.exp(torch.tensor(-1 / 0.2)))  # log(1 + (2B - 2) e^(-1/t))
    expect_close(
        nt_xent_loss_fn(identical, identical.clone(), 0.2),
        orthogonal,
        "identical views of orthogonal images should give log(1 + (2B - 2) exp(-1/t))",
        atol=1e-5,
    )
    passed("identical views, orthogonal negatives: log(1 + (2B - 2) exp(-1/t)) (a reference value, not the minimum)")
    leaf = z1.clone().requires_grad_()
    _, (grad,) = gradients(nt_xent_loss_fn, leaf, z2, 0.5, wrt=[leaf])
    expect(grad is not None and bool(grad.abs().sum() > 0), "no gradient reaches z1")
    passed("the loss backpropagates to the embeddings")


# --------------------------------------------------------------------------- the SimCLR loss


def tiny_simclr(seed: int = 0) -> SimCLR:
    """A small SimCLR initialised from ``seed``; the caller's global RNG is left as it was."""
    config = MAEConfig(image_size=8, patch_size=4, channels=1, dim=16, depth=1, num_heads=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SimCLR(config, hidden_dim=16, out_dim=8, temperature=0.5).eval()


def check_simclr_loss(simclr_loss_fn) -> None:
    """Exercise 3: encode both views, mean over the patch tokens, project, then NT-Xent."""
    model = tiny_simclr()
    generator = torch.Generator().manual_seed(0)
    view1, view2 = torch.rand(5, 1, 8, 8, generator=generator), torch.rand(5, 1, 8, 8, generator=generator)
    loss = expect_input_untouched(simclr_loss_fn, model.encoder, model.projection_head, view1, view2, 0.5)
    expect_tensor(loss, "the loss", shape=())
    with torch.no_grad():
        expected = model(view1, view2)
        h1, h2 = model.represent(view1), model.represent(view2)
    expect(
        not torch.isclose(loss.detach().float(), contrastive.nt_xent_loss(h1, h2, 0.5), atol=1e-4),
        "you took the loss on the representation h: SimCLR's loss reads the projection z = g(h)",
    )
    expect_close(
        loss,
        expected,
        "your loss differs from NT-Xent of the projected mean patch token",
        atol=1e-4,
        hint="h = encoder(images)[:, 1:].mean(dim=1) (the cls token left out), z = projection_head(h)",
    )
    passed("h = the mean of the patch tokens, z = g(h), NT-Xent on z")
    head_parameters = list(model.projection_head.parameters())
    _, grads = gradients(
        simclr_loss_fn, model.encoder, model.projection_head, view1, view2, 0.5, wrt=head_parameters
    )
    expect(all(grad is not None for grad in grads), "the projection head receives no gradient")
    passed("the encoder and the projection head are trained by the loss")


# --------------------------------------------------------------------------- SimMIM


def normal_tensors(seed: int, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    """Standard normal tensors of ``shapes``, drawn in that order from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape in shapes]


def simmim_input_example(seed: int = 0) -> dict[str, torch.Tensor]:
    patches, positions, token = normal_tensors(seed, (2, 6, 4), (1, 6, 4), (1, 1, 4))
    mask = torch.tensor([[1.0, 0, 0, 1, 0, 1], [0, 1, 1, 0, 0, 0]])
    return dict(patch_embeddings=patches, positions=positions, mask=mask, mask_token=token)


def reference_simmim_input(patch_embeddings, positions, mask, mask_token) -> torch.Tensor:
    """``where(mask, mask_token, patch_embeddings) + positions``: as ``MaskedAutoencoder.forward_encoder`` with
    ``mask_tokens_in_encoder`` builds it (there the positions are added to the patches before masking)."""
    return torch.where(mask.bool()[..., None], mask_token, patch_embeddings) + positions


def check_simmim_encoder_input(simmim_encoder_input_fn) -> None:
    """Exercise 4: masked patches become the mask token, every token gets its position."""
    example = simmim_input_example()
    out = expect_input_untouched(simmim_encoder_input_fn, **example)
    expect_tensor(out, "the encoder input", shape=example["patch_embeddings"].shape)
    expected = reference_simmim_input(**example)
    patches, positions, mask, token = example.values()
    wrong = {
        "you replaced the visible patches: mask == 1 marks the removed ones": reference_simmim_input(
            patches, positions, 1 - mask, token
        ),
        "a masked patch keeps its own embedding: replace it with the mask token, do not add to it": patches
        + mask[..., None] * token
        + positions,
        "the mask tokens have no position: add the positions to every token, mask tokens included": torch.where(
            mask.bool()[..., None], token, patches + positions
        ),
    }
    for misconception, value in wrong.items():
        expect(not torch.allclose(out.detach().float(), value, atol=1e-5), misconception)
    expect_close(out, expected, "your encoder input differs from where(mask, mask_token, patches) + positions")
    passed("masked patches replaced by the mask token, positions on every token")
    changed = dict(example, patch_embeddings=torch.where(mask.bool()[..., None], patches * -3 + 1, patches))
    expect(
        torch.allclose(simmim_encoder_input_fn(**changed), out),
        "changing a masked patch changed the encoder input: its pixels must not reach the encoder",
    )
    leaf = token.clone().requires_grad_()
    _, (grad,) = gradients(simmim_encoder_input_fn, wrt=[leaf], **dict(example, mask_token=leaf))
    expect(grad is not None and bool(grad.abs().sum() > 0), "the mask token receives no gradient: it is learned")
    passed("masked pixels reach nothing; the mask token is learned")


def simmim_loss_example(seed: int = 0) -> dict[str, torch.Tensor]:
    pred, target = normal_tensors(seed, (3, 5, 12), (3, 5, 12))
    return dict(pred=pred, target=target, mask=torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 1, 1], [1, 1, 1, 0, 1]]))


def check_simmim_loss(simmim_loss_fn) -> None:
    """Exercise 5: the mean absolute error over the pixels of masked patches only."""
    example = simmim_loss_example()
    loss = expect_input_untouched(simmim_loss_fn, **example)
    expect_tensor(loss, "the loss", shape=())
    pred, target, mask = example.values()
    expected = masked_l1(target, pred, mask)
    masked_mse = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    wrong = {
        "you used the squared error: SimMIM's loss is L1, the absolute error": masked_mse,
        "visible patches count too: the loss is over masked patches only": (pred - target).abs().mean(),
        "the errors are summed: take the mean over the masked pixels": ((pred - target).abs().sum(-1) * mask).sum(),
    }
    for misconception, value in wrong.items():
        expect(not torch.isclose(loss.detach().float(), value, atol=1e-4), misconception)
    expect_close(loss, expected, "your loss differs from the mean |pred - target| over masked pixels", atol=1e-5)
    passed("L1 averaged over the pixels of masked patches")
    leaf = pred.clone().requires_grad_()
    _, (grad,) = gradients(simmim_loss_fn, wrt=[leaf], **dict(example, pred=leaf))
    expect(grad is not None, "no gradient reaches pred")
    expect(
        bool((grad[~mask.bool()] == 0).all()),
        "a visible patch's prediction receives a gradient: it must not count",
    )
    passed("visible patches get exactly zero gradient")


REFERENCES = {
    "two_views": ("course_utils.contrastive:two_views", "course_utils.contrastive:augment_each"),
    "nt_xent_loss": ("course_utils.contrastive:nt_xent_loss",),
    "simclr_loss": ("course_utils.models.simclr:SimCLR.forward", "course_utils.models.simclr:SimCLR.represent"),
    "simmim_encoder_input": (
        "course_utils.models.mae:MaskedAutoencoder.forward_encoder",
        "course_utils.models.simmim:SimMIM.forward_encoder",
    ),
    "simmim_loss": ("course_utils.models.simmim:masked_l1", "course_utils.models.simmim:SimMIM.forward_loss"),
}
