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


def test_nll_and_viterbi_match_brute_force() -> None:
    torch.manual_seed(0)
    k, n = 3, 4
    crf = CRF(k)
    for p in crf.parameters():
        torch.nn.init.normal_(p)
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
