"""The config reference, generated from the typed dataclass configs so that it cannot go stale.

Every field of :class:`~hamner.training.config.ExperimentConfig`'s sections (``data``, ``model``,
``train``) and of :class:`~hamner.vision.config.VisionConfig` (``vision``, read by ``hamner
preprocess``) becomes a table row: its key, type, default, the value the two main configs
(``configs/text-only.yaml``, ``configs/hamlearning.yaml``) give it, and the comment written next to
it in the source (the comment lines just above the field and the one at the end of its line). The
docs site inserts this Markdown into its training page (``scripts/mkdocs_hooks.py``), and a test
checks that every field is there.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from pathlib import Path
from typing import Any

from hamner.models.config import TaggerConfig
from hamner.training.config import DataConfig, ExperimentConfig, TrainConfig, load_config
from hamner.vision.config import VisionConfig

SECTIONS: list[tuple[str, type, str]] = [
    ("data", DataConfig, "Which dataset, where it is, and the feature cache of multimodal models."),
    ("model", TaggerConfig, "The model; saved with every checkpoint (`hamner_config.json`), so it reloads on its own."),
    ("train", TrainConfig, "The optimisation and the run: learning rates, schedule, seed, precision, threads."),
    (
        "vision",
        VisionConfig,
        "How `hamner preprocess` (and a HamLearning tagger on a new image) extracts the visual inputs: "
        "`hamner preprocess --config FILE` reads a file's `vision:` section or a vision-only file, "
        "`--set key=value` sets one field.",
    ),
]
MAIN_CONFIGS = ("text-only", "hamlearning")


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment written with it in ``cls``'s source (lines above, then end of line)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    tree = ast.parse(source)
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    out: dict[str, str] = {}
    for node in body.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip().strip("-").strip())
            i -= 1
        end = lines[node.end_lineno - 1 if node.end_lineno else node.lineno - 1]
        inline = ""
        if "#" in end:
            code, _, comment = end.partition("  #")
            inline = comment.strip() if code.strip() else ""
        if (
            above
            and above[0][:1].isupper()
            and len(above[0].split()) <= 3
            and not above[0].endswith((".", ":"))
            and len(above) + bool(inline) > 1
        ):
            above[0] = f"*{above[0]}:*"  # a group heading ("# Objects") above the group's first field
        text = " ".join(x for x in [*above, inline] if x)
        out[node.target.id] = text.replace("<", "&lt;").replace(">", "&gt;")
    return out


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = text.replace("|", "\\|")
    if len(text) > 40:  # long lists and maps (labels, type_map): their start says what they are
        text = text[:37] + "..."
    return f"`{text}`"


def main_config_values(configs_dir: Path | None) -> dict[str, dict[str, Any]]:
    """config name -> {"section.field": value} of the repository's main experiment configs."""
    out: dict[str, dict[str, Any]] = {}
    if configs_dir is None:
        return out
    for name in MAIN_CONFIGS:
        path = configs_dir / f"{name}.yaml"
        if path.exists():
            cfg = load_config(path)
            out[name] = {f"{s}.{k}": v for s, d in cfg.to_dict().items() if isinstance(d, dict) for k, v in d.items()}
    return out


def fields_of(section_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(section_cls)]


def config_reference_markdown(configs_dir: Path | None = None) -> str:
    """The reference as Markdown: one section and table per config section."""
    mains = main_config_values(configs_dir)
    default = ExperimentConfig()
    parts = [
        "Generated from the dataclasses in `src/hamner/training/config.py`, `src/hamner/models/config.py` and "
        "`src/hamner/vision/config.py` when the site is built. Set a key in a YAML file (`model:` then "
        "`  use_chars: true`) or on the command line (`--set model.use_chars=true`); unknown keys and "
        "wrong types are errors that name the key.",
        "",
        f"Top level: `name` (default `{default.name}`: the experiment's name, by default the YAML file's stem; "
        "it names the run directory) and `base` (another YAML file, relative to this one, read first and "
        "overridden key by key; its `name` is not inherited).",
    ]
    for section, cls, about in SECTIONS:
        comments = field_comments(cls)
        parts += ["", f"### `{section}`", "", about, ""]
        header = "| key | type | default |"
        rule = "|---|---|---|"
        shown = [m for m in MAIN_CONFIGS if m in mains and section != "vision"]
        for m in shown:
            header += f" `{m}.yaml` |"
            rule += "---|"
        parts += [header + " what it does |", rule + "---|"]
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            value = default_of(f)
            row = f"| `{key}` | `{f.type}` | {show(value)} |"
            for m in shown:
                v = mains[m].get(key)
                row += " same |" if v == value else f" {show(v)} |"
            note = comments.get(f.name, "").replace("|", "\\|")
            row += f" {note} |"
            parts.append(row)
    return "\n".join(parts) + "\n"
