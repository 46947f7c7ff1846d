"""Errors recbench raises on bad input. Each says what was wrong, where, and how to fix it."""

from __future__ import annotations


class RecbenchError(Exception):
    """Base class: the CLI prints these without a traceback and exits with status 2."""


class ConfigError(RecbenchError):
    """A configuration value or key is wrong (unknown key, bad type, bad value)."""


class UnknownNameError(RecbenchError, KeyError):
    """A task, method, dataset or metric name is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class RegistrationError(RecbenchError):
    """A plugin registered something invalid: a duplicate name or a wrong type."""


class DatasetError(RecbenchError):
    """A dataset could not be fetched, or a file of it failed validation."""


class PredictionError(RecbenchError):
    """A method returned predictions that break the task's candidate contract."""


class UnsupportedTaskError(RecbenchError):
    """A method was asked to run a task whose candidate contract it does not support."""


class TargetLeakError(RecbenchError):
    """Test targets reached data given to a method: the evaluation would be invalid."""
