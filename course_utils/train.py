"""The training loop every lab uses.

    history = fit(model, loader, loss_fn, TrainConfig(steps=500, lr=1e-3))

``loss_fn(model, batch) -> scalar loss`` is the only lab-specific part: Lab 2 masks
tokens and scores the masked positions, Lab 3 calls ``MaskedAutoencoder``, Lab 4 masks
events. The loop supplies the rest: AdamW (no decay on biases and norms), linear warmup
then cosine decay, gradient clipping, mixed precision on a CUDA GPU (bf16, or fp16 with
loss scaling on older GPUs: ``device.autocast_dtype``), a progress bar (``progress.tqdm``) and a live
loss plot in notebooks.

``evaluate(model) -> {metric: value}`` runs every ``config.eval_every`` steps and at the end,
into ``history.evaluations``. With ``monitor`` (a metric where higher is better) the model ends
with the weights of its best evaluation; with ``config.patience`` too, training stops after
``patience`` evaluations without improvement (early stopping).

``COURSE_MAX_STEPS=N`` (``device.max_steps``) caps every ``fit`` at N optimiser steps, whatever the
profile: a quick end-to-end check of a profile's data and model sizes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from course_utils.device import autocast, autocast_dtype, get_device, max_steps
from course_utils.progress import tqdm


@dataclass
class TrainConfig:
    """Optimisation settings; ``warmup_steps`` defaults to 10% of ``steps``."""

    steps: int
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    log_every: int = 10
    live_plot: bool = True
    eval_every: int | None = None
    patience: int | None = None

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps is None:
            self.warmup_steps = max(1, self.steps // 10)
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 or None, got {self.eval_every}")
        if self.patience is not None and (self.patience < 1 or self.eval_every is None):
            raise ValueError(f"patience must be >= 1 and needs eval_every, got patience={self.patience}")


@dataclass
class History:
    """What ``fit`` logged: one entry per optimiser step."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)  # {"step": s, metric: value, ...}
    best_step: int | None = None  # the evaluation whose weights the model kept (early stopping)

    def smoothed(self, window: int = 20) -> list[float]:
        """Running mean of the loss over the last ``window`` steps."""
        out, total = [], 0.0
        for i, loss in enumerate(self.losses):
            total += loss - (self.losses[i - window] if i >= window else 0.0)
            out.append(total / min(i + 1, window))
        return out


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or 1-D parameters).

    Fused (one kernel for every parameter) where all parameters are floating-point on a CPU or a CUDA GPU:
    a small model's step spends much of its time in a per-parameter update otherwise (``benchmarks/bench_train.py``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=True if fused else None)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup from 1% of ``lr`` to ``lr``, then cosine decay to 0 at ``steps``."""
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=max(config.warmup_steps, 1))
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.steps - config.warmup_steps, 1))
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[config.warmup_steps])


def to_device(batch, device: torch.device):
    """Move a tensor, or a dict/list/tuple of tensors, to ``device`` (non-blocking from pinned memory)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


class TensorRows(torch.utils.data.Dataset):
    """The rows of a dict of equally long tensors; a batch of rows is one indexing per tensor (``__getitems__``),
    not one per row and key followed by a stack, as ``StackDataset`` with the default collate does."""

    def __init__(self, encoded: dict[str, torch.Tensor]):
        lengths = {len(tensor) for tensor in encoded.values()}
        if len(lengths) != 1:
            raise ValueError(f"encoded must hold tensors of one length, got lengths {sorted(lengths)}")
        self.encoded, self.length = encoded, lengths.pop()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: tensor[index] for key, tensor in self.encoded.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(indices)
        return {key: tensor[rows] for key, tensor in self.encoded.items()}


def _batch_as_is(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def batches(encoded: dict[str, torch.Tensor], batch_size: int, seed: int = 0, pin_memory: bool = False):
    """A shuffling ``DataLoader`` over the rows of a dict of tensors (``text.encode_batch``'s output, images and
    labels): each batch is a dict of ``[batch_size, ...]`` tensors, the last partial one dropped; reshuffled every
    epoch from ``seed``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return torch.utils.data.DataLoader(
        TensorRows(encoded),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=_batch_as_is,  # __getitems__ already returns the batch
        pin_memory=pin_memory,
    )


def fit(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    config: TrainConfig,
    device: torch.device | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    monitor: str | None = None,
) -> History:
    """Train ``model`` for up to ``config.steps`` optimiser steps (at most ``COURSE_MAX_STEPS``), cycling over
    ``batches``; leave it in eval mode.

    ``evaluate`` (called in eval mode, without gradients) and ``monitor`` are described in the module docstring.
    """
    if (config.eval_every is None) != (evaluate is None):
        raise ValueError("evaluate and config.eval_every go together: give both or neither")
    if config.patience is not None and monitor is None:
        raise ValueError("config.patience needs monitor, the name of a metric that evaluate returns")
    device = device or get_device()
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)
    history = History()
    best_value, best_state, stale = float("-inf"), None, 0
    unlogged: list[torch.Tensor] = []  # losses since the last logging step, still on the device (no host sync)

    plot = _live_plot(config) if config.live_plot else None
    stream = _forever(batches)
    cap = max_steps()
    last = config.steps if cap is None else min(config.steps, cap)
    progress = tqdm(range(last), desc="train", leave=False)
    for step in progress:
        batch = to_device(next(stream), device)
        with autocast(device):
            loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # fp16: scaled up so that small gradients do not underflow
        if config.max_grad_norm is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        scaler.step(optimizer)  # skipped if fp16 gradients overflowed; the scale then shrinks
        scaler.update()
        scheduler.step()

        history.steps.append(step + 1)
        unlogged.append(loss.detach())
        history.lrs.append(scheduler.get_last_lr()[0])
        evaluating = evaluate is not None and ((step + 1) % config.eval_every == 0 or step + 1 == last)
        if (step + 1) % config.log_every == 0 or step + 1 == last or evaluating:
            history.losses += torch.stack(unlogged).float().tolist()  # the one host sync per logging step
            unlogged.clear()
            progress.set_postfix(loss=f"{history.smoothed()[-1]:.3f}")
            if plot is not None:
                plot.update(history)
        if evaluating:
            metrics = _evaluate(model, evaluate)
            history.evaluations.append({"step": step + 1, **metrics})
            if monitor is not None:
                if monitor not in metrics:
                    raise ValueError(
                        f"monitor={monitor!r} is not among the metrics evaluate returned: {sorted(metrics)}"
                    )
                if metrics[monitor] > best_value:
                    best_value, stale, history.best_step = metrics[monitor], 0, step + 1
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
                if config.patience is not None and stale >= config.patience:
                    break
    progress.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def _evaluate(model: nn.Module, evaluate: Callable[[nn.Module], dict[str, float]]) -> dict[str, float]:
    """``evaluate(model)`` in eval mode without gradients; training mode is restored afterwards."""
    model.eval()
    with torch.no_grad():
        metrics = {name: float(value) for name, value in evaluate(model).items()}
    model.train()
    return metrics


def _forever(batches: Iterable):
    """Re-iterate ``batches`` epoch after epoch (a DataLoader reshuffles and re-masks each time)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("batches yielded nothing; expected a non-empty DataLoader or iterable of batches")


def _live_plot(config: TrainConfig):
    from course_utils.viz import LiveLossPlot

    return LiveLossPlot(total_steps=config.steps)
