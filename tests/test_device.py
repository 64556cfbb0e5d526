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


@pytest.fixture
def gpus(monkeypatch):
    """Fake CUDA GPUs by compute capability: ``gpus((7, 5), (8, 0))`` puts a T4 at cuda:0 and an A100 at cuda:1."""

    def fake(*capabilities):
        def get_device_capability(device=None):
            index = torch.device("cuda" if device is None else device).index
            return capabilities[index or 0]  # cuda without an index is the current device, cuda:0 here

        monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)

    return fake


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
@pytest.mark.parametrize(
    "capability, dtype",
    [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16), ((7, 5), torch.float16), ((7, 0), torch.float16)],
)
def test_autocast_is_bf16_from_compute_capability_8_and_fp16_on_7(gpus, capability, dtype):
    gpus(capability)
    context = dev.autocast("cuda")
    assert isinstance(context, torch.autocast) and context.fast_dtype == dtype
    assert dev.autocast_dtype("cuda") == dtype


def test_autocast_stays_off_on_gpus_older_than_compute_capability_7(gpus):
    gpus((6, 1))
    assert isinstance(dev.autocast("cuda"), contextlib.nullcontext) and dev.autocast_dtype("cuda") is None


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_emulated_bf16_does_not_count(gpus, monkeypatch):
    """``is_bf16_supported()`` is True on a T4, where bf16 is emulated and slow."""
    gpus((7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert dev.autocast("cuda").fast_dtype == torch.float16


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_autocast_asks_about_the_device_it_is_given(gpus):
    gpus((7, 5), (8, 0))
    assert dev.autocast("cuda:1").fast_dtype == torch.bfloat16
    assert dev.autocast("cuda:0").fast_dtype == torch.float16


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
