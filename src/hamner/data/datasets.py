"""The benchmark datasets: where their files live under a data root, and how to load a split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hamner.data.conll import Post, read_captions, read_conll
from hamner.data.labels import DEFAULT_TYPE_MAP
from hamner.errors import ConfigError

DATA_ROOT_ENV = "HAMNER_DATA_ROOT"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_ALIASES: dict[str, str] = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str
    captions: str = "blip2_captions.txt"

    def split_file(self, root: Path, split: str) -> Path:
        return root / self.folder / f"{SPLIT_ALIASES[split]}.txt"


DATASETS: dict[str, DatasetSpec] = {
    "twitter2015": DatasetSpec("twitter2015", "twitter2015"),
    "twitter2017": DatasetSpec("twitter2017", "twitter2017"),
}


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root: the explicit value (flag or config) if given, else ``$HAMNER_DATA_ROOT``."""
    value = explicit if explicit not in (None, "") else os.environ.get(DATA_ROOT_ENV)
    if not value:
        raise ConfigError(
            f"no data root: pass --data-root DIR, set data.root in the config, or export {DATA_ROOT_ENV}=DIR "
            "(the folder holding twitter2015/ and twitter2017/)"
        )
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a directory")
    return root


def get_spec(dataset: str) -> DatasetSpec:
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    return DATASETS[dataset]


def load_split(
    dataset: str, split: str, root: str | os.PathLike[str] | None = None, type_map: dict[str, str] | None = None
) -> list[Post]:
    """Read one split; ``split`` is train, valid (alias dev) or test."""
    if split not in SPLIT_ALIASES:
        raise ConfigError(f"unknown split {split!r}; expected one of {sorted(SPLIT_ALIASES)}")
    spec = get_spec(dataset)
    path = spec.split_file(resolve_data_root(root), split)
    return read_conll(path, DEFAULT_TYPE_MAP if type_map is None else type_map)


def load_captions(dataset: str, root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    spec = get_spec(dataset)
    return read_captions(resolve_data_root(root) / spec.folder / spec.captions)
