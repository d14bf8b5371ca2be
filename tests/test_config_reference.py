"""The generated config reference lists every field of every typed config, with its comment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hamner.config_reference import SECTIONS, config_reference_markdown, field_comments
from hamner.training.config import TrainConfig
from hamner.vision.config import VisionConfig

REPO = Path(__file__).resolve().parents[1]


def rows(markdown: str) -> dict[str, list[str]]:
    out = {}
    for line in markdown.splitlines():
        if line.startswith("| `") and "." in line.split("|")[1]:
            cells = [c.strip() for c in line.split(" | ")]
            out[cells[0].strip("| `")] = cells
    return out


def test_every_field_of_every_config_section_has_a_row() -> None:
    table = rows(config_reference_markdown(REPO / "configs"))
    expected = {f"{section}.{f.name}" for section, cls, _ in SECTIONS for f in dataclasses.fields(cls)}
    assert set(table) == expected
    assert {s for s, _, _ in SECTIONS} == {"data", "model", "train", "vision"}


def test_a_new_field_appears_with_its_comment_without_touching_the_docs() -> None:
    @dataclasses.dataclass
    class Extra:
        # the comment above
        alpha: float = 0.5  # and the one at the end
        beta: list[int] = dataclasses.field(default_factory=lambda: [1, 2])

    comments = field_comments(Extra)
    assert comments == {"alpha": "the comment above and the one at the end", "beta": ""}


def test_the_rows_say_default_main_config_value_and_comment() -> None:
    table = rows(config_reference_markdown(REPO / "configs"))
    # train.visual_dropout: default 0.0, text-only.yaml leaves it, hamlearning.yaml sets 0.3
    assert table["train.visual_dropout"][2:5] == ["`0.0`", "same", "`0.3`"]
    assert "modality dropout" in table["train.visual_dropout"][5]
    assert "AdamW" in table["train.lr_encoder"][-1]
    assert "*Objects:*" in table["vision.max_objects"][-1]  # a group heading comment
    assert field_comments(TrainConfig)["visual_dropout"].startswith("modality dropout")
    assert all(field_comments(VisionConfig).values()), "every vision field is commented"
