"""Encoder families (one file each: config, presets, modules, registration) and the Featurizer.

Importing this package imports every family file in it, so each registers its architecture and presets
with :mod:`audiorep.registry`: adding a family is adding one file here.
"""

import importlib as _importlib
import pkgutil as _pkgutil

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

for _info in _pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "EncoderOutput", "LogMelUpstream", "MockingjayConfig", "MockingjayModel", "PretrainedModel",
    "SpecPredictionHead", "aalbert_base", "mockingjay_base", "mockingjay_config", "mockingjay_large", "tera_base",
]
