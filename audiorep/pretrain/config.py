"""The whole description of a pretraining run, as typed dataclasses read from YAML (+ key=value overrides)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import ConfigError
from ..features import FeatureConfig
from ..config import build, load, to_dict
from ..registry import get_architecture
from ..train.optim import OptimConfig
from ..train.trainer import TrainConfig
from ..validate import MAX_WORKERS, check_name, check_ranges, ints, reals
from .masking import MaskingConfig, check_maskable


@dataclass
class DataConfig:
    """Where utterances come from and how they are batched."""

    train: str = "synth"  # bundled corpus name, corpus folder, manifest .jsonl, or LibriSpeech root
    split: str = "train"  # manifest split inside a corpus folder
    librispeech_subsets: list[str] = field(default_factory=lambda: ["train-clean-100", "train-clean-360",
                                                                     "train-other-500"])  # when train is a LibriSpeech root
    max_seconds: float | None = 15.0  # random crop of longer utterances (s3prl's sequence_length 1500 frames)
    min_seconds: float = 0.0  # drop shorter utterances (0 keeps all; too-short ones are just not altered)
    batch_size: int = 32  # utterances per micro-batch per process
    max_batch_seconds: float | None = None  # cap on padded audio per micro-batch (B x longest), bounds memory
    num_workers: int = 2  # DataLoader worker processes per rank
    on_error: str = "raise"  # "raise" stops at the first unreadable file; "skip" logs and continues
    # held-out split for the end-of-run reconstruction check (audiorep.pretrain.evaluate): the training loss
    # alone cannot tell context use from the predict-the-average plateau. Corpus data only; None skips it.
    eval_split: str | None = "dev"
    eval_max_utts: int | None = 100  # first N utterances of that split (bounds the check's time)

    def __post_init__(self) -> None:
        check_ranges(self, "data", {
            # 0 would crop every utterance to nothing; "no crop" is null
            "max_seconds": reals(0.0, 10**6, "seconds (null = no crop)", optional=True, low_open=True),
            "min_seconds": reals(0.0, 10**6, "seconds"), "batch_size": ints(1, 10**6, "utterances"),
            "max_batch_seconds": reals(0.0, 10**7, "seconds of padded audio", optional=True, low_open=True),
            "num_workers": ints(0, MAX_WORKERS, "worker processes"),
            "eval_max_utts": ints(1, 10**9, "utterances (null = the whole split)", optional=True),
        })
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"data.on_error must be 'raise' or 'skip', got {self.on_error!r}")


@dataclass
class PretrainConfig:
    """One pretraining run: architecture, front ends, alteration, optimiser, loop and data."""

    name: str = "pretrain"  # run name; the default output folder is exp/<name>
    out_dir: str | None = None  # run folder (checkpoints, logs, final model); None = exp/<name>
    # the encoder: ``architecture`` (a registered family that declares PretrainableEncoder; default mockingjay)
    # and the fields of that family's config dataclass, checked by it (Mockingjay: head size via output_dim)
    model: dict[str, Any] = field(default_factory=dict)
    features: FeatureConfig = field(default_factory=FeatureConfig)  # input front end (80 log-mel)
    target_features: FeatureConfig | None = None  # other target front end (Mockingjay-large: kind=linear)
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # input alteration
    loss: str = "l1"  # "l1" (published) or "mse"
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        check_name("", "name", self.name)
        if self.loss not in ("l1", "mse"):
            raise ConfigError(f"loss must be 'l1' or 'mse', got {self.loss!r}")
        self.encoder_class  # an unknown or unpretrainable family is refused here, where the config is read
        self.encoder_config  # and the family's own checks run on its fields
        if self.data.max_seconds is not None and self.data.max_seconds > 0:
            crop = int(self.features.num_frames(int(self.data.max_seconds * self.features.sample_rate)))
            check_maskable(self.masking, crop, f"the longest crop, data.max_seconds={self.data.max_seconds:g} s")

    @property
    def architecture(self) -> str:
        arch = self.model.get("architecture", "mockingjay")
        if not isinstance(arch, str):
            raise ConfigError(f"model.architecture: expected a registered family name, got {arch!r}")
        return arch

    @property
    def encoder_class(self) -> type:
        """The registered model class that ``model.architecture`` names."""
        from .. import models  # noqa: F401  (importing the package registers every family file in it)
        from ..models.base import PretrainableEncoder

        cls = get_architecture(self.architecture)
        if not issubclass(cls, PretrainableEncoder):
            raise ConfigError(f"model.architecture={self.architecture}: {cls.__name__} cannot be pretrained "
                              "(it does not declare PretrainableEncoder)")
        return cls

    @property
    def encoder_config(self) -> Any:
        """``model``'s fields as the family's config dataclass (type-checked, named ``model.<field>``)."""
        fields = {k: v for k, v in self.model.items() if k != "architecture"}
        return build(self.encoder_class.config_class, fields, "model")

    @property
    def run_dir(self) -> str:
        return self.out_dir or os.path.join("exp", self.name)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """YAML file + ``key=value`` overrides -> a checked :class:`PretrainConfig` (the shared loader)."""
    return load(PretrainConfig, path, overrides)
