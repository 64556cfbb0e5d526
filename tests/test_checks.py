"""course_utils.checks: the one false-failure policy and the binomial range every statistical check uses.

A grade must mean what it says: correct work may fail a count check with probability at most
``FALSE_FAILURE`` (exact, not approximate), and the range must still be narrow enough to name a
wrong share. Both are computed here exactly with scipy's binomial cdf and sf.
"""

from __future__ import annotations

import pytest
from scipy.stats import binom

from course_utils import checks
from course_utils.checks import FALSE_FAILURE, Misconception, binomial_range, chance, expect_binomial

# (n, p): the sizes and shares the labs' checks use, and the edges of the range of p.
CASES = [(6208, 0.15), (12342, 0.8), (1720, 0.0960), (2000, 0.05), (300, 0.5), (97, 0.15), (50, 0.999), (10, 0.5)]


@pytest.mark.parametrize("n, p", CASES)
def test_a_correct_count_falls_outside_the_range_with_probability_at_most_false_failure(n, p):
    low, high = binomial_range(n, p, alpha=FALSE_FAILURE)
    below, above = binom.cdf(low - 1, n, p), binom.sf(high, n, p)
    assert below <= FALSE_FAILURE / 2 and above <= FALSE_FAILURE / 2, (below, above)
    assert below + above <= FALSE_FAILURE


@pytest.mark.parametrize("n, p", CASES)
def test_the_range_is_the_narrowest_with_that_guarantee(n, p):
    """One count further in, on either side, and a tail would exceed FALSE_FAILURE / 2 (exact quantiles)."""
    low, high = binomial_range(n, p, alpha=FALSE_FAILURE)
    if low > 0:
        assert binom.cdf(low, n, p) > FALSE_FAILURE / 2
    if high < n:
        assert binom.sf(high - 1, n, p) > FALSE_FAILURE / 2


@pytest.mark.parametrize("p", [0.15, 0.5, 0.8])
def test_the_range_is_not_trivially_wide(p):
    n = 10_000
    low, high = binomial_range(n, p, alpha=FALSE_FAILURE)
    assert (p - 0.1) * n < low <= n * p <= high < (p + 0.1) * n
    # The normal tails beyond 5.73 standard deviations hold FALSE_FAILURE / 2 each: about 11.5 in all.
    assert high - low < 12 * (n * p * (1 - p)) ** 0.5


@pytest.mark.parametrize("n, p_low, p_high", [(1720, 0.096, 0.1), (5191, 0.1, 0.1022), (12342, 0.0933, 0.1)])
def test_a_range_of_shares_holds_for_every_share_in_it(n, p_low, p_high):
    low, high = binomial_range(n, p_low, p_high, alpha=FALSE_FAILURE)
    for step in range(11):
        p = p_low + (p_high - p_low) * step / 10
        assert binom.cdf(low - 1, n, p) + binom.sf(high, n, p) <= FALSE_FAILURE, p
    assert (low, high) == (binomial_range(n, p_low)[0], binomial_range(n, p_high)[1])


def test_a_smaller_alpha_widens_the_range():
    assert binomial_range(6208, 0.15, alpha=1e-9) != binomial_range(6208, 0.15, alpha=FALSE_FAILURE)
    wide, narrow = binomial_range(6208, 0.15, alpha=1e-9), binomial_range(6208, 0.15, alpha=1e-6)
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


def test_the_policy_keeps_the_busiest_test_cell_below_one_in_a_million():
    """The README promises every statistical test cell fails correct work with probability at most 1e-6;
    Lab 5's sampler cell, the busiest, judges 29 counts (8 visible, 21 hidden) at FALSE_FAILURE each."""
    assert 29 * FALSE_FAILURE <= 1e-6


def test_every_checks_module_uses_the_one_policy():
    from course_utils.checks import contrastive, ehr, masking, objectives

    for module in (masking, ehr, objectives, contrastive):
        assert getattr(module, "FALSE_FAILURE", FALSE_FAILURE) is checks.FALSE_FAILURE, module.__name__


def test_expect_binomial_accepts_the_whole_range_and_names_the_misconception_outside_it():
    low, high = binomial_range(2000, 0.3)
    for count in (low, 600, high):
        expect_binomial(count, 2000, 0.3, None, "rate is not p")
    for count in (low - 1, high + 1):
        with pytest.raises(Misconception) as failure:
            expect_binomial(count, 2000, 0.3, None, "rate is not p", "draw with probability p", what="a sampler")
        first, hint = str(failure.value).splitlines()
        assert first.startswith(f"rate is not p: {count} of 2000 ")
        assert f"a sampler lands in {low}..{high}" in first and chance(FALSE_FAILURE) in first
        assert hint == "Hint: draw with probability p"


def test_the_lab_helpers_are_expect_binomial():
    from course_utils.checks.ehr import expect_share
    from course_utils.checks.masking import expect_count

    low, high = binomial_range(1000, 0.1, 0.12)
    expect_share(high, 1000, 0.1, 0.12, "share")
    with pytest.raises(Misconception, match="^share: "):
        expect_share(high + 1, 1000, 0.1, 0.12, "share")
    low, high = binomial_range(1000, 0.1, alpha=1e-3)
    expect_count(low, 1000, 0.1, "count", alpha=1e-3)
    with pytest.raises(Misconception, match="^count: .*1 in 1 thousand"):
        expect_count(low - 1, 1000, 0.1, "count", alpha=1e-3)


def test_chance_reads_as_odds():
    assert chance(1e-8) == "1 in 100 million"
    assert chance(1e-7) == "1 in 10 million"
    assert chance(0.05) == "1 in 20"
