"""Model families; each file holds one family's config, presets and modules."""

from .base import EncoderOutput, PretrainedModel
from .logmel import LogMelUpstream
from .mockingjay import (
    MockingjayConfig,
    MockingjayModel,
    SpecPredictionHead,
    aalbert_base,
    mockingjay_base,
    mockingjay_config,
    mockingjay_large,
    tera_base,
)

# architecture name in config.json -> model class; new families add themselves here
ARCHITECTURES = {MockingjayModel.architecture: MockingjayModel}

__all__ = [
    "ARCHITECTURES", "EncoderOutput", "LogMelUpstream", "MockingjayConfig", "MockingjayModel", "PretrainedModel",
    "SpecPredictionHead", "aalbert_base", "mockingjay_base", "mockingjay_config", "mockingjay_large", "tera_base",
]
