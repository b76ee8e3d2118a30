"""audiorep: self-supervised speech representations (Mockingjay, Audio ALBERT, TERA) in PyTorch."""

__version__ = "0.1.0"

from .audio import read_audio
from .errors import AudioError, AudiorepError, CheckpointError, ConfigError, WeightsUnavailableError
from .features import FeatureConfig
from .loading import load
from .registry import list_models

__all__ = [
    "AudioError", "AudiorepError", "CheckpointError", "ConfigError", "FeatureConfig", "WeightsUnavailableError",
    "__version__", "list_models", "load", "read_audio",
]
