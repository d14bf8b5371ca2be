"""The paired bootstrap and the prediction files it reads."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import pytest

from hamner.data.conll import Post
from hamner.errors import DataFormatError
from hamner.evaluation.metrics import entity_scores
from hamner.evaluation.predictions import read_predictions, write_predictions
from hamner.evaluation.significance import (
    paired_bootstrap,
    paired_seed_t_test,
    post_counts,
    seed_and_post_bootstrap,
    student_t_sf,
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def random_tags(rng: random.Random, n_posts: int) -> list[list[str]]:
    return [[rng.choice(TAGS) for _ in range(rng.randint(1, 12))] for _ in range(n_posts)]


def corrupt(rng: random.Random, gold: list[list[str]], rate: float) -> list[list[str]]:
    """A prediction that gets each word's tag wrong with probability ``rate``."""
    return [[rng.choice(TAGS) if rng.random() < rate else t for t in seq] for seq in gold]


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_post_counts_sum_to_the_metric_counts(mode: str) -> None:
    rng = random.Random(1)
    gold = random_tags(rng, 200)
    pred = corrupt(rng, gold, 0.3)
    sums = post_counts(gold, pred, mode).sum(axis=0)
    micro = entity_scores(gold, pred, mode=mode).micro
    assert tuple(sums) == (micro.tp, micro.n_pred, micro.n_gold)


def test_identical_systems_differ_by_nothing() -> None:
    rng = random.Random(2)
    gold = random_tags(rng, 100)
    pred = corrupt(rng, gold, 0.2)
    res = paired_bootstrap(gold, [pred, pred], [pred], n_samples=500)
    assert res.delta == 0 and res.ci_low == 0 and res.ci_high == 0 and res.p_value == 1.0


def test_a_clearly_better_system_is_significant_and_a_worse_one_is_not() -> None:
    rng = random.Random(3)
    gold = random_tags(rng, 400)
    good = [corrupt(rng, gold, 0.05) for _ in range(3)]
    bad = [corrupt(rng, gold, 0.25) for _ in range(3)]
    better = paired_bootstrap(gold, good, bad, n_samples=2000, seed=1)
    assert better.delta > 0.1 and better.ci_low > 0 and better.p_value < 0.001
    worse = paired_bootstrap(gold, bad, good, n_samples=2000, seed=1)
    assert worse.delta == pytest.approx(-better.delta) and worse.ci_high < 0 and worse.p_value > 0.99


def test_f1_is_the_mean_over_runs_and_the_bootstrap_is_reproducible() -> None:
    rng = random.Random(4)
    gold = random_tags(rng, 150)
    a = [corrupt(rng, gold, r) for r in (0.1, 0.15, 0.2)]
    b = [corrupt(rng, gold, 0.15)]
    res = paired_bootstrap(gold, a, b, n_samples=3000, seed=7)
    assert res.f1_a == pytest.approx(np.mean([entity_scores(gold, x).micro.f1 for x in a]))
    assert res.f1_b == pytest.approx(entity_scores(gold, b[0]).micro.f1)
    assert res.delta == pytest.approx(res.f1_a - res.f1_b)
    assert res.ci_low < res.delta < res.ci_high and 0 < res.p_value < 1
    assert paired_bootstrap(gold, a, b, n_samples=3000, seed=7) == res
    assert (res.runs_a, res.runs_b, res.n_posts) == (3, 1, 150)


def test_a_small_difference_on_few_posts_is_not_significant() -> None:
    gold = [["B-PER", "O"], ["B-LOC"], ["B-ORG", "I-ORG"], ["O", "B-MISC"]] * 5
    a = [list(g) for g in gold]
    b = [list(g) for g in gold]
    b[0] = ["O", "O"]  # B misses one entity of 20
    res = paired_bootstrap(gold, [a], [b], n_samples=4000, seed=0)
    assert res.delta > 0 and res.ci_low == 0 and res.p_value > 0.05


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        paired_bootstrap([["O"]], [], [[["O"]]])
    with pytest.raises(ValueError, match="sequence 0: gold has 2 tags, prediction 1"):
        post_counts([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="2 gold sequences but 1"):
        post_counts([["O"], ["O"]], [["O"]])


@pytest.mark.parametrize("name", ["preds.jsonl", "preds.jsonl.gz"])
def test_predictions_round_trip(tmp_path: Path, name: str) -> None:
    posts = [Post(["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], "1", "test.txt:1"), Post(["hi"], ["O"], "2", "test.txt:6")]
    path = write_predictions(tmp_path / name, posts, [["B-PER", "O", "O"], ["O"]], [0.75, None])
    back = read_predictions(path)
    assert [(p.source, p.words, p.gold, p.pred, p.relevance) for p in back] == [
        ("test.txt:1", ["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], ["B-PER", "O", "O"], 0.75),
        ("test.txt:6", ["hi"], ["O"], ["O"], None),
    ]
    if name.endswith(".gz"):  # the same predictions give the same bytes (no time in the gzip header)
        first = path.read_bytes()
        write_predictions(tmp_path / name, posts, [["B-PER", "O", "O"], ["O"]], [0.75, None])
        assert path.read_bytes() == first and gzip.decompress(first).count(b"\n") == 2
    with pytest.raises(ValueError, match="test.txt:1: 3 words but 2 predicted tags"):
        write_predictions(tmp_path / "x.jsonl", posts, [["O", "O"], ["O"]])
    assert not list(tmp_path.glob("x.jsonl*"))  # checked before anything is written


def test_a_malformed_predictions_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"source": "a:1", "words": ["x"], "gold": ["O"], "pred": ["O"]}\n{"source": "a:2", "words": ["x"], "gold": ["O"], "pred": []}\n')
    with pytest.raises(DataFormatError, match="p.jsonl:2: 1 words, 1 gold tags and 0 predicted tags"):
        read_predictions(path)
    path.write_text('{"source": "a:1", "words": ["x"]}\n')
    with pytest.raises(DataFormatError, match=r"p.jsonl:1: missing fields \['gold', 'pred'\]"):
        read_predictions(path)


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(2.919986, 2, 0.05), (6.964557, 2, 0.01), (1.812461, 10, 0.05), (2.527977, 20, 0.01), (0.0, 3, 0.5), (-1.812461, 10, 0.95)],
)
def test_student_t_tail_matches_the_tables(t: float, df: int, p: float) -> None:
    assert student_t_sf(t, df) == pytest.approx(p, abs=1e-6)


def test_paired_seed_t_test() -> None:
    # per-seed F1 of Twitter-2015 hamlearning and text-only (results/runs): p = 0.04, as the review found
    assert paired_seed_t_test([0.7334, 0.7334, 0.7397], [0.7288, 0.7304, 0.7312]) == pytest.approx(0.0407, abs=5e-4)
    assert paired_seed_t_test([0.75, 0.5], [0.5, 0.25]) == 0.0  # the same gap every seed: no spread
    with pytest.raises(ValueError, match="same number"):
        paired_seed_t_test([0.8], [0.7])


def test_resampling_seeds_widens_the_interval_when_the_seeds_disagree() -> None:
    rng = random.Random(5)
    gold = random_tags(rng, 300)
    # A's seeds disagree (one is much worse); B's agree
    a = [corrupt(rng, gold, 0.05), corrupt(rng, gold, 0.05), corrupt(rng, gold, 0.35)]
    b = [corrupt(rng, gold, 0.15) for _ in range(3)]
    posts_only = paired_bootstrap(gold, a, b, n_samples=2000, seed=2)
    both = seed_and_post_bootstrap(gold, a, b, paired=True, n_samples=2000, seed=2)
    assert both.delta == pytest.approx(posts_only.delta) and both.f1_a == pytest.approx(posts_only.f1_a)
    assert both.ci_high - both.ci_low > 2 * (posts_only.ci_high - posts_only.ci_low)
    assert both.p_value > posts_only.p_value
    again = seed_and_post_bootstrap(gold, a, b, paired=True, n_samples=2000, seed=2)
    assert (again.ci_low, again.ci_high, again.p_value) == (both.ci_low, both.ci_high, both.p_value)
    # with agreeing seeds the two intervals are alike
    same = [a[0]] * 3
    x = paired_bootstrap(gold, same, b, n_samples=2000, seed=3)
    y = seed_and_post_bootstrap(gold, same, b, paired=False, n_samples=2000, seed=3)
    assert abs((y.ci_high - y.ci_low) - (x.ci_high - x.ci_low)) < 0.5 * (x.ci_high - x.ci_low)
    with pytest.raises(ValueError, match="paired seeds need as many runs"):
        seed_and_post_bootstrap(gold, a, b[:2], paired=True)
