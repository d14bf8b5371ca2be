"""The benchmark datasets as presets of :mod:`hamner.data.corpus`, and how to load one of their splits."""

from __future__ import annotations

import os

from hamner.data.conll import Post, read_captions
from hamner.data.corpus import DATA_ROOT_ENV, PRESETS, Preset, corpus_spec, load_posts, resolve_data_root
from hamner.errors import ConfigError

__all__ = [
    "DATA_ROOT_ENV",
    "DATASETS",
    "SPLITS",
    "SPLIT_ALIASES",
    "get_spec",
    "load_captions",
    "load_split",
    "resolve_data_root",
]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_ALIASES: dict[str, str] = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}
DATASETS = PRESETS


def get_spec(dataset: str) -> Preset:
    """A benchmark preset by name."""
    if dataset not in PRESETS:
        raise ConfigError(f"unknown dataset {dataset!r}; known: {sorted(PRESETS)}")
    return PRESETS[dataset]


def load_split(
    dataset: str, split: str, root: str | os.PathLike[str] | None = None, type_map: dict[str, str] | None = None
) -> list[Post]:
    """Read one split of a preset (or a corpus folder); ``split`` is train, valid (alias dev) or test."""
    if split not in SPLIT_ALIASES:
        raise ConfigError(f"unknown split {split!r}; expected one of {sorted(SPLIT_ALIASES)}")
    spec = corpus_spec(dataset, root=root, type_map=type_map)
    return load_posts(spec, split)


def load_captions(dataset: str, root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    spec = corpus_spec(dataset, root=root)
    if spec.captions is None:
        raise ConfigError(f"dataset {dataset} has no caption file")
    return read_captions(spec.captions)
