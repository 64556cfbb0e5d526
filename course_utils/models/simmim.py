"""SimMIM (Xie et al., 2022): masked image modelling with mask tokens *inside* the encoder.

    imgs [B, C, H, W] --patchify--> [B, L, p*p*C] --embed--> [B, L, D]
      --masked patches replaced by a learned mask token, sin-cos positions added to all L-->
      --prepend cls--> encoder (every patch!) [B, 1+L, D] --drop cls, one linear layer-->
      pixels per patch [B, L, p*p*C]
    loss = L1 on the masked patches only, the mean over their pixels

    model = SimMIM(MAEConfig(image_size=32, patch_size=4))
    loss, pred, mask = model(imgs, mask_ratio=0.6)
    features = model.features(imgs)  # [B, D] for a linear probe

The encoder is MAE's, through ``ViTEncoder``: the same patch embedding, positions, cls token,
pre-LN blocks and initialisation, so MAE, SimMIM and SimCLR (``course_utils.contrastive``)
differ only in what the encoder is asked to do. SimMIM's encoder is exactly MAE's
"encoder w/ [M]" ablation (``MAEConfig(mask_tokens_in_encoder=True)``); where MAE then runs a
transformer decoder, SimMIM runs one linear layer (the official code's ``decoder``, a 1x1
convolution and a pixel shuffle, is the same map). The paper masks 32x32 blocks of a ViT with
16x16 patches; here a masked block is one ViT patch, drawn by ``vision.random_masking``.

``encoder_forward_flops`` and ``simmim_training_flops`` count matrix-product FLOPs
analytically, as ``course_utils.models.flops`` does for Lab 5.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from course_utils.models.mae import MAEConfig, MaskedAutoencoder, normalized_patches
from course_utils.vision import patchify


class ViTEncoder(nn.Module):
    """The encoder half of ``MaskedAutoencoder``, without its decoder.

    Its modules are built and initialised by ``MaskedAutoencoder`` itself and its methods are
    MAE's (``embed_patches``, ``encode_tokens``, ``forward_encoder``, ``encode``), so the
    parameter names match: ``vit.load_state_dict(mae.state_dict(), strict=False)`` loads an
    MAE encoder. ``config.mask_tokens_in_encoder`` adds MAE's ``encoder_mask_token``.
    """

    def __init__(self, config: MAEConfig):
        super().__init__()
        mae = MaskedAutoencoder(config)
        self.config = config
        self.patch_embed, self.cls_token, self.encoder = mae.patch_embed, mae.cls_token, mae.encoder
        self.register_buffer("pos_embed", mae.pos_embed, persistent=False)  # [1, 1+L, D], fixed
        if config.mask_tokens_in_encoder:
            self.encoder_mask_token = mae.encoder_mask_token

    embed_patches = MaskedAutoencoder.embed_patches  # [B, C, H, W] -> [B, L, D]
    encode_tokens = MaskedAutoencoder.encode_tokens  # [B, N, D] -> [B, 1+N, D]
    forward_encoder = MaskedAutoencoder.forward_encoder  # (imgs, mask_ratio, generator) -> latent, mask, ids_restore
    encode = MaskedAutoencoder.encode  # frozen features [B, D]

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs ``[B, C, H, W]`` -> every token's output ``[B, 1+L, D]`` (cls first, patches in order)."""
        return self.encode_tokens(self.embed_patches(imgs))


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


def encoder_forward_flops(config: MAEConfig, images: int, kept_patches: int | None = None) -> float:
    """Matrix-product FLOPs of the shared encoder's forward pass over ``images`` images.

    The patch embedding runs on all ``L`` patches; the blocks on the cls token and
    ``kept_patches`` patches (all ``L`` by default; MAE keeps ``int(L * (1 - mask_ratio))``).
    Per token and block over ``T`` tokens: QKV ``6 D^2``, output projection ``2 D^2``,
    feed-forward ``4 D F``, attention scores and weighted sum ``4 T D``.
    """
    L, D, F = config.num_patches, config.dim, int(config.dim * config.mlp_ratio)
    T = 1 + (L if kept_patches is None else kept_patches)
    patch_embedding = 2 * L * config.patch_dim * D
    blocks = config.depth * T * (8 * D * D + 4 * D * F + 4 * T * D)
    return images * (patch_embedding + blocks)


def patch_embedding_flops(config: MAEConfig, images: int) -> float:
    """Forward FLOPs of the patch embedding, whose backward computes only the weight gradient (pixels need none)."""
    return images * 2 * config.num_patches * config.patch_dim * config.dim


def simmim_training_flops(config: MAEConfig, batch_size: int) -> float:
    """Training FLOPs (forward + backward) of one SimMIM step on ``batch_size`` images.

    The encoder over all ``1+L`` tokens and the linear head at every patch (the loss reads
    only masked ones, but the head runs everywhere). A product's backward costs two
    products (one per input), except the patch embedding's: ``3 x forward - embedding``.
    """
    head = batch_size * 2 * config.num_patches * config.dim * config.patch_dim
    forward = encoder_forward_flops(config, batch_size) + head
    return 3 * forward - patch_embedding_flops(config, batch_size)
