"""audiorep: self-supervised speech representations (Mockingjay, Audio ALBERT, TERA) in PyTorch."""

from .audio import read_audio
from .version import __version__
from .errors import AudioError, AudiorepError, CheckpointError, ConfigError, WeightsUnavailableError
from .features import FeatureConfig
from .weights.loading import load
from .registry import list_models

__all__ = [
    "AudioError", "AudiorepError", "CheckpointError", "ConfigError", "FeatureConfig", "WeightsUnavailableError",
    "__version__", "list_models", "load", "read_audio",
]
