"""Shared test setup: every notebook and kernel runs in the tiny `ci` profile unless told otherwise."""

import os

os.environ.setdefault("COURSE_PROFILE", "ci")
os.environ.setdefault("MPLBACKEND", "Agg")
