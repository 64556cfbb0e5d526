"""The ViT encoder that MAE, SimMIM and SimCLR share: MAE's encoder half, without its decoder (Labs 3 and 6).

    encoder = ViTEncoder(MAEConfig(image_size=32, patch_size=4))
    tokens = encoder(imgs)                               # [B, C, H, W] -> [B, 1+L, D], cls first
    features = encoder.encode(imgs)                      # [B, D], the mean patch token, for probes
    encoder.load_state_dict(mae.state_dict(), strict=False)   # a pretrained MAE's encoder

Patch embedding, fixed sin-cos positions, cls token, pre-LN blocks and the official
initialisation are all MAE's, so the three methods differ only in what the encoder is asked to do.
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.models.mae import MAEConfig, MaskedAutoencoder


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
