"""Masked acoustic pretraining (Mockingjay, Audio ALBERT, TERA): alteration, loss, model wrapper, run builder."""

from .config import DataConfig, PretrainConfig, load_config
from .loss import masked_error_sum, masked_reconstruction_loss
from .masking import MaskingConfig, MaskPlan, alter, apply_plan, make_plan, tera_masking, utterance_keys
from .model import MaskedAcousticModel, PretrainTask

__all__ = [
    "DataConfig", "MaskPlan", "MaskedAcousticModel", "MaskingConfig", "PretrainConfig", "PretrainTask", "alter",
    "apply_plan", "load_config", "make_plan", "masked_error_sum", "masked_reconstruction_loss",
    "tera_masking", "utterance_keys",
]
