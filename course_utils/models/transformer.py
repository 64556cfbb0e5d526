"""The transformer encoder that BERT (Lab 2), MAE (Lab 3) and the EHR model (Lab 4) share.

One block, two layouts:

* post-LN (``norm_first=False``), as in BERT:  ``x = LN(x + Attn(x)); x = LN(x + FFN(x))``
* pre-LN  (``norm_first=True``),  as in ViT/MAE: ``x = x + Attn(LN(x)); x = x + FFN(LN(x))``

Attention runs through ``F.scaled_dot_product_attention`` (flash or memory-efficient
kernels on a GPU) with one fused QKV projection. ``attention_mask`` is ``[B, L]``
with 1 (or True) for real tokens and 0 for padding; padded keys are never attended to.
A batch without padding passes no mask at all, which leaves SDPA free to use flash attention.
Objectives that restrict who sees whom (a causal LM, a permutation LM) pass ``[B, L, L]``
instead: entry ``[b, i, j]`` says whether query ``i`` may attend to key ``j``.

Every BERT-shaped model (BERT, ALBERT, ELECTRA, the causal and permutation LMs, BEHRT) builds its
stack with ``post_ln_encoder(config)`` and initialises itself with ``init_and_tie``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def require_positive_ints(config, *names: str) -> None:
    """Raise ValueError naming the first field of ``config`` among ``names`` that is not a positive int."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """``[B, L]`` keep-mask (1 = real token) -> boolean ``[B, 1, 1, L]`` mask that SDPA broadcasts."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq], got shape {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


def sdpa_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """A ``[B, L]`` keep-mask or a ``[B, L, L]`` query-key mask -> the boolean mask SDPA broadcasts over heads."""
    if attention_mask is not None and attention_mask.dim() == 3:
        if attention_mask.shape[1] != attention_mask.shape[2]:
            raise ValueError(f"attention_mask must be [batch, seq, seq], got shape {tuple(attention_mask.shape)}")
        return attention_mask.bool()[:, None]  # [B, L, L] -> [B, 1, L, L]
    return key_padding_mask(attention_mask)


def mask_if_padded(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """``attention_mask`` (``[B, L]`` or ``[B, L, L]``), or None when it keeps everything (flash takes no mask).

    Called once per forward pass, not per layer: on a GPU the check waits for the mask to be ready.
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() not in (2, 3):
        raise ValueError(
            f"attention_mask must be [batch, seq] or [batch, seq, seq], got shape {tuple(attention_mask.shape)}"
        )
    return None if bool(attention_mask.all()) else attention_mask


def select_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x[rows]`` for ``x`` ``[B, L, D]`` and boolean ``rows`` ``[B, L]`` -> ``[S, D]``, in row-major order.

    ``index_select`` rather than boolean indexing: its backward is a cheap ``index_add``.
    """
    if rows.shape != x.shape[:2] or rows.dtype != torch.bool:
        raise ValueError(
            f"rows must be a boolean [batch, seq] tensor of shape {tuple(x.shape[:2])}, "
            f"got {rows.dtype} {tuple(rows.shape)}"
        )
    return x.flatten(0, 1).index_select(0, rows.flatten().nonzero().squeeze(1))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection.

    Args:
        dim: model width D.
        num_heads: H; D must be divisible by H.
        dropout: attention-probability dropout (training only).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.num_heads, D // self.num_heads)  # [B, L, 3, H, D/H]
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, H, L, D/H]

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: ``[B, L, D]``; attention_mask: ``[B, L]``, ``[B, L, L]`` or None -> ``[B, L, D]``.

        ``rows`` (boolean ``[B, L]``) keeps only those query positions after attention:
        the output is ``[S, D]`` for the S selected positions, and the projection runs only there.
        """
        q, k, v = self._heads(x)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask(attention_mask), dropout_p=dropout)
        out = out.transpose(1, 2).flatten(2)  # [B, H, L, D/H] -> [B, L, D]
        return self.proj(out if rows is None else select_rows(out, rows))

    @torch.no_grad()
    def attention_probs(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The softmax attention weights ``[B, H, L, L]`` that SDPA computes but never returns (for plots)."""
        q, k, _ = self._heads(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B, H, L, L]
        mask = sdpa_mask(attention_mask)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1)


class FeedForward(nn.Sequential):
    """Position-wise MLP: ``D -> hidden -> D`` with GELU."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))


class TransformerBlock(nn.Module):
    """One encoder layer: self-attention then feed-forward, each with a residual and a LayerNorm.

    The feed-forward width is ``mlp_dim`` when given (BERT's ``intermediate_size``), else ``int(dim * mlp_ratio)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm_first: bool = True,
        layer_norm_eps: float = 1e-6,
        *,
        mlp_dim: int | None = None,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadSelfAttention(dim, num_heads, dropout)
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.ffn = FeedForward(dim, mlp_dim if mlp_dim is not None else int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: ``[B, L, D]`` -> ``[B, L, D]``; with ``rows`` (boolean ``[B, L]``) only those positions, ``[S, D]``.

        Every position still serves as a key and value; ``rows`` skips the projection, the
        feed-forward and the norms elsewhere (a last layer whose other outputs nobody reads).
        """
        kept = x if rows is None else select_rows(x, rows)
        if self.norm_first:
            kept = kept + self.dropout(self.attention(self.norm1(x), attention_mask, rows))
            return kept + self.dropout(self.ffn(self.norm2(kept)))
        kept = self.norm1(kept + self.dropout(self.attention(x, attention_mask, rows)))
        return self.norm2(kept + self.dropout(self.ffn(kept)))


class TransformerEncoder(nn.Module):
    """A stack of ``depth`` identical blocks (``TransformerBlock``); pre-LN stacks end with a final LayerNorm."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm_first: bool = True,
        layer_norm_eps: float = 1e-6,
        *,
        mlp_dim: int | None = None,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout, norm_first, layer_norm_eps, mlp_dim=mlp_dim)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=layer_norm_eps) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: ``[B, L, D]``; attention_mask: ``[B, L]``, ``[B, L, L]`` or None -> ``[B, L, D]``."""
        attention_mask = mask_if_padded(attention_mask)
        for block in self.blocks:
            x = block(x, attention_mask)
        return self.norm(x)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Attention weights of every layer, a list of ``depth`` tensors ``[B, H, L, L]``."""
        maps = []
        for block in self.blocks:
            attention_input = block.norm1(x) if block.norm_first else x
            maps.append(block.attention.attention_probs(attention_input, attention_mask))
            x = block(x, attention_mask)
        return maps


def post_ln_encoder(config, encoder_class: type[TransformerEncoder] = TransformerEncoder) -> TransformerEncoder:
    """BERT's post-LN encoder stack, sized by a BERT-shaped ``config``: ``[B, L, D] -> [B, L, D]``.

    ``config`` has ``hidden_size`` (D), ``num_layers``, ``num_heads``, ``intermediate_size`` (the
    feed-forward width), ``dropout`` and ``layer_norm_eps`` (``BertConfig``, ``BehrtConfig``).
    ``encoder_class`` takes ``TransformerEncoder``'s arguments (ALBERT's ``SharedLayerEncoder``).
    """
    return encoder_class(
        dim=config.hidden_size,
        depth=config.num_layers,
        num_heads=config.num_heads,
        mlp_dim=config.intermediate_size,
        dropout=config.dropout,
        norm_first=False,
        layer_norm_eps=config.layer_norm_eps,
    )


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT/ViT initialisation: truncated-normal Linear and Embedding weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_and_tie(
    model: nn.Module, std: float = 0.02, decoder: nn.Linear | None = None, embedding: nn.Embedding | None = None
) -> None:
    """``init_weights`` on every submodule of ``model``, in registration order; then, given a ``decoder``, its
    weight becomes ``embedding``'s (tied: one ``[V, D]`` matrix reads and writes tokens; the bias stays its own)."""
    model.apply(lambda module: init_weights(module, std=std))
    if decoder is not None:
        decoder.weight = embedding.weight
