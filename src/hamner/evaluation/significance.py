"""Is system A better than system B on this test set? A paired bootstrap over posts.

The statistic is the difference of entity-level micro F1, averaged over each system's seeds (the
number the results tables report). Every bootstrap sample draws posts with replacement, the same
posts for every run of both systems, and recomputes each run's micro F1 from the drawn posts'
entity counts; so the interval reflects which posts happened to be in the test set, for the
trained models at hand. It does not cover training randomness: that is the spread over seeds,
reported beside it.

The one-sided p-value for "A is better than B" follows Berg-Kirkpatrick et al. (2012): the share
of samples whose difference is at least twice the observed one (the bootstrap distribution
shifted to the null of no difference).

Two tests below also count training randomness, which a comparison of 3-seed means needs:
:func:`seed_and_post_bootstrap` draws the seeds (with replacement, as pairs when both systems have
the same seeds) as well as the posts, and :func:`paired_seed_t_test` is a one-sided paired t-test
on the per-seed F1 differences (few seeds make it weak, which is the point: it says how much the
seeds alone support the gap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hamner.data.labels import spans_from_bio, spans_from_bio_strict


@dataclass(frozen=True)
class BootstrapResult:
    """F1 (fractions) of both systems, their difference and its bootstrap interval and p-value."""

    f1_a: float
    f1_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_posts: int
    runs_a: int
    runs_b: int
    n_samples: int
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def post_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: str = "conlleval") -> np.ndarray:
    """Per post: (true positive entities, predicted entities, gold entities), shape (posts, 3);
    the same reading of BIO as :func:`hamner.evaluation.metrics.entity_scores`."""
    if mode not in ("conlleval", "strict"):
        raise ValueError(f"mode must be 'conlleval' or 'strict', got {mode!r}")
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted ones")
    reader = spans_from_bio if mode == "conlleval" else spans_from_bio_strict
    out = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: gold has {len(g)} tags, prediction {len(p)}")
        gs, ps = set(reader(list(g))), set(reader(list(p)))
        out[i] = (len(gs & ps), len(ps), len(gs))
    return out


def _mean_f1(sums: np.ndarray) -> np.ndarray:
    """(..., runs, 3) summed counts -> mean micro F1 over runs, shape (...)."""
    tp, n_pred, n_gold = sums[..., 0], sums[..., 1], sums[..., 2]
    denom = n_pred + n_gold
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape, dtype=np.float64), where=denom > 0)
    return f1.mean(axis=-1)  # type: ignore[no-any-return]


def paired_bootstrap(
    gold: Sequence[Sequence[str]],
    runs_a: Sequence[Sequence[Sequence[str]]],
    runs_b: Sequence[Sequence[Sequence[str]]],
    n_samples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    mode: str = "conlleval",
    chunk: int = 500,
) -> BootstrapResult:
    """Compare system A (one predicted tag list per post, per run/seed) with system B on ``gold``."""
    return _bootstrap(gold, runs_a, runs_b, None, n_samples, seed, confidence, mode, chunk)


def seed_and_post_bootstrap(
    gold: Sequence[Sequence[str]],
    runs_a: Sequence[Sequence[Sequence[str]]],
    runs_b: Sequence[Sequence[Sequence[str]]],
    paired: bool,
    n_samples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    mode: str = "conlleval",
    chunk: int = 500,
) -> BootstrapResult:
    """Like :func:`paired_bootstrap`, but each sample also draws which seeds' runs it averages, with
    replacement: the runs' indices jointly for A and B when ``paired`` (run i of A and run i of B
    share a seed), else each system's on its own. The interval then covers the test set's sampling
    and training randomness; the p-value is computed the same way."""
    if paired and len(runs_a) != len(runs_b):
        raise ValueError(f"paired seeds need as many runs of A as of B, got {len(runs_a)} and {len(runs_b)}")
    return _bootstrap(gold, runs_a, runs_b, "paired" if paired else "independent", n_samples, seed, confidence, mode, chunk)


def _bootstrap(
    gold: Sequence[Sequence[str]],
    runs_a: Sequence[Sequence[Sequence[str]]],
    runs_b: Sequence[Sequence[Sequence[str]]],
    seeds: str | None,
    n_samples: int,
    seed: int,
    confidence: float,
    mode: str,
    chunk: int,
) -> BootstrapResult:
    """Both bootstraps: posts drawn with replacement (the same for every run of both systems) and,
    unless ``seeds`` is None, the runs averaged drawn too ("paired": the same indices for A and B)."""
    if not runs_a or not runs_b:
        raise ValueError("each system needs at least one run")
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(gold)
    if n == 0:
        raise ValueError("no posts to compare on")
    counts_a = np.stack([post_counts(gold, r, mode) for r in runs_a])  # shape: (runs, posts, 3)
    counts_b = np.stack([post_counts(gold, r, mode) for r in runs_b])
    f1_a = float(_mean_f1(counts_a.sum(axis=1)))
    f1_b = float(_mean_f1(counts_b.sum(axis=1)))
    delta = f1_a - f1_b
    ra, rb = len(runs_a), len(runs_b)
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_samples, dtype=np.float64)
    uniform = np.full(n, 1.0 / n)
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        weights = rng.multinomial(n, uniform, size=k).astype(np.float64)  # shape: (k, posts) draws per post
        sums_a = np.einsum("kn,snc->ksc", weights, counts_a)  # shape: (k, runs, 3)
        sums_b = np.einsum("kn,snc->ksc", weights, counts_b)
        if seeds is not None:
            pick_a = rng.integers(0, ra, size=(k, ra))  # shape: (k, runs drawn)
            pick_b = pick_a if seeds == "paired" else rng.integers(0, rb, size=(k, rb))
            rows = np.arange(k)[:, None]
            sums_a, sums_b = sums_a[rows, pick_a], sums_b[rows, pick_b]
        deltas[start : start + k] = _mean_f1(sums_a) - _mean_f1(sums_b)
    tail = (1 - confidence) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    return BootstrapResult(
        f1_a=f1_a, f1_b=f1_b, delta=delta, ci_low=float(low), ci_high=float(high),
        p_value=float(np.mean(deltas >= 2 * delta - 1e-12)), n_posts=n, runs_a=ra, runs_b=rb,
        n_samples=n_samples, confidence=confidence,
    )  # fmt: skip


def paired_seed_t_test(f1_a: Sequence[float], f1_b: Sequence[float]) -> float:
    """One-sided p-value of a paired t-test that A's F1 exceeds B's, seed by seed (same seeds in the
    same order). Needs at least 2 pairs; identical differences give p = 0 or 1 (no spread)."""
    if len(f1_a) != len(f1_b) or len(f1_a) < 2:
        raise ValueError(f"a paired t-test needs the same number (>= 2) of runs, got {len(f1_a)} and {len(f1_b)}")
    d = np.asarray(f1_a, dtype=np.float64) - np.asarray(f1_b, dtype=np.float64)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if d.mean() > 0 else 1.0
    t = float(d.mean()) / (sd / math.sqrt(len(d)))
    return student_t_sf(t, len(d) - 1)


def student_t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom, through the regularised incomplete
    beta function: P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2)."""
    two_sided = _betainc(df / 2.0, 0.5, df / (df + t * t))
    return two_sided / 2 if t > 0 else 1 - two_sided / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), by its continued fraction (Lentz's method)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point: use the symmetry
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * (f - 1.0)
