"""The shared training loop: it learns, its schedule has the documented shape, and checkpoints resume exactly."""

import pytest
import torch
from torch import nn

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


def test_resuming_from_a_checkpoint_continues_the_same_run(tmp_path):
    cpu = torch.device("cpu")

    def config(name):
        return TrainConfig(steps=40, lr=0.05, live_plot=False, checkpoint_path=tmp_path / name, checkpoint_every=20)

    torch.manual_seed(0)
    straight = nn.Linear(2, 1)
    straight_history = fit(straight, regression_batches(), mse, config("straight.pt"), cpu)

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(nn.Linear(2, 1), _interrupt_after(regression_batches(), 21), mse, config("interrupted.pt"), cpu)
    assert torch.load(tmp_path / "interrupted.pt", weights_only=True)["step"] == 20

    resumed = nn.Linear(2, 1)  # fresh weights: the checkpoint must overwrite them
    history = fit(resumed, _skip(regression_batches(), 20), mse, config("interrupted.pt"), cpu)
    assert history.steps == list(range(1, 41))
    torch.testing.assert_close(resumed.weight, straight.weight)
    assert history.losses == pytest.approx(straight_history.losses)


def _interrupt_after(batches, n):
    """Yield batches cyclically, then raise KeyboardInterrupt when batch ``n`` is requested."""
    for i, batch in enumerate(batches * 100):
        if i + 1 == n:
            raise KeyboardInterrupt
        yield batch


def _skip(batches, n):
    """The same cyclic stream with the first ``n`` batches already consumed."""
    stream = iter(batches * 100)
    for _ in range(n):
        next(stream)
    return stream


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


def test_to_device_moves_nested_batches():
    batch = {"x": torch.ones(2), "pair": (torch.zeros(1), 3)}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["pair"][1] == 3 and isinstance(moved["pair"], tuple) and moved["x"].device.type == "cpu"


def test_history_smoothing_is_a_running_mean():
    history = History(steps=[1, 2, 3, 4], losses=[4.0, 2.0, 0.0, 2.0])
    assert history.smoothed(window=2) == [4.0, 3.0, 1.0, 1.0]
