"""Typed experiment configuration: YAML file + ``--set key=value`` overrides, checked field by field."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hamner.data.labels import DEFAULT_TYPE_MAP
from hamner.errors import ConfigError
from hamner.models.config import TaggerConfig


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


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field type, converting ints to floats where needed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        sub = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, sub)  # type: ignore[arg-type]
        else:
            kwargs[key] = _coerce(value, tp, sub)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings (values parsed as YAML) to a nested dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment config; its stem is the experiment name unless it sets ``name``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        data = loaded or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        data.setdefault("name", p.stem)
    data = apply_overrides(data, overrides or [])
    return _build(ExperimentConfig, data, "")  # type: ignore[no-any-return]
