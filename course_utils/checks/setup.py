"""Checks for Lab 0 (setup): the -100 label convention."""

import torch

from course_utils.checks import expect, passed


def check_selected_fraction(selected_fraction) -> None:
    """``selected_fraction(labels)`` counts positions whose label is not -100."""
    labels = torch.tensor([[5, -100, -100, -100], [-100, 9, 0, -100]])
    value = selected_fraction(labels)
    expect(isinstance(value, float), f"return a Python float (use .item()), got {type(value).__name__}")
    expect(abs(value - 0.625) > 1e-9, "you counted the ignored (-100) positions instead of the selected ones")
    expect(abs(value - 0.25) > 1e-9, "token id 0 is a real label: only -100 means 'no target'")
    expect(abs(value - 0.375) < 1e-9, f"expected 3 of 8 positions selected (0.375), got {value}")
    passed("selected fraction of a [2, 4] label tensor")
    expect(selected_fraction(torch.full((3, 3), -100)) == 0.0, "an all -100 tensor has no selected positions: 0.0")
    passed("all-ignored labels give 0.0")


# The reference code each exercise must not call: the grader ends a call into any of these with 0 points
# (course_utils.grading.worker). References of other exercises and earlier labs stay allowed.
REFERENCES: dict[str, tuple[str, ...]] = {}
