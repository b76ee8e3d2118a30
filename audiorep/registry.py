"""Named presets: a name -> architecture config + feature config + where its pretrained weights come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .errors import ConfigError
from .features import FeatureConfig
from .models import aalbert_base, mockingjay_base, mockingjay_large, tera_base
from .models.mockingjay import MockingjayConfig


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a named model, and to fetch its published weights."""

    name: str
    config: Callable[[], MockingjayConfig]  # architecture factory
    features: Callable[[], FeatureConfig] = FeatureConfig  # front-end factory
    # Where the published checkpoint is: a file in a Hugging Face hub repository (``repo_id`` + ``filename``,
    # fetched with huggingface_hub, so its cache, offline mode, mirrors and revisions apply) or a plain ``url``.
    # Neither = no pretrained weights exist.
    url: str | None = None
    sha256: str | None = None  # checked after download when known
    repo_id: str | None = None  # e.g. "s3prl/tera"
    filename: str | None = None  # path inside the repository
    revision: str | None = None  # branch, tag or commit; None = the repository's default branch
    source_format: str = "s3prl"  # how the downloaded file is converted ("s3prl" or "audiorep")
    description: str = ""
    architecture: str = "mockingjay"
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if (self.repo_id is None) != (self.filename is None):
            raise ConfigError(f"{self.name}: a hub-hosted checkpoint needs both repo_id and filename")
        if self.repo_id is not None and self.url is not None:
            raise ConfigError(f"{self.name}: give either repo_id + filename (the hub) or url, not both")

    @property
    def weights_location(self) -> str | None:
        """Where the published weights come from, for messages; None when there are none."""
        if self.repo_id is not None:
            return f"the Hugging Face hub ({self.repo_id}, {self.filename}" + (
                f" at {self.revision})" if self.revision else ")")
        return self.url


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, overwrite: bool = False) -> ModelSpec:
    """Add a preset (users may register their own, e.g. a mirror URL for an offline cluster)."""
    if spec.name in _REGISTRY and not overwrite:
        raise ConfigError(f"a model named {spec.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    _REGISTRY.pop(name, None)


def list_models() -> list[str]:
    """Names accepted by ``audiorep.load``."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


register_model(ModelSpec(
    "mockingjay-base", mockingjay_base,
    url="https://www.dropbox.com/s/7f9z6dzc7oix6qv/states-1000000.ckpt?dl=1",
    description="Mockingjay base, 3 layers, log-mel 80 in/out, time alteration, LibriSpeech 960 h, 1M steps",
))
register_model(ModelSpec(
    "mockingjay-large", lambda: mockingjay_large(output_dim=201),
    repo_id="s3prl/mockingjay",
    filename="mockingjay_logMelLinearLarge_T_AdamW_b32_500k_360hr_drop1/states-500000.ckpt",
    description="Mockingjay large, 12 layers, log-mel 80 in, 201-bin linear target, LibriSpeech 360 h, 500k steps",
))
register_model(ModelSpec(
    "aalbert-base", aalbert_base,
    repo_id="s3prl/audio_albert",
    filename="audio_albert_logMelBase_T_share_AdamW_b32_1m_960hr_drop1/states-1000000.ckpt",
    description="Audio ALBERT base, one shared layer x3, log-mel 80, time alteration, LibriSpeech 960 h, 1M steps",
))
register_model(ModelSpec(
    "tera-base", tera_base,
    repo_id="s3prl/tera",
    filename="tera_logMelBase_T_F_M_AdamW_b32_1m_960hr_drop1/states-1000000.ckpt",
    description="TERA base, 3 layers, log-mel 80, time+frequency+magnitude alteration, LibriSpeech 960 h, 1M steps",
))
