"""SimCLR (Chen et al., 2020): contrastive learning on the course's shared ViT encoder (Lab 6).

    view1, view2 = two_views(imgs, augmentations(32), generator)  # course_utils.contrastive
    model = SimCLR(MAEConfig(image_size=32, patch_size=4))
    loss = model(view1, view2)                                    # NT-Xent over the 2B views
    features = model.features(imgs)                               # [B, D] for a linear probe

SimCLR learns by telling apart which two views come from the same image; MAE and SimMIM
(``course_utils.models.simmim``) learn by filling in masked patches. All three train the same
encoder (``ViTEncoder``, MAE's), so their probes and FLOPs compare like with like. The loss reads
the projection ``z = g(h)`` of the representation ``h`` through ``ProjectionHead`` g, which BEHRT's
contrastive pretraining (``course_utils.models.behrt.BehrtContrastive``) reuses.
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.contrastive import TEMPERATURE, nt_xent_loss
from course_utils.models.mae import MAEConfig
from course_utils.models.vit import ViTEncoder


class ProjectionHead(nn.Sequential):
    """SimCLR's projection head g: ``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``, ``[B, in] -> [B, out]``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class SimCLR(nn.Module):
    """SimCLR: ``loss = model(view1, view2)``; ``model.features(imgs)`` for probes.

    The representation is the mean of the encoder's patch tokens (MAE's ``encode`` default,
    so probes of the three models read the same thing); the loss reads the projection
    ``g(representation)``. Only the encoder sizes of ``config`` are used. The head narrows by default,
    ``dim -> hidden_dim (dim) -> out_dim (dim // 2)``, as the paper's 2048 -> 2048 -> 128 does; the temperature
    is ``contrastive.TEMPERATURE`` (the paper's ImageNet value).
    """

    def __init__(
        self,
        config: MAEConfig,
        hidden_dim: int | None = None,
        out_dim: int | None = None,
        temperature: float = TEMPERATURE,
    ):
        super().__init__()
        self.config = config
        self.temperature = temperature
        self.encoder = ViTEncoder(config)
        self.projection_head = ProjectionHead(config.dim, hidden_dim or config.dim, out_dim or max(1, config.dim // 2))

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
