"""SimMIM (Xie et al., 2022): masked image modelling with mask tokens *inside* the encoder.

    imgs [B, C, H, W] --patchify--> [B, L, p*p*C] --embed--> [B, L, D]
      --masked patches replaced by a learned mask token, sin-cos positions added to all L-->
      --prepend cls--> encoder (every patch!) [B, 1+L, D] --drop cls, one linear layer-->
      pixels per patch [B, L, p*p*C]
    loss = L1 on the masked patches only, the mean over their pixels

    model = SimMIM(MAEConfig(image_size=32, patch_size=4))
    loss, pred, mask = model(imgs, mask_ratio=0.6)
    features = model.features(imgs)  # [B, D] for a linear probe

The encoder is MAE's, through ``ViTEncoder`` (``course_utils.models.vit``): the same patch
embedding, positions, cls token, pre-LN blocks and initialisation, so MAE, SimMIM and SimCLR
(``course_utils.models.simclr``) differ only in what the encoder is asked to do. SimMIM's
encoder is exactly MAE's "encoder w/ [M]" ablation (``MAEConfig(mask_tokens_in_encoder=True)``);
where MAE then runs a transformer decoder, SimMIM runs one linear layer (the official code's
``decoder``, a 1x1 convolution and a pixel shuffle, is the same map). The paper masks 32x32
blocks of a ViT with 16x16 patches; here a masked block is one ViT patch, drawn by
``vision.random_masking``. Its training FLOPs per step: ``models.flops.simmim_training_flops``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from course_utils.models.mae import MAEConfig, normalized_patches
from course_utils.models.vit import ViTEncoder
from course_utils.vision import patchify


def masked_l1(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels of masked patches (``mask == 1``); 0 when nothing is masked.

    target, pred: ``[B, L, p*p*C]``; mask: ``[B, L]``. Every patch has ``p*p*C`` values, so the
    mean of per-patch means is the mean over masked pixels.
    """
    per_patch = (pred - target).abs().mean(dim=-1)  # [B, L, p*p*C] -> [B, L]
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


class SimMIM(nn.Module):
    """SimMIM: ``loss, pred, mask = model(imgs, mask_ratio=0.6)``; ``model.features(imgs)`` for probes.

    Only the encoder sizes of ``config`` are used (the decoder fields are MAE's); its
    ``norm_pix_loss`` scores against per-patch normalised pixels, as in MAE.
    """

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = dataclasses.replace(config, mask_tokens_in_encoder=True)
        self.encoder = ViTEncoder(self.config)
        self.decoder = nn.Linear(config.dim, config.patch_dim)  # the paper's one-layer prediction head
        nn.init.xavier_uniform_(self.decoder.weight)
        nn.init.zeros_(self.decoder.bias)

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """imgs ``[B, C, H, W]`` -> latent ``[B, 1+L, D]`` (cls first, all patches in order), mask ``[B, L]``.

        Masked patches enter as ``encoder_mask_token`` plus their position: their pixels reach nothing.
        """
        latent, mask, _ = self.encoder.forward_encoder(imgs, mask_ratio, generator)
        return latent, mask

    def forward_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        """latent ``[B, 1+L, D]`` -> predicted pixels ``[B, L, p*p*C]`` (cls dropped)."""
        return self.decoder(latent[:, 1:])

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L1 between ``pred`` ``[B, L, p*p*C]`` and the pixels of masked patches (``mask`` ``[B, L]``, 1 = masked)."""
        target = patchify(imgs, self.config.patch_size)
        if self.config.norm_pix_loss:
            target = normalized_patches(target)
        return masked_l1(target, pred.float(), mask)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float = 0.6, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs ``[B, C, H, W]`` -> (loss, pred ``[B, L, p*p*C]``, mask ``[B, L]`` with 1 = masked)."""
        latent, mask = self.forward_encoder(imgs, mask_ratio, generator)
        pred = self.forward_decoder(latent)
        return self.forward_loss(imgs, pred, mask), pred, mask

    @torch.no_grad()
    def features(self, imgs: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """Frozen features ``[B, D]`` of whole images (nothing masked): mean of patch tokens, or ``pool="cls"``."""
        return self.encoder.encode(imgs, pool)
