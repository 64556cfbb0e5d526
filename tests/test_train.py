"""The shared training loop: it learns, its schedule has the documented shape, fp16 loss scaling is invisible."""

import copy
import re

import pytest
import torch
from torch import nn

from course_utils import train
from course_utils.train import History, TrainConfig, fit, make_optimizer, make_scheduler, to_device


def regression_batches(seed=0, n=8, batch=32):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.tensor([[2.0], [-3.0]])
    batches = []
    for _ in range(n):
        x = torch.randn(batch, 2, generator=generator)
        batches.append((x, x @ weight + 0.5))
    return batches


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def test_fit_learns_a_linear_map():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    history = fit(
        model, regression_batches(), mse, TrainConfig(steps=300, lr=0.1, live_plot=False), torch.device("cpu")
    )
    assert len(history.losses) == 300
    assert history.losses[-1] < 0.01 * history.losses[0]
    assert not model.training, "fit leaves the model in eval mode"


def test_schedule_warms_up_then_decays_to_zero():
    model = nn.Linear(2, 1)
    config = TrainConfig(steps=100, lr=1.0, warmup_steps=10)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    lrs = []
    for _ in range(config.steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01)
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 10
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])), "after warmup the rate only decreases"
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)


def test_weight_decay_skips_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    decayed, plain = make_optimizer(model, TrainConfig(steps=1)).param_groups
    assert [p.shape for p in decayed["params"]] == [torch.Size([4, 4])]
    assert decayed["weight_decay"] > 0 and plain["weight_decay"] == 0 and len(plain["params"]) == 3


def test_the_optimiser_is_fused_on_the_cpu_and_takes_the_same_steps_as_the_unfused_one():
    torch.manual_seed(0)
    model, config = nn.Linear(3, 2), TrainConfig(steps=5, lr=0.1)
    optimizer = make_optimizer(model, config)
    assert all(group["fused"] for group in optimizer.param_groups)
    twin = copy.deepcopy(model)
    groups = make_optimizer(twin, config).param_groups
    plain = torch.optim.AdamW([{**g, "fused": None} for g in groups], lr=config.lr, betas=config.betas)
    for _ in range(5):
        for m, opt in ((model, optimizer), (twin, plain)):
            opt.zero_grad()
            m(torch.ones(4, 3)).square().sum().backward()
            opt.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), twin.parameters()))


def test_fp16_loss_scaling_leaves_the_clipped_updates_unchanged(monkeypatch):
    """With fp16 (faked: the scaler runs, the maths stays fp32) the loss is scaled by 2**16 before
    backward and unscaled before clipping, so the weights end where unscaled training puts them.
    Clipping the scaled gradients would cut every step to ``max_grad_norm`` / 2**16 of its size."""
    scales = []

    class RecordingScaler(torch.amp.GradScaler):
        def scale(self, loss):
            scaled = super().scale(loss)
            scales.append((scaled / loss).item())
            return scaled

    def trained_linear_map():
        torch.manual_seed(0)
        model = nn.Linear(2, 1)
        config = TrainConfig(steps=30, lr=0.05, max_grad_norm=0.5, live_plot=False)
        fit(model, regression_batches(), mse, config, torch.device("cpu"))
        return model

    plain = trained_linear_map()
    monkeypatch.setattr(train, "autocast_dtype", lambda device: torch.float16)
    monkeypatch.setattr(torch.amp, "GradScaler", RecordingScaler)
    scaled = trained_linear_map()
    assert scales == [2.0**16] * 30
    torch.testing.assert_close(scaled.weight, plain.weight)
    torch.testing.assert_close(scaled.bias, plain.bias)


def test_empty_batches_are_an_error():
    with pytest.raises(ValueError, match="batches"):
        fit(nn.Linear(2, 1), [], mse, TrainConfig(steps=2, live_plot=False), torch.device("cpu"))


@pytest.mark.parametrize(
    "kwargs, name",
    [({"steps": 0}, "steps"), ({"steps": 5, "lr": 0}, "lr"), ({"steps": 5, "warmup_steps": 9}, "warmup_steps")],
)
def test_bad_config_names_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**kwargs)


def test_to_device_moves_every_tensor_of_a_nested_batch():
    """To the ``meta`` device, which every machine has: a real move, unlike cpu to cpu."""
    batch = {"x": torch.ones(2), "pair": (torch.zeros(1), 3), "list": [torch.zeros(3)]}
    moved = to_device(batch, torch.device("meta"))
    assert moved["x"].device.type == moved["pair"][0].device.type == moved["list"][0].device.type == "meta"
    assert moved["pair"][1] == 3 and isinstance(moved["pair"], tuple) and isinstance(moved["list"], list)
    assert batch["x"].device.type == "cpu", "the input batch is left where it was"


def test_history_smoothing_is_a_running_mean():
    history = History(steps=[1, 2, 3, 4], losses=[4.0, 2.0, 0.0, 2.0])
    assert history.smoothed(window=2) == [4.0, 3.0, 1.0, 1.0]


def test_evaluations_run_every_eval_every_steps_and_at_the_end():
    calls = []

    def evaluate(model):
        calls.append(model.training)
        return {"weight": model.weight.sum()}

    config = TrainConfig(steps=25, lr=0.1, eval_every=10, live_plot=False)
    history = fit(nn.Linear(2, 1), regression_batches(), mse, config, torch.device("cpu"), evaluate=evaluate)
    assert [entry["step"] for entry in history.evaluations] == [10, 20, 25]
    assert calls == [False, False, False], "evaluate runs in eval mode"
    assert all(isinstance(entry["weight"], float) for entry in history.evaluations)


def test_early_stopping_stops_after_patience_and_keeps_the_best_weights():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    scores = iter([1.0, 3.0, 2.0, 2.5, 0.0, 9.0])  # best at the 2nd evaluation, then 2 without improvement
    snapshots = []

    def evaluate(model):
        snapshots.append(model.weight.detach().clone())
        return {"score": next(scores)}

    config = TrainConfig(steps=60, lr=0.1, eval_every=5, patience=2, live_plot=False)
    history = fit(model, regression_batches(), mse, config, torch.device("cpu"), evaluate=evaluate, monitor="score")
    assert [entry["step"] for entry in history.evaluations] == [5, 10, 15, 20]
    assert len(history.losses) == 20 and history.best_step == 10
    assert torch.equal(model.weight, snapshots[1]), "the model ends with the weights of its best evaluation"


@pytest.mark.parametrize(
    "config, options, needle",
    [
        (dict(eval_every=5), {}, "evaluate and config.eval_every"),
        (dict(), dict(evaluate=lambda model: {}), "evaluate and config.eval_every"),
        (dict(eval_every=5, patience=1), dict(evaluate=lambda model: {"a": 1.0}), "needs monitor"),
        (dict(eval_every=5), dict(evaluate=lambda model: {"a": 1.0}, monitor="b"), "monitor='b'"),
    ],
)
def test_evaluation_options_are_checked(config, options, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        fit(nn.Linear(2, 1), regression_batches(), mse, TrainConfig(steps=10, live_plot=False, **config),
            torch.device("cpu"), **options)


def test_fit_syncs_with_the_host_only_at_logging_steps_and_keeps_every_loss(monkeypatch):
    """No ``loss.item()`` per step (on a GPU each one waits for the device); losses reach ``history`` in one
    transfer per logging step, all of them."""
    returned, values, calls = [], [], {"loss item": 0, "tolist": 0}  # returned keeps each loss's storage alive
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counted_item(self, *args, **kwargs):
        calls["loss item"] += any(self.untyped_storage().data_ptr() == loss.untyped_storage().data_ptr()
                                  for loss in returned)
        return item(self, *args, **kwargs)

    def counted_tolist(self, *args, **kwargs):
        calls["tolist"] += 1
        return tolist(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "item", counted_item)
    monkeypatch.setattr(torch.Tensor, "tolist", counted_tolist)
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    data = [(torch.randn(8, 2), torch.randn(8, 1)) for _ in range(3)]

    def loss_fn(model, batch):
        loss = ((model(batch[0]) - batch[1]) ** 2).mean()
        returned.append(loss)
        values.append(float(loss.detach().numpy()))
        return loss

    history = fit(
        model, data, loss_fn, TrainConfig(steps=25, lr=1e-2, log_every=10, live_plot=False), torch.device("cpu")
    )
    assert calls["loss item"] == 0, "a host sync at every step"
    assert calls["tolist"] == 3, "one transfer per logging step (steps 10, 20 and the last)"
    assert history.losses == pytest.approx(values) and len(history.losses) == 25
