"""Exceptions that mean "the user's input is wrong", as opposed to a bug.

The CLI turns any ``PoseLabError`` into one line on stderr and exit code 2; the
dashboard shows it with ``st.error``. Messages name the file and the problem.
"""
from __future__ import annotations

from pathlib import Path


class PoseLabError(Exception):
    """Base class: a problem with the user's input or files, with a one-line message."""


class DataError(PoseLabError):
    """A dataset, annotation or image that cannot be read as promised."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class RunError(PoseLabError):
    """A run folder that is unfinished, damaged, or does not match what was asked."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class TrainingError(PoseLabError):
    """Training cannot go on (e.g. the loss became NaN)."""
