"""Near-duplicate search between two lists of posts, against brute force."""

from __future__ import annotations

import random

import pytest

from hamner.data.overlap import near_duplicates, normalised, relative_source, word_set


def test_identity_ignores_case_urls_and_a_leading_rt() -> None:
    assert normalised(["RT", "@a", ":", "Big", "News", "http://t.co/x"]) == normalised(["@a", ":", "big", "news"])
    assert word_set(["RT", "@a", "Big", "news", "!", "www.x.com"]) == {"big", "news"}
    [m] = near_duplicates([["RT", "Big", "news", "http://t.co/1"]], [["x", "y"], ["big", "News"]])
    assert m is not None and m.identical and m.other == 1


def test_near_identical_needs_four_words_and_the_threshold() -> None:
    a = "one two three four five".split()
    assert near_duplicates([a], ["one two three four six".split()])[0] is None  # 4/6
    m = near_duplicates([a], ["one two three four five six".split()])[0]  # 5/6
    assert m is not None and not m.identical and m.jaccard == pytest.approx(5 / 6)
    assert near_duplicates([["a", "b", "c"]], [["a", "b", "c", "d"]])[0] is None  # too short for Jaccard
    assert near_duplicates([a], [a], same_list=True)[0] is None  # a post never matches itself
    with pytest.raises(ValueError, match="threshold"):
        near_duplicates([a], [a], threshold=0)


def test_the_inverted_index_finds_what_brute_force_finds() -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(30)]
    posts = [rng.sample(vocab, rng.randint(3, 9)) for _ in range(300)]
    others = [rng.sample(vocab, rng.randint(3, 9)) for _ in range(300)] + [p + ["extra"] for p in posts[:40]]
    for threshold in (0.5, 0.8):
        got = near_duplicates(posts, others, threshold)
        for i, p in enumerate(posts):
            s = word_set(p)
            scores = [len(s & word_set(o)) / len(s | word_set(o)) if len(s) >= 4 and len(word_set(o)) >= 4 else 0.0 for o in others]
            same = [j for j, o in enumerate(others) if normalised(o) == normalised(p)]
            best = max(scores)
            if same:
                assert got[i] is not None and got[i].identical
            elif best >= threshold:
                assert got[i] is not None and got[i].jaccard == pytest.approx(best)
            else:
                assert got[i] is None


def test_relative_source_keeps_the_dataset_file_and_line() -> None:
    assert relative_source("/data/root/twitter2015/test.txt:47146") == "twitter2015/test.txt:47146"
