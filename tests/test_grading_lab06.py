"""Lab 6 (masked against contrastive) graded as the instructor grades it: other correct answers earn full marks,
the classic mistakes earn nothing and are named, and a call into the reference implementation earns nothing.

Each exercise lists its variants; the n-th variants of all exercises share one graded submission (exercises
are graded independently), so the lab is graded as often as the longest list is long.
"""

from __future__ import annotations

import pytest
from submissions import FULL, REFERENCE, grading_tests

pytestmark = pytest.mark.notebook

LAB = "lab06_masked_vs_contrastive"

VIEWS = """
import torch


def two_views(images, transform, generator=None):
    {body}
"""

NT_XENT = """
import torch
import torch.nn.functional as F


def nt_xent_loss(z1, z2, temperature=0.1):
    {body}
"""

SIMCLR = """
import torch
import torch.nn.functional as F
from course_utils.contrastive import nt_xent_loss as reference_nt_xent_loss


def simclr_loss(encoder, projection_head, view1, view2, temperature=0.1):
    {body}
"""

SIMMIM_INPUT = """
import torch


def simmim_encoder_input(patch_embeddings, positions, mask, mask_token):
    {body}
"""

SIMMIM_LOSS = """
import torch
import torch.nn.functional as F


def simmim_loss(pred, target, mask):
    {body}
"""

# exercise -> {variant: (what it earns: FULL, or 0 points with this in the feedback line, solution cell)}
VARIANTS = {
    "two_views": {
        "one seed per image and view, drawn up front": (
            FULL,
            VIEWS.format(
                body="seeds = torch.randint(2**62, (2, len(images)), generator=generator).tolist()\n"
                "    views = []\n"
                "    for row in seeds:\n"
                "        augmented = []\n"
                "        for seed, image in zip(row, images):\n"
                "            with torch.random.fork_rng(devices=[]):\n"
                "                torch.manual_seed(seed)\n"
                "                augmented.append(transform(image))\n"
                "        views.append(torch.stack(augmented))\n"
                "    return tuple(views)"
            ),
        ),
        "the global RNG saved and restored by hand": (
            FULL,
            VIEWS.format(
                body="state = torch.get_rng_state()\n"
                "    torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))\n"
                "    try:\n"
                "        return tuple(torch.stack([transform(image) for image in images]) for _ in range(2))\n"
                "    finally:\n"
                "        torch.set_rng_state(state)"
            ),
        ),
        "the global RNG seeded and left changed": (
            "changed the caller's global RNG",
            VIEWS.format(
                body="torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))\n"
                "    return tuple(torch.stack([transform(image) for image in images]) for _ in range(2))"
            ),
        ),
        "the transform applied to the whole batch": (
            "the transform drew once for the whole batch",
            VIEWS.format(
                body="seed = int(torch.randint(2**62, (1,), generator=generator))\n"
                "    with torch.random.fork_rng(devices=[]):\n"
                "        torch.manual_seed(seed)\n"
                "        return transform(images), transform(images)"
            ),
        ),
        "the generator ignored": (
            "the same generator seed must give the same views",
            VIEWS.format(
                body="return torch.stack([transform(i) for i in images]), torch.stack([transform(i) for i in images])"
            ),
        ),
        "one view returned twice": (
            "your two views are identical",
            VIEWS.format(
                body="seed = int(torch.randint(2**62, (1,), generator=generator))\n"
                "    with torch.random.fork_rng(devices=[]):\n"
                "        torch.manual_seed(seed)\n"
                "        view = torch.stack([transform(image) for image in images])\n"
                "    return view, view.clone()"
            ),
        ),
        "the reference contrastive.two_views": (REFERENCE, "from course_utils.contrastive import two_views\n"),
    },
    "nt_xent_loss": {
        "logsumexp by hand": (
            FULL,
            NT_XENT.format(
                body="z = torch.cat([z1, z2])\n"
                "    z = z / z.norm(dim=1, keepdim=True)\n"
                "    s = (z @ z.T / temperature).fill_diagonal_(float('-inf'))\n"
                "    n = len(z1)\n"
                "    positives = torch.cat([s.diagonal(n), s.diagonal(-n)])\n"
                "    return (torch.logsumexp(s, dim=1) - positives).mean()"
            ),
        ),
        "the self-similarity kept": (
            "each view counts as its own negative",
            NT_XENT.format(
                body="z = F.normalize(torch.cat([z1, z2]), dim=1)\n"
                "    return F.cross_entropy(z @ z.T / temperature, torch.arange(len(z)).roll(len(z1)))"
            ),
        ),
        "dot products, not cosines": (
            "you used dot products",
            NT_XENT.format(
                body="z = torch.cat([z1, z2])\n"
                "    s = (z @ z.T / temperature).fill_diagonal_(float('-inf'))\n"
                "    return F.cross_entropy(s, torch.arange(len(z)).roll(len(z1)))"
            ),
        ),
        "CLIP's loss: only the other view as negatives": (
            "only the other view's embeddings are negatives",
            NT_XENT.format(
                body="logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature\n"
                "    targets = torch.arange(len(z1))\n"
                "    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2"
            ),
        ),
        "a loop over anchors and pairs": (
            FULL,
            NT_XENT.format(
                body="z = [F.normalize(row, dim=0) for row in torch.cat([z1, z2])]\n"
                "    n, total = len(z), 0.0\n"
                "    for i in range(n):\n"
                "        pair = (i + n // 2) % n\n"
                "        others = torch.stack([torch.dot(z[i], z[k]) / temperature for k in range(n) if k != i])\n"
                "        total = total + torch.logsumexp(others, 0) - torch.dot(z[i], z[pair]) / temperature\n"
                "    return total / n"
            ),
        ),
        "the reference contrastive.nt_xent_loss": (REFERENCE, "from course_utils.contrastive import nt_xent_loss\n"),
    },
    "simclr_loss": {
        "both views in one encoder pass": (
            FULL,
            SIMCLR.format(
                body="h = encoder(torch.cat([view1, view2]))[:, 1:].mean(dim=1)\n"
                "    z1, z2 = projection_head(h).chunk(2)\n"
                "    return reference_nt_xent_loss(z1, z2, temperature)"
            ),
        ),
        "the loss on h": (
            "you took the loss on the representation h",
            SIMCLR.format(
                body="h1, h2 = encoder(view1)[:, 1:].mean(1), encoder(view2)[:, 1:].mean(1)\n"
                "    return reference_nt_xent_loss(h1, h2, temperature)"
            ),
        ),
        "the cls token in the mean": (
            "projected mean patch token",
            SIMCLR.format(
                body="z1, z2 = projection_head(encoder(view1).mean(1)), projection_head(encoder(view2).mean(1))\n"
                "    return reference_nt_xent_loss(z1, z2, temperature)"
            ),
        ),
        "the reference SimCLR.forward": (
            REFERENCE,
            SIMCLR.format(
                body="from course_utils.models.simclr import SimCLR\n\n"
                "    parts = {'encoder': encoder, 'projection_head': projection_head, 'temperature': temperature, "
                "'represent': SimCLR.represent}\n"
                "    return SimCLR.forward(type('Parts', (), parts)(), view1, view2)"
            ),
        ),
    },
    "simmim_encoder_input": {
        "a blend by arithmetic": (
            FULL,
            SIMMIM_INPUT.format(
                body="m = mask.to(patch_embeddings.dtype).unsqueeze(-1)\n"
                "    return patch_embeddings * (1 - m) + mask_token * m + positions"
            ),
        ),
        "the visible patches replaced": (
            "you replaced the visible patches",
            SIMMIM_INPUT.format(
                body="return torch.where(mask.bool().unsqueeze(-1), patch_embeddings, mask_token) + positions"
            ),
        ),
        "the mask token added": (
            "do not add to it",
            SIMMIM_INPUT.format(body="return patch_embeddings + mask.unsqueeze(-1) * mask_token + positions"),
        ),
        "no position on the mask tokens": (
            "the mask tokens have no position",
            SIMMIM_INPUT.format(
                body="return torch.where(mask.bool().unsqueeze(-1), mask_token, patch_embeddings + positions)"
            ),
        ),
    },
    "simmim_loss": {
        "F.l1_loss on the masked patches": (
            FULL,
            SIMMIM_LOSS.format(body="keep = mask.bool()\n    return F.l1_loss(pred[keep], target[keep])"),
        ),
        "the squared error": (
            "you used the squared error",
            SIMMIM_LOSS.format(body="keep = mask.bool()\n    return F.mse_loss(pred[keep], target[keep])"),
        ),
        "every patch": ("visible patches count too", SIMMIM_LOSS.format(body="return F.l1_loss(pred, target)")),
        "the reference simmim.masked_l1": (
            REFERENCE,
            SIMMIM_LOSS.format(
                body="from course_utils.models.simmim import masked_l1\n\n    return masked_l1(target, pred, mask)"
            ),
        ),
    },
}


(
    graded,
    test_a_correct_alternative_earns_full_marks,
    test_a_classic_mistake_earns_zero_and_is_named,
    test_calling_the_reference_implementation_earns_zero,
) = grading_tests(LAB, VARIANTS)
