"""Device, profile and precision selection, with the hardware faked."""

import contextlib

import pytest
import torch

from course_utils import device as dev


@pytest.fixture
def hardware(monkeypatch):
    """Fake which accelerators exist; clear the overrides."""
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.delenv("CI", raising=False)

    def fake(cuda=False, mps=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return fake


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_device_prefers_cuda_then_mps_then_cpu(hardware, cuda, mps, expected):
    hardware(cuda=cuda, mps=mps)
    assert dev.get_device().type == expected


def test_course_device_overrides_detection(hardware, monkeypatch):
    hardware(cuda=True)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert dev.get_device() == torch.device("cpu")


def test_bad_course_device_names_the_variable(hardware, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "tpu-please")
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        dev.get_device()


@pytest.mark.parametrize(
    "cuda, ci, expected", [(False, None, "cpu"), (True, None, "gpu"), (True, "true", "ci"), (False, "1", "ci")]
)
def test_profile_is_detected_from_ci_and_hardware(hardware, monkeypatch, cuda, ci, expected):
    hardware(cuda=cuda)
    if ci:
        monkeypatch.setenv("CI", ci)
    assert dev.get_profile() == expected


def test_course_profile_overrides_detection(hardware, monkeypatch):
    hardware(cuda=True)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("COURSE_PROFILE", "CPU")
    assert dev.get_profile() == "cpu"


def test_bad_course_profile_lists_the_choices(hardware, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "huge")
    with pytest.raises(ValueError, match="ci, cpu, gpu"):
        dev.get_profile()


def test_by_profile_picks_the_current_profile(hardware, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    assert dev.by_profile(ci=1, cpu=2, gpu=3) == 3
    assert dev.by_profile(ci=1, cpu=2, gpu=3, profile="ci") == 1
    with pytest.raises(ValueError, match="profile"):
        dev.by_profile(ci=1, cpu=2, gpu=3, profile="tpu")


def test_autocast_is_a_noop_on_cpu():
    with dev.autocast("cpu") as context:
        assert not torch.is_autocast_enabled()
    assert context is None


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_is_bf16_on_a_cuda_device_that_supports_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    context = dev.autocast("cuda")
    assert isinstance(context, torch.autocast)
    assert context.fast_dtype == torch.bfloat16


def test_autocast_stays_off_on_cuda_without_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert isinstance(dev.autocast("cuda"), contextlib.nullcontext)


def test_seed_everything_makes_draws_repeat():
    generator = dev.seed_everything(123)
    first = (torch.rand(3), torch.rand(3, generator=generator))
    generator = dev.seed_everything(123)
    second = (torch.rand(3), torch.rand(3, generator=generator))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    with pytest.raises(ValueError, match="seed"):
        dev.seed_everything(-1)


def test_describe_reports_device_and_profile(hardware, monkeypatch, capsys):
    hardware()
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    info = dev.describe()
    assert info["device"] == "cpu" and info["profile"] == "ci" and info["torch"] == torch.__version__
    assert "profile: ci" in capsys.readouterr().out
