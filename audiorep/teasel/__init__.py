"""TEASEL runs: the offline default LM, LAA pretraining and sentiment fine-tuning (model in audiorep.models.teasel).

``run_pretrain(config)`` / ``run_finetune(config)`` take a :class:`TeaselRunConfig` (``load_run_config(yaml,
overrides)``); ``python -m audiorep.teasel {lm,pretrain,finetune} --config X.yaml --set key=value`` runs them.
"""

from .config import SmallLMConfig, TeaselRunConfig, load_run_config
from .lm import ensure_lm, load_lm, train_small_lm, train_tokenizer
from .train import build_front_end, build_model, run_finetune, run_pretrain

__all__ = [
    "SmallLMConfig", "TeaselRunConfig", "build_front_end", "build_model", "ensure_lm", "load_lm", "load_run_config",
    "run_finetune", "run_pretrain", "train_small_lm", "train_tokenizer",
]
