from __future__ import annotations

import random

import pytest

from hamner.data.labels import Span, spans_from_bio, spans_from_bio_strict
from hamner.evaluation.metrics import entity_scores


def test_hand_computed_micro_and_per_type() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "B-MISC", "O"]]
    r = entity_scores(gold, pred)
    # gold: PER(0,2) LOC(3,4) ORG(0,1) MISC(2,4) = 4; pred: PER ORG(3,4) ORG(0,1) MISC(2,3) = 4; tp: PER, ORG(0,1)
    assert (r.micro.tp, r.micro.n_pred, r.micro.n_gold) == (2, 4, 4)
    assert r.micro.precision == pytest.approx(0.5) and r.micro.recall == pytest.approx(0.5)
    assert r.micro.f1 == pytest.approx(0.5)
    assert r.per_type["PER"].f1 == pytest.approx(1.0)
    assert r.per_type["LOC"].recall == 0.0 and r.per_type["LOC"].n_pred == 0
    assert r.per_type["ORG"].precision == pytest.approx(0.5) and r.per_type["ORG"].recall == pytest.approx(1.0)
    assert r.per_type["ORG"].f1 == pytest.approx(2 / 3)
    assert r.per_type["MISC"].f1 == 0.0


def test_per_type_rows_follow_a_label_set_and_the_table_fits_long_names() -> None:
    gold = [["B-WORK_OF_ART", "I-WORK_OF_ART", "O", "B-SHOE"]]
    pred = [["B-WORK_OF_ART", "I-WORK_OF_ART", "O", "O"]]
    r = entity_scores(gold, pred, types=["PER", "WORK_OF_ART"])
    # the label set's types in its order (PER: zeros), then a gold type outside it (SHOE: missed)
    assert list(r.per_type) == ["PER", "WORK_OF_ART", "SHOE"]
    assert r.per_type["PER"].n_gold == r.per_type["PER"].n_pred == 0 and r.per_type["SHOE"].recall == 0.0
    assert (r.micro.tp, r.micro.n_gold) == (1, 2)
    assert list(entity_scores(gold, pred).per_type) == ["SHOE", "WORK_OF_ART"]  # without a label set: seen, sorted
    lines = r.table(ordered=True).splitlines()
    assert [line.split()[0] for line in lines] == ["type", "PER", "WORK_OF_ART", "SHOE", "micro"]
    assert len({len(line) for line in lines}) == 1  # the columns line up under a name longer than 7
    assert lines[2].startswith("WORK_OF_ART ")


def test_orphan_i_tags_count_in_conlleval_mode_not_in_strict() -> None:
    gold = [["O", "I-LOC", "I-LOC", "O", "B-PER", "I-ORG"]]
    assert spans_from_bio(gold[0]) == [Span("LOC", 1, 3), Span("PER", 4, 5), Span("ORG", 5, 6)]
    assert spans_from_bio_strict(gold[0]) == [Span("PER", 4, 5)]
    pred = [["O", "B-LOC", "I-LOC", "O", "B-PER", "O"]]
    lenient = entity_scores(gold, pred)
    # conlleval: gold LOC(1,3) PER ORG = 3, pred LOC(1,3) PER = 2, both right
    assert (lenient.micro.tp, lenient.micro.n_pred, lenient.micro.n_gold) == (2, 2, 3)
    strict = entity_scores(gold, pred, mode="strict")
    assert (strict.micro.tp, strict.micro.n_pred, strict.micro.n_gold) == (1, 2, 1)


def test_entity_past_the_encoder_limit_still_counts_in_recall() -> None:
    # the tagger predicts O for words past its limit; the gold is never cut to match
    gold = [["B-PER", "O"] + ["O"] * 200 + ["B-LOC", "I-LOC"]]
    pred = [["B-PER", "O"] + ["O"] * 202]
    r = entity_scores(gold, pred)
    assert (r.micro.tp, r.micro.n_pred, r.micro.n_gold) == (1, 1, 2)
    assert r.micro.recall == pytest.approx(0.5) and r.per_type["LOC"].recall == 0.0


def test_length_mismatch_is_an_error_not_a_truncation() -> None:
    with pytest.raises(ValueError, match="sequence 0: gold has 3 tags, prediction 2"):
        entity_scores([["B-PER", "O", "B-LOC"]], [["B-PER", "O"]])
    with pytest.raises(ValueError, match="2 gold sequences but 1"):
        entity_scores([["O"], ["O"]], [["O"]])


def test_bad_tag_is_named() -> None:
    with pytest.raises(ValueError, match="tag 1 is 'PER'"):
        spans_from_bio(["O", "PER"])


def test_empty_prediction_gives_zero_not_nan() -> None:
    r = entity_scores([["B-PER"]], [["O"]])
    assert (r.micro.precision, r.micro.recall, r.micro.f1) == (0.0, 0.0, 0.0)


def _random_tags(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-MISC"]) for _ in range(n)]


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_agrees_with_seqeval(mode: str) -> None:
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOB2

    rng = random.Random(0)
    gold = [_random_tags(rng, rng.randint(1, 12)) for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-LOC", "I-ORG"]) for t in g] for g in gold]
    kw = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
    ours = entity_scores(gold, pred, mode=mode)
    assert ours.micro.precision == pytest.approx(seqeval.precision_score(gold, pred, **kw))
    assert ours.micro.recall == pytest.approx(seqeval.recall_score(gold, pred, **kw))
    assert ours.micro.f1 == pytest.approx(seqeval.f1_score(gold, pred, **kw))
    report = seqeval.classification_report(gold, pred, output_dict=True, **kw)
    for typ, s in ours.per_type.items():
        if typ in report:
            assert s.f1 == pytest.approx(report[typ]["f1-score"])
            assert s.n_gold == report[typ]["support"]
