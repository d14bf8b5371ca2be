from __future__ import annotations

import itertools

import pytest
import torch

from hamner.models.crf import CRF


def _score(crf: CRF, em: torch.Tensor, tags: list[int]) -> torch.Tensor:
    c = crf.crf
    s = c.start_transitions[tags[0]] + em[0, tags[0]]
    for i in range(1, len(tags)):
        s = s + c.transitions[tags[i - 1], tags[i]] + em[i, tags[i]]
    return s + c.end_transitions[tags[-1]]


def _random_crf(k: int, seed: int) -> CRF:
    """A CRF with random start, end and transition scores (all zero at init would hide mistakes)."""
    torch.manual_seed(seed)
    crf = CRF(k)
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    return crf


def test_nll_and_viterbi_match_brute_force() -> None:
    k, n = 3, 4
    crf = _random_crf(k, seed=0)
    em = torch.randn(2, n, k)
    lengths = [4, 2]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 2, 1, 1], [1, 0, 0, 0]])
    expected = []
    best_paths = []
    for b, m in enumerate(lengths):
        scores = {seq: _score(crf, em[b, :m], list(seq)) for seq in itertools.product(range(k), repeat=m)}
        log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
        expected.append(log_z - scores[tuple(tags[b, :m].tolist())])
        best_paths.append(list(max(scores, key=lambda s: scores[s].item())))
    assert crf.nll(em, tags, mask).item() == pytest.approx(torch.stack(expected).mean().item(), abs=1e-5)
    assert crf.decode(em, mask) == best_paths


def test_mask_must_be_a_prefix_and_empty_rows_are_allowed() -> None:
    crf = CRF(3)
    em = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match="prefix"):
        crf.decode(em, torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="does not match"):
        crf.decode(em, torch.ones(2, 2, dtype=torch.bool))
    paths = crf.decode(em, torch.tensor([[0, 0, 0], [1, 1, 0]], dtype=torch.bool))
    assert paths[0] == [] and len(paths[1]) == 2


def test_marginals_match_brute_force_and_ignore_padding() -> None:
    k, n = 3, 4
    crf = _random_crf(k, seed=1)
    em = torch.randn(3, n, k)
    lengths = [4, 2, 1]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    log_marg = crf.log_marginals(em, mask)
    assert log_marg.shape == (3, n, k)
    for b, m in enumerate(lengths):
        scores = {seq: _score(crf, em[b, :m], list(seq)) for seq in itertools.product(range(k), repeat=m)}
        log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
        expected = torch.zeros(m, k)
        for seq, s in scores.items():
            for i, y in enumerate(seq):
                expected[i, y] += torch.exp(s - log_z)
        assert torch.allclose(log_marg[b, :m].exp(), expected, atol=1e-5)
        assert torch.all(log_marg[b, m:] == 0)
    # padding does not change a row's marginals
    alone = crf.log_marginals(em[1:2, :2], mask[1:2, :2])
    assert torch.allclose(alone[0], log_marg[1, :2], atol=1e-6)


def test_marginals_of_an_empty_row_are_zero_and_gradients_flow() -> None:
    crf = CRF(3)
    em = torch.randn(2, 3, 3, requires_grad=True)
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]], dtype=torch.bool)
    out = crf.log_marginals(em, mask)
    assert torch.all(out[0] == 0)
    out[1, :2].exp().mul(torch.arange(3.0)).sum().backward()
    assert em.grad is not None and em.grad[1, :2].abs().sum() > 0 and em.grad[0].abs().sum() == 0
