"""The registries of encoders: architecture name -> model class, and preset name -> :class:`ModelSpec`.

A leaf module: it imports no model. Each family's file registers itself here when it is imported
(``@register_architecture`` on its model class, ``register_model(ModelSpec(...))`` for its presets), and
``audiorep.models`` imports every family file, so adding a family is one new file in ``audiorep/models/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .errors import ConfigError
from .features import FeatureConfig


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a named model, and to fetch its published weights."""

    name: str
    config: Callable[[], Any]  # architecture factory: () -> the family's config dataclass
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
    architecture: str = "mockingjay"  # key into the architecture registry (the class that builds it)
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


_ARCHITECTURES: dict[str, type] = {}
M = TypeVar("M", bound=type)


def register_architecture(cls: M) -> M:
    """Class decorator: make ``cls`` (a :class:`~audiorep.models.base.PretrainedModel` with a unique
    ``architecture`` string) the builder of config.json files that name that architecture."""
    name = cls.architecture
    if name in _ARCHITECTURES and _ARCHITECTURES[name] is not cls:
        raise ConfigError(f"architecture {name!r} is already registered by {_ARCHITECTURES[name].__qualname__}")
    _ARCHITECTURES[name] = cls
    return cls


def get_architecture(name: str) -> type:
    """The model class registered for ``name``; ConfigError listing the known ones."""
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; known: {', '.join(sorted(_ARCHITECTURES))}") from None


def list_architectures() -> list[str]:
    """Architecture names that saved model folders may name."""
    return sorted(_ARCHITECTURES)
