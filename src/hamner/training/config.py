"""Typed experiment configuration: YAML file + ``--set key=value`` overrides, checked field by field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hamner.data.labels import DEFAULT_TYPE_MAP
from hamner.models.config import TaggerConfig
from hamner.typed_config import apply_overrides, read_yaml_mapping
from hamner.typed_config import build_dataclass as _build


@dataclass
class DataConfig:
    dataset: str = "twitter2017"
    root: str | None = None  # None: --data-root flag or $HAMNER_DATA_ROOT
    type_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TYPE_MAP))
    max_train_posts: int | None = None  # for smoke tests only; None = the whole split
    max_eval_posts: int | None = None


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 16
    eval_batch_size: int = 64
    lr_encoder: float = 5e-5
    lr_head: float = 1e-3
    lr_crf: float = 1e-2
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 1
    output_dir: str = "runs"
    run_name: str | None = None  # default: <dataset>/<config name>/seed<seed>
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    progress: bool = True


@dataclass
class ExperimentConfig:
    name: str = "text-only"
    data: DataConfig = field(default_factory=DataConfig)
    model: TaggerConfig = field(default_factory=TaggerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_dir(self) -> Path:
        name = self.train.run_name or f"{self.data.dataset}/{self.name}/seed{self.train.seed}"
        return Path(self.train.output_dir) / name


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment config; its stem is the experiment name unless it sets ``name``."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml_mapping(path)
        data.setdefault("name", Path(path).stem)
    data = apply_overrides(data, overrides or [])
    return _build(ExperimentConfig, data, "")  # type: ignore[no-any-return]
