"""BERT's masker: select 15% of the eligible tokens, then apply the 80-10-10 rule.

    masked_ids, labels = mask_tokens(input_ids, mask_token_id=4, vocab_size=V, special_token_ids=(0, 1, 2, 3, 4))

Of the selected positions, 80% become [MASK], 10% a random non-special token and 10%
stay as they are; ``labels`` holds the original id at selected positions and -100
elsewhere. One uniform draw per position decides both whether it is selected and what
happens to it, so the whole batch is masked in a few tensor operations on its own device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100


def _check_probability(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def validate_masking_args(input_ids, mask_token_id, vocab_size, mlm_probability, mask_replace_prob, random_replace_prob):
    """Raise ValueError, naming the argument, for anything ``mask_tokens`` cannot honour."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        kind = input_ids.dtype if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be an integer tensor of token ids [batch, seq], got {kind}")
    _check_probability("mlm_probability", mlm_probability)
    _check_probability("mask_replace_prob", mask_replace_prob)
    _check_probability("random_replace_prob", random_replace_prob)
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
        raise ValueError(
            f"mask_replace_prob + random_replace_prob must be <= 1, got {mask_replace_prob} + {random_replace_prob}"
        )
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        raise ValueError(
            f"vocab_size={vocab_size} does not cover the ids in input_ids (range {int(input_ids.min())}..{int(input_ids.max())})"
        )
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be in [0, vocab_size={vocab_size}), got {mask_token_id}")


def non_special_ids(vocab_size: int, special_token_ids: Sequence[int], device=None) -> torch.Tensor:
    """The ids a random replacement may draw: ``[0, vocab_size)`` minus the specials, as a 1-D tensor."""
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
    allowed[torch.as_tensor(list(special_token_ids), dtype=torch.long, device=device)] = False
    ids = allowed.nonzero().squeeze(1)
    if ids.numel() == 0:
        raise ValueError("special_token_ids cover the whole vocabulary; no id is left for random replacement")
    return ids


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: Sequence[int] = (),
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of ``input_ids`` ``[B, L]`` -> ``(masked_ids [B, L], labels [B, L])``; the input is not modified.

    ``generator`` must live on ``input_ids``' device; the same seed gives the same masks.
    """
    validate_masking_args(input_ids, mask_token_id, vocab_size, mlm_probability, mask_replace_prob, random_replace_prob)
    device = input_ids.device
    special = torch.as_tensor(list(special_token_ids), dtype=input_ids.dtype, device=device)
    eligible = ~torch.isin(input_ids, special)  # [B, L]

    # One draw u ~ U[0, 1) per position: u < p selects it, and where u falls inside [0, p)
    # decides [MASK] (first 80% of the interval), random (next 10%) or keep (the rest).
    u = torch.rand(input_ids.shape, device=device, generator=generator)
    selected = eligible & (u < mlm_probability)
    to_mask = selected & (u < mlm_probability * mask_replace_prob)
    to_random = selected & ~to_mask & (u < mlm_probability * (mask_replace_prob + random_replace_prob))

    replacements = non_special_ids(vocab_size, special_token_ids, device)
    random_ids = replacements[torch.randint(len(replacements), input_ids.shape, device=device, generator=generator)]

    masked_ids = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked_ids = torch.where(to_random, random_ids.to(input_ids.dtype), masked_ids)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked_ids, labels
