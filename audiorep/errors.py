"""The library's error types: every bad input ends in one of these, with a message naming what is wrong."""

from __future__ import annotations


class AudiorepError(Exception):
    """Base class of audiorep's own errors."""


class AudioError(AudiorepError, ValueError):
    """Audio that cannot be used: unreadable, empty, corrupt, non-finite, wrong shape or wrong rate."""


class ConfigError(AudiorepError, ValueError):
    """A configuration (file, dict or override) that does not describe a valid model or run."""


class CheckpointError(AudiorepError, ValueError):
    """A checkpoint or saved model that cannot be loaded: truncated, foreign, unsafe or of another architecture."""


class WeightsUnavailableError(AudiorepError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable (offline machine, unknown URL)."""
