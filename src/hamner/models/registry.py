"""Which model class a checkpoint's config describes: the one home of that choice.

A model class registers itself under the kind of config it reads (:func:`register`); loading
(:meth:`hamner.models.text.TextTagger.from_pretrained`) asks :func:`model_class`. The classes import
this module, never each other's loaders, so the imports run one way: ``text`` <- ``hamlearning``, and
:mod:`hamner.models.tagger`, the module callers import, imports both (every class is registered once
it is imported).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hamner.errors import ConfigError
from hamner.models.config import TaggerConfig

KINDS = ("text", "multimodal")

_T = TypeVar("_T", bound=type[Any])
_CLASSES: dict[str, type[Any]] = {}


def kind_of(config: TaggerConfig) -> str:
    """``multimodal`` when any visual level is on (a HamLearning model), else ``text``."""
    return "multimodal" if config.multimodal else "text"


def register(kind: str) -> Callable[[_T], _T]:
    """Class decorator: the class reads checkpoints of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def add(cls: _T) -> _T:
        before = _CLASSES.get(kind)
        # the same class defined again (its module reloaded) replaces itself; another class is refused
        if before is not None and (before.__module__, before.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"{kind} checkpoints are already read by {before.__module__}.{before.__qualname__}")
        _CLASSES[kind] = cls
        return cls

    return add


def model_class(config: TaggerConfig) -> type[Any]:
    """The registered class that reads a checkpoint with this config."""
    kind = kind_of(config)
    try:
        return _CLASSES[kind]
    except KeyError:
        raise ConfigError(
            f"no model class for {kind} checkpoints is loaded: import hamner.models.tagger (it loads every model class)"
        ) from None
