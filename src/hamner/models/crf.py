"""Linear-chain CRF over word-level BIO tags (a thin, checked wrapper around pytorch-crf)."""

from __future__ import annotations

import torch
from torch import nn
from torchcrf import CRF as _TorchCRF


class CRF(nn.Module):
    """Negative log-likelihood and Viterbi decoding for batches of left-aligned sequences.

    ``mask`` must be True on a prefix of each row (words past the encoder limit are at the end);
    a row with no word at all is allowed and decodes to an empty list.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.crf = _TorchCRF(num_tags, batch_first=True)

    @staticmethod
    def _check(emissions: torch.Tensor, mask: torch.Tensor) -> None:
        if emissions.dim() != 3:
            raise ValueError(f"emissions must be (batch, words, tags), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match emissions {tuple(emissions.shape[:2])}")
        lengths = mask.long().sum(1)
        prefix = torch.arange(mask.size(1), device=mask.device)[None, :] < lengths[:, None]
        if not torch.equal(prefix, mask.bool()):
            raise ValueError("mask must be True on a prefix of every row")

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the rows that have at least one word."""
        # shape: emissions (batch, words, tags); tags, mask (batch, words)
        self._check(emissions, mask)
        keep = mask[:, 0].bool()
        if not keep.any():
            return emissions.sum() * 0.0
        llh = self.crf(emissions[keep], tags[keep], mask=mask[keep].bool(), reduction="none")
        return -llh.mean()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        self._check(emissions, mask)
        out: list[list[int]] = [[] for _ in range(emissions.size(0))]
        keep = mask[:, 0].bool()
        if keep.any():
            idx = keep.nonzero().flatten().tolist()
            for i, path in zip(idx, self.crf.decode(emissions[keep], mask=mask[keep].bool()), strict=True):
                out[i] = path
        return out
