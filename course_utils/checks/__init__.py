"""Feedback for exercises: checks that name the misconception they catch.

A lab's visible tests call the checks in ``course_utils.checks.<lab>``, which are built
from the helpers here. A failed check raises ``Misconception``, an ``AssertionError``
whose first line says what probably went wrong ("you selected a [PAD] position"); that
line is what ``python -m course_utils grade`` shows next to the lost points. A passed
check prints one line starting with a tick.

``NotImplementedError`` from an untouched exercise is never caught, so an unattempted
exercise reads as such. In a notebook, both read as one short message rather than a
traceback (``checks.notebook``), and "Run All" goes on past them.

The same checks grade a submission: there the exercise function is a stand-in that runs the
student's code in a sandboxed worker (``course_utils.grading.remote.RemoteFunction``), so a check
must reach the student's code only by calling it, and gradients only through ``gradients``.
"""

from __future__ import annotations

import torch


class Misconception(AssertionError):
    """A failed check; its message names the likely mistake and hints at the fix."""


def expect(condition, misconception: str, hint: str = "") -> None:
    """Raise ``Misconception(misconception)`` unless ``condition`` holds."""
    if not bool(condition):
        raise Misconception(misconception + (f"\nHint: {hint}" if hint else ""))


def passed(message: str) -> None:
    """Report one passed check."""
    print(f"\u2713 {message}")


FALSE_FAILURE = 1e-8
"""The false-failure policy of every statistical check: one binomial count judged by ``expect_binomial``
(``binomial_range``) fails correct work with probability at most ``FALSE_FAILURE`` over seeds, half of it in
each tail. A test cell judging several counts fails correct work with probability at most the sum over its
counts (union bound): k counts at ``FALSE_FAILURE`` each, at most k * ``FALSE_FAILURE``; a check that judges
m counts as one claim gives each ``FALSE_FAILURE / m``. Every cell stays below the course's 1e-6 (Lab 5's
sampler cell, the busiest, judges 29 counts: at most 2.9e-7). A smaller value widens every range, which lets
a wrong function that lands near the right share pass; the known mistakes of every lab are still caught at
this value (tests/test_grading_lab*.py), and tests/test_checks.py pins the ranges' coverage and width."""


def binomial_range(
    n: int, p_low: float, p_high: float | None = None, *, alpha: float = FALSE_FAILURE
) -> tuple[int, int]:
    """``(low, high)``: a Binomial(n, p) count with ``p`` in ``[p_low, p_high]`` (``p_high`` defaults to ``p_low``)
    falls below ``low`` or above ``high`` with probability at most ``alpha`` (exact quantiles, alpha/2 per side:
    ``P(count < low) <= alpha/2`` at ``p_low`` and ``P(count > high) <= alpha/2`` at ``p_high``)."""
    from scipy.stats import binom

    p_high = p_low if p_high is None else p_high
    return int(binom.ppf(alpha / 2, n, p_low)), int(binom.isf(alpha / 2, n, p_high))


def chance(alpha: float) -> str:
    """``alpha`` for a message: "1 in 100 million" for 1e-8."""
    words = {1e3: "thousand", 1e6: "million", 1e9: "billion", 1e12: "trillion"}
    odds = 1 / alpha
    scale = max((s for s in words if odds >= s), default=None)
    if scale is None:
        return f"1 in {odds:.3g}"
    return f"1 in {odds / scale:.3g} {words[scale]}"


def expect_binomial(
    count,
    n,
    p_low: float,
    p_high: float | None,
    misconception: str,
    hint: str = "",
    *,
    what: str = "a correct function",
    alpha: float = FALSE_FAILURE,
) -> None:
    """``count`` successes of ``n`` independent trials, each with a probability ``p`` in ``[p_low, p_high]``
    (``p_high`` None: exactly ``p_low``): within ``binomial_range``, so correct work fails with probability at
    most ``alpha``. The message states the observed and expected shares and the range ``what`` lands in."""
    count, n = int(count), int(n)
    low, high = binomial_range(n, p_low, p_high, alpha=alpha)
    expected = f"{p_low:.4f}" if p_high in (None, p_low) else f"{p_low:.4f} to {p_high:.4f}"
    share = count / max(n, 1)
    expect(
        low <= count <= high,
        f"{misconception}: {count} of {n} ({share:.4f}), expected {expected} ({what} lands in {low}..{high}, "
        f"{low / max(n, 1):.4f}..{high / max(n, 1):.4f}, all but {chance(alpha)} times)",
        hint,
    )


def expect_tensor(value, what: str, *, shape=None, dtype=None) -> None:
    """``value`` is a tensor of the given shape and dtype (either may be None to skip)."""
    expect(isinstance(value, torch.Tensor), f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if shape is not None:
        expect(tuple(value.shape) == tuple(shape), f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None:
        expect(value.dtype == dtype, f"{what} has dtype {value.dtype}, expected {dtype}")


def expect_close(actual: torch.Tensor, expected: torch.Tensor, misconception: str, *, atol=1e-5, rtol=1e-4, hint=""):
    """``actual`` matches ``expected`` elementwise; the message reports the largest gap."""
    expect_tensor(actual, "your result", shape=expected.shape)
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        gap = (actual - expected).abs().max().item()
        raise Misconception(f"{misconception} (largest difference {gap:.3g})" + (f"\nHint: {hint}" if hint else ""))


def expect_input_untouched(function, *args, **kwargs):
    """Call ``function(*args, **kwargs)``; fail if it modified any tensor argument in place. Returns its result."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    before = [t.clone() for t in tensors]
    result = function(*args, **kwargs)
    for original, tensor in zip(before, tensors):
        expect(
            torch.equal(original, tensor),
            "input modified in place",
            "work on a copy (tensor.clone()) and return new tensors; callers reuse their batch",
        )
    return result


def gradients(function, *args, wrt, output_index=None, **kwargs):
    """Call ``function(*args, **kwargs)`` and backpropagate the sum of its output (``output[output_index]``
    for a tuple). Returns ``(result, [grad of t for t in wrt])``, None where no gradient arrived."""
    remote = getattr(function, "gradients", None)
    if remote is not None:
        return remote(args, kwargs, list(wrt), output_index)
    for tensor in wrt:
        tensor.grad = None
    with torch.enable_grad():
        result = function(*args, **kwargs)
        output = result if output_index is None else result[output_index]
        output.sum().backward()
    return result, [tensor.grad for tensor in wrt]


from course_utils.checks import notebook  # noqa: E402  (needs Misconception above)

notebook.install()
