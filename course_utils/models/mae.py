"""MAE, the masked autoencoder for images (He et al., 2021), on the course's shared pre-LN encoder.

    imgs [B, C, H, W] --patchify--> [B, L, p*p*C] --embed + sin-cos positions--> [B, L, D]
      --random_masking--> visible [B, L_keep, D] --prepend cls--> encoder (visible patches only!)
      --> decoder_embed [B, 1+L_keep, D_dec] --append mask tokens, unshuffle with ids_restore-->
      [B, 1+L, D_dec] --> small decoder --> pixels per patch [B, L, p*p*C]
    loss = MSE on the removed patches only (optionally against per-patch normalised pixels)

The seed notebook's MAE scored its prediction against the patch *embeddings* (a target the
model itself learns, which can collapse, and of the wrong width), and had no position
embeddings, so neither the encoder nor the identical mask tokens knew where a patch was.

``MAEConfig(mask_tokens_in_encoder=True)`` is the paper's "encoder w/ [M]" ablation (Table
1c): masked patches become a learned mask token *in the encoder*, which then processes all
``L`` patches; ``benchmarks/bench_mae.py`` compares its cost with the real thing.

The initialisation is the official code's (``initialize_weights`` and ``_init_weights`` in
facebookresearch/mae's ``models_mae.py``); see ``init_mae_weights``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from course_utils.models.flops import counted_flops
from course_utils.models.transformer import TransformerEncoder
from course_utils.vision import patchify, random_masking, sincos_pos_embed_2d, unpatchify


@dataclass
class MAEConfig:
    """Sizes of an MAE. The defaults fit 32x32 colour crops on a CPU; the paper's ViT-B/16
    is ``MAEConfig(224, 16, 3, 768, 12, 12, 512, 8, 16)``."""

    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    dim: int = 128
    depth: int = 4
    num_heads: int = 4
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = False
    mask_tokens_in_encoder: bool = False

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide image_size={self.image_size}")
        for width, heads in (("dim", "num_heads"), ("decoder_dim", "decoder_num_heads")):
            if getattr(self, width) % 4 or getattr(self, width) % getattr(self, heads):
                raise ValueError(
                    f"{width}={getattr(self, width)} must be divisible by 4 and by {heads}={getattr(self, heads)}"
                )

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def patch_dim(self) -> int:
        return self.patch_size**2 * self.channels


def init_mae_weights(model: MaskedAutoencoder) -> None:
    """Initialise ``model`` in place as the official ``MaskedAutoencoderViT.initialize_weights`` does.

    * every ``nn.Linear`` but the patch embedding: ``xavier_uniform_`` weight, zero bias;
    * every ``nn.LayerNorm``: weight 1, bias 0;
    * the patch embedding (the official code's ``Conv2d``, here the same map as a ``Linear``):
      ``xavier_uniform_`` on its weight viewed as ``[out, in] = [D, p*p*C]``; its bias keeps
      PyTorch's default, uniform in ``+-1/sqrt(p*p*C)``, because the official ``_init_weights``
      touches only ``nn.Linear`` and ``nn.LayerNorm`` modules, never the convolution;
    * the cls and mask tokens: normal with std 0.02;
    * the position embeddings are fixed sin-cos buffers, set in ``MaskedAutoencoder.__init__``.
    """
    nn.init.xavier_uniform_(model.patch_embed.weight)
    for name, parameter in model.named_parameters():
        if name.endswith("token"):  # cls_token, mask_token (and encoder_mask_token in the ablation)
            nn.init.normal_(parameter, std=0.02)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module is not model.patch_embed:
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def normalized_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``[..., p*p*C]`` -> each patch minus its mean, over its (unbiased) std: MAE's ``norm_pix_loss`` target."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def masked_mse(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over removed patches (``mask == 1``) of the per-patch MSE; 0 when nothing was removed.

    target, pred: ``[B, L, p*p*C]``; mask: ``[B, L]``.
    """
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # [B, L]
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


class MaskedAutoencoder(nn.Module):
    """An MAE: ``loss, pred, mask = model(imgs, mask_ratio=0.75)``; ``model.encode(imgs)`` for probes."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = config
        self.patch_embed = nn.Linear(config.patch_dim, config.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        # Fixed (not learned) positions; row 0, the cls token's, stays zero as in MAE.
        self.register_buffer("pos_embed", self._positions(config.dim), persistent=False)  # [1, 1+L, D]
        self.encoder = TransformerEncoder(config.dim, config.depth, config.num_heads, config.mlp_ratio, norm_first=True)

        self.decoder_embed = nn.Linear(config.dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        self.register_buffer("decoder_pos_embed", self._positions(config.decoder_dim), persistent=False)
        self.decoder = TransformerEncoder(
            config.decoder_dim, config.decoder_depth, config.decoder_num_heads, config.mlp_ratio, norm_first=True
        )
        self.decoder_pred = nn.Linear(config.decoder_dim, config.patch_dim)
        if config.mask_tokens_in_encoder:
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, config.dim))

        init_mae_weights(self)

    def _positions(self, dim: int) -> torch.Tensor:
        grid = sincos_pos_embed_2d(dim, self.config.grid_size)  # [L, dim]
        return torch.cat([torch.zeros(1, dim), grid]).unsqueeze(0)  # [1, 1+L, dim]

    def embed_patches(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs ``[B, C, H, W]`` -> patch tokens with their positions ``[B, L, D]``, in patch order."""
        return self.patch_embed(patchify(imgs, self.config.patch_size)) + self.pos_embed[:, 1:]

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend the cls token and run the encoder: ``[B, N, D] -> [B, 1+N, D]``."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return self.encoder(torch.cat([cls, x], dim=1))

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs ``[B, C, H, W]`` -> latent ``[B, 1+L_keep, D]`` (cls first), mask ``[B, L]``, ids_restore ``[B, L]``.

        Positions are added *before* masking, so each kept patch carries its own position.
        """
        x = self.embed_patches(imgs)  # [B, L, D]
        if self.config.mask_tokens_in_encoder:
            # The "encoder w/ [M]" ablation: removed patches become a mask token, the encoder sees all L.
            _, mask, ids_restore = random_masking(x, mask_ratio, generator)
            tokens = self.encoder_mask_token + self.pos_embed[:, 1:]  # [1, L, D]
            return self.encode_tokens(torch.where(mask.bool().unsqueeze(-1), tokens, x)), mask, ids_restore
        x, mask, ids_restore = random_masking(x, mask_ratio, generator)  # [B, L_keep, D]
        return self.encode_tokens(x), mask, ids_restore

    def decoder_input(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent ``[B, 1+L_keep, D]`` -> ``[B, 1+L, D_dec]``: mask tokens appended, unshuffled, positions added."""
        x = self.decoder_embed(latent)  # [B, 1+L_keep, D_dec]
        B, L = ids_restore.shape
        if not self.config.mask_tokens_in_encoder:  # the real MAE: the encoder returned visible patches, shuffled
            mask_tokens = self.mask_token.expand(B, 1 + L - x.shape[1], -1)
            patches = torch.cat([x[:, 1:], mask_tokens], dim=1)  # [B, L, D_dec], shuffled order
            patches = patches.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :1], patches], dim=1)
        return x + self.decoder_pos_embed

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent ``[B, 1+L_keep, D]`` -> predicted pixels ``[B, L, p*p*C]`` (cls dropped)."""
        x = self.decoder(self.decoder_input(latent, ids_restore))
        return self.decoder_pred(x[:, 1:])

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE between ``pred`` and the pixels of the removed patches (normalised per patch with ``norm_pix_loss``)."""
        target = patchify(imgs, self.config.patch_size)
        if self.config.norm_pix_loss:
            target = normalized_patches(target)
        return masked_mse(target, pred.float(), mask)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs ``[B, C, H, W]`` -> (loss, pred ``[B, L, p*p*C]``, mask ``[B, L]`` with 1 = removed)."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    @torch.no_grad()
    def encode(self, imgs: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """Frozen features ``[B, D]`` of whole images (nothing masked): mean of patch tokens, or ``pool="cls"``."""
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        latent = self.encode_tokens(self.embed_patches(imgs))  # every patch, in patch order
        return latent[:, 1:].mean(dim=1) if pool == "mean" else latent[:, 0]

    @torch.no_grad()
    def reconstruct(
        self, imgs: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images for plots: (reconstruction ``[B, C, H, W]`` in pixel space, mask ``[B, L]``).

        With ``norm_pix_loss`` the model predicts each patch up to its mean and scale; the
        reconstruction borrows those two numbers per patch from the original image.
        """
        _, pred, mask = self(imgs, mask_ratio, generator)
        pred = pred.float()
        if self.config.norm_pix_loss:
            target = patchify(imgs, self.config.patch_size)
            pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
        return unpatchify(pred, self.config.patch_size, self.config.channels), mask


def encoder_flops(model: MaskedAutoencoder, imgs: torch.Tensor, mask_ratio: float) -> int:
    """Forward FLOPs of ``model.forward_encoder`` on ``imgs`` ``[B, C, H, W]``,
    attention included (``counted_flops``)."""
    return counted_flops(lambda: model.forward_encoder(imgs, mask_ratio), backward=False)


@torch.no_grad()
def mask_ratio_sweep(
    model: MaskedAutoencoder, imgs: torch.Tensor, ratios, batch_size: int = 256, seed: int = 0
) -> dict[str, list[float]]:
    """Held-out reconstruction loss and encoder forward MFLOPs (millions of FLOPs) per image at each mask ratio.

    Returns ``{"mask_ratio": [...], "loss": [...], "encoder_mflops": [...]}``; the loss is
    the model's own (masked-only, with its ``norm_pix_loss`` setting), averaged over ``imgs``.
    """
    model.eval()
    device = next(model.parameters()).device
    sweep = {"mask_ratio": [], "loss": [], "encoder_mflops": []}
    for ratio in ratios:
        generator = torch.Generator().manual_seed(seed)
        losses = [model(chunk.to(device), ratio, generator)[0].item() * len(chunk) for chunk in imgs.split(batch_size)]
        sweep["mask_ratio"].append(float(ratio))
        sweep["loss"].append(sum(losses) / len(imgs))
        sweep["encoder_mflops"].append(encoder_flops(model, imgs[:1].to(device), ratio) / 1e6)
    return sweep


@torch.no_grad()
def extract_features(
    model: MaskedAutoencoder, imgs: torch.Tensor, batch_size: int = 256, pool: str = "mean"
) -> torch.Tensor:
    """``model.encode`` over ``imgs`` in batches, on the model's device -> CPU features ``[N, D]``."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model.encode(chunk.to(device), pool).float().cpu() for chunk in imgs.split(batch_size)])


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels, max_iter: int = 2000) -> float:
    """Test accuracy of a logistic regression on standardised frozen features (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(train_features, train_labels)
    return float(probe.score(test_features, test_labels))
