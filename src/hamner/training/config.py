"""Typed experiment configuration: YAML file + ``--set key=value`` overrides, checked field by field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hamner.data.corpus import PRESETS, CorpusSpec, corpus_spec
from hamner.errors import ConfigError
from hamner.models.config import TaggerConfig
from hamner.typed_config import apply_overrides, read_yaml_mapping
from hamner.typed_config import build_dataclass as _build


@dataclass
class DataConfig:
    # A preset (twitter2015 | twitter2017: a folder of that name under the data root, its format,
    # types PER LOC ORG MISC with OTHER read as MISC), or with data.path / data.train the corpus's
    # name (default: its folder's name; a preset's name given with data.path is replaced by it). It
    # names the run directory and the checkpoint's trained_on.
    dataset: str = ""
    root: str | None = None  # None: --data-root flag or $HAMNER_DATA_ROOT
    # A corpus of your own: a folder with train, dev (or valid) and test files (.txt, .conll, .tsv,
    # .jsonl, .json ...); a relative path not found here is read from the data root.
    path: str | None = None
    train: str | None = None  # files named one by one (each replaces the folder's file of that split)
    dev: str | None = None  # see train
    test: str | None = None  # see train
    format: str = "auto"  # auto (from the content) | imgid | conll | jsonl | labelstudio
    tag_scheme: str = "auto"  # auto | bio | iob1 | bioes (converted to BIO); auto: BIOES if S-/E- tags, IOB1 if most entities start with I-
    # The entity types, in the order of the model's labels; a type outside them is an error.
    # None: the types of the training split (sorted); a preset declares PER LOC ORG MISC.
    labels: list[str] | None = None
    # The files' entity types -> the model's: renames, merges (two to one), drops (to "O"). Merged
    # over a preset's own map (OTHER -> MISC).
    type_map: dict[str, str] = field(default_factory=dict)
    images: str | None = None  # a folder where a post's IMGID is looked up (<images>/<IMGID>.jpg)
    captions: str | None = None  # a caption file (<IMGID>.jpg :caption) for posts without a caption of their own
    # A feature cache made by 'hamner preprocess' (the visual inputs and image words of every IMGID);
    # needed by multimodal models, ignored by the text path.
    features: str | None = None
    max_train_posts: int | None = None  # for smoke tests only; None = the whole split
    max_eval_posts: int | None = None  # for smoke tests only: the first N dev and test posts
    # Joint training, a protocol of its own (never mixed with the standard one): the train splits of
    # these datasets join data.dataset's. Every dataset of the run selects its own checkpoint on its
    # own dev split and scores its own test split once: data.dataset's in the run directory as usual,
    # each other one's in <run directory>/joint/<dataset>/. A training post identical or
    # near-identical to a dev or test post of another dataset of the run (word-set Jaccard >=
    # joint_overlap_threshold, hamner.data.overlap) is dropped, logged and listed in run.json.
    # An item is a preset name, a corpus folder (named after the folder: its directory is
    # <run>/joint/<folder name>) or NAME=FOLDER; data.type_map and data.labels apply to every corpus
    # of the run. Each corpus is scored on its own types, those of its own training split: a
    # prediction of a type it does not annotate (MISC on BTC) is left out of its dev and test scores.
    joint: list[str] = field(default_factory=list)
    # where each data.joint corpus of your own is (name -> folder); filled in from data.joint's
    # folders and NAME=FOLDER items
    joint_paths: dict[str, str] = field(default_factory=dict)
    # the joint datasets' feature caches (multimodal models); default: data.features with its
    # {dataset} filled in with each one's name
    joint_features: dict[str, str] = field(default_factory=dict)
    joint_overlap_threshold: float = 0.8

    def __post_init__(self) -> None:
        own = self.path or self.train or self.dev or self.test
        if own and self.dataset in PRESETS:  # a preset's name is its own corpus's (text-only.yaml names twitter2017)
            self.dataset = ""
        if not self.dataset:  # a corpus of your own is named after its folder
            self.dataset = (
                Path(self.path).name if self.path else Path(own).resolve().parent.name if own else "twitter2017"
            )
        elif not own and self.dataset not in PRESETS:
            raise ConfigError(
                f"unknown dataset {self.dataset!r}; known presets: {sorted(PRESETS)}; for a corpus of your own set "
                "data.path (a folder with train/dev/test files) or data.train, data.dev and data.test"
            )
        names = []
        for item in self.joint:  # preset | NAME (of joint_paths) | NAME=FOLDER | FOLDER
            name, sep, folder = item.partition("=")
            if sep:
                if not name or not folder or "/" in name:
                    raise ConfigError(f"data.joint: {item!r} is not NAME=FOLDER")
            elif item in PRESETS or item in self.joint_paths:
                name, folder = item, ""
            else:
                name, folder = Path(item).name, item
            if not name or name in (".", ".."):
                raise ConfigError(f"data.joint: {item!r} names no corpus folder")
            if folder:
                if self.joint_paths.get(name, folder) != folder:
                    raise ConfigError(f"data.joint: two folders named {name}: {self.joint_paths[name]} and {folder}")
                self.joint_paths[name] = folder
            names.append(name)
        self.joint = names
        if len(set(self.joint)) != len(self.joint) or self.dataset in self.joint:
            raise ConfigError(
                f"data.joint must name other datasets than data.dataset ({self.dataset}), each once; got {self.joint}"
            )
        if not 0.0 < self.joint_overlap_threshold <= 1.0:
            raise ConfigError(f"data.joint_overlap_threshold must be in (0, 1], got {self.joint_overlap_threshold}")
        stray = sorted(set(self.joint_paths) - set(self.joint))
        if stray:
            raise ConfigError(f"data.joint_paths names corpora that are not in data.joint {self.joint}: {stray}")
        unknown = sorted(set(self.joint_features) - set(self.joint))
        if unknown:
            raise ConfigError(f"data.joint_features names datasets that are not in data.joint {self.joint}: {unknown}")

    def corpus(self, dataset: str | None = None) -> CorpusSpec:
        """The corpus of ``dataset`` (default data.dataset; one of data.joint: a preset name or a
        corpus folder), with this section's format, tag scheme, label set, type map, images, captions."""
        common: dict[str, Any] = {
            "root": self.root, "format": self.format, "tag_scheme": self.tag_scheme, "labels": self.labels,
            "type_map": self.type_map, "images": self.images, "captions": self.captions,
        }  # fmt: skip
        if dataset is None or dataset == self.dataset:
            files = {"train": self.train, "dev": self.dev, "test": self.test}
            return corpus_spec(self.dataset, self.path, files, **common)
        if dataset in self.joint_paths:
            return replace(corpus_spec(None, self.joint_paths[dataset], **common), name=dataset)
        if dataset in PRESETS:
            return corpus_spec(dataset, **common)
        return corpus_spec(None, dataset, **common)

    def features_of(self, dataset: str) -> str | None:
        """The feature cache of ``dataset`` (data.dataset or one of data.joint)."""
        return self.features if dataset == self.dataset else self.joint_features.get(dataset)


@dataclass
class TrainConfig:
    epochs: int = 8  # the dev F1 of every epoch is measured; the best epoch's checkpoint is kept
    batch_size: int = 16  # training posts per step (batches are bucketed by length)
    eval_batch_size: int = 0  # posts per evaluation batch; 0 = auto: 64 on a CPU, 256 on a GPU
    lr_encoder: float = 5e-5  # AdamW learning rate of the pretrained text encoder
    # layer-wise learning-rate decay of the encoder: its top layer learns at lr_encoder, each layer
    # below at this factor times the one above, the embeddings at the factor times the lowest
    # layer's (a layer is a parameter name's "layer.N." or "layers.N."); 1.0 = one rate for all
    lr_layer_decay: float = 1.0
    lr_head: float = 1e-3  # ... of the new layers (channels, fusion, emissions)
    lr_crf: float = 1e-2  # ... of the CRF transitions
    lr_relevance: float | None = None  # HamLearning's text-image matching head (r); None = lr_head
    # modality dropout: each training post loses its whole visual input (image and image words) with
    # this probability, drawn afresh every epoch; 0 = off. Evaluation always sees every input.
    visual_dropout: float = 0.0
    # image-word masking: in each training post that keeps its visual input, every sub-token of its
    # image words (the BLIP-2 caption, detector and ImageNet class names) is replaced by the
    # tokenizer's mask token with this probability, drawn afresh every epoch; 0 = off. The post's
    # own words are never touched, and evaluation always sees the image words as they are.
    image_word_dropout: float = 0.0
    # knowledge distillation: trained checkpoints (one, or several read as an ensemble: the product
    # of their CRFs, as 'hamner tag --model A --model B') whose per-word CRF tag marginals on every
    # training post become soft targets; the loss adds distill_weight x the mean over words of
    # KL(teacher || student) to the gold tags' loss. [] = off. The teachers read the training posts
    # as evaluation does (every visual input, no dropout); they must share the model's labels and,
    # for a multimodal teacher, this run's feature cache.
    distill_from: list[str] = field(default_factory=list)
    distill_weight: float = 1.0
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_ratio: float = 0.1  # share of the steps with a linear warm-up; then linear decay to 0
    max_grad_norm: float = 1.0  # gradient clipping
    seed: int = 1  # every random draw of the run (initialisation, shuffling, dropout, modality dropout)
    output_dir: str = "runs"  # runs are written to <output_dir>/<run_name>
    run_name: str | None = None  # default: <dataset>/<config name>/seed<seed>
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto | fp32 | bf16 | fp16: weights and optimiser stay fp32 ("master" precision), the forward
    # pass runs under autocast in bf16/fp16 (fp16 with a gradient scaler; CUDA only). auto = bf16 on
    # a CUDA device that supports it, fp32 on a CPU (where bf16 was measured slower).
    precision: str = "auto"
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    # batch-building worker processes (0 = in the training process: batches are pre-tokenised and
    # cheap to pad, so this only helps when a GPU waits for them); batches go to the GPU through
    # pinned memory with non-blocking copies either way
    num_workers: int = 0
    progress: bool = True  # progress bars (training and evaluation)

    def __post_init__(self) -> None:
        if not 0.0 <= self.visual_dropout < 1.0:
            raise ConfigError(f"train.visual_dropout must be in [0, 1), got {self.visual_dropout}")
        if not 0.0 <= self.image_word_dropout < 1.0:
            raise ConfigError(f"train.image_word_dropout must be in [0, 1), got {self.image_word_dropout}")
        from hamner.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.eval_batch_size < 0 or self.num_workers < 0:
            raise ConfigError("train.eval_batch_size and train.num_workers must be >= 0")
        if not 0.0 < self.lr_layer_decay <= 1.0:
            raise ConfigError(f"train.lr_layer_decay must be in (0, 1], got {self.lr_layer_decay}")
        if self.distill_weight < 0:
            raise ConfigError(f"train.distill_weight must be >= 0, got {self.distill_weight}")

    def eval_batch(self, device: Any) -> int:
        """The evaluation batch size on ``device`` (``eval_batch_size``, or its auto value)."""
        if self.eval_batch_size:
            return self.eval_batch_size
        return 256 if getattr(device, "type", str(device)).startswith("cuda") else 64


@dataclass
class ExperimentConfig:
    name: str = "text-only"
    data: DataConfig = field(default_factory=DataConfig)
    model: TaggerConfig = field(default_factory=TaggerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.model.dataset_marker:  # the dataset's own name marks its posts (model.marker)
            if self.model.marker and self.model.marker != self.data.dataset:
                raise ConfigError(
                    f"model.dataset_marker marks posts with their dataset's name ({self.data.dataset}); "
                    f"model.marker {self.model.marker!r} says otherwise: leave it unset"
                )
            self.model.marker = self.data.dataset

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_dir(self) -> Path:
        name = self.train.run_name or f"{self.data.dataset}/{self.name}/seed{self.train.seed}"
        return Path(self.train.output_dir) / name


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config; ``base: other.yaml`` (relative to the file) is read first and overridden key by key."""
    p = Path(path).resolve()
    if p in _seen:
        raise ConfigError(f"config {path}: 'base' files form a cycle: {' -> '.join(str(x) for x in (*_seen, p))}")
    data = read_yaml_mapping(p)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base!r}")
    inherited = read_config_file(p.parent / base, (*_seen, p))
    inherited.pop("name", None)  # a base's name is not inherited: the experiment is this file
    return _merge(inherited, data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment config; its stem is the experiment name unless it sets ``name``.

    ``data.features`` may contain ``{dataset}``, replaced by ``data.dataset`` (and, for each
    dataset of ``data.joint`` without its own ``data.joint_features`` entry, by its name).
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
        data.setdefault("name", Path(path).stem)
    data = apply_overrides(data, overrides or [])
    cfg: ExperimentConfig = _build(ExperimentConfig, data, "")
    if cfg.data.features:
        for other in cfg.data.joint:
            if "{dataset}" in cfg.data.features:
                cfg.data.joint_features.setdefault(other, cfg.data.features.replace("{dataset}", other))
        cfg.data.features = cfg.data.features.replace("{dataset}", cfg.data.dataset)
    return cfg
