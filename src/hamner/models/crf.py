"""Linear-chain CRF over word-level BIO tags (a thin, checked wrapper around pytorch-crf)."""

from __future__ import annotations

import torch
from torch import nn
from torchcrf import CRF as _TorchCRF


class CRF(nn.Module):
    """Negative log-likelihood and Viterbi decoding for batches of left-aligned sequences.

    ``mask`` must be True on a prefix of each row (words past the encoder limit are at the end);
    a row with no word at all is allowed and decodes to an empty list. Emissions of any floating
    dtype are accepted (bf16/fp16 under autocast) and upcast: the CRF always computes in fp32.
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
        if mask.device.type != "cpu":  # the check reads the mask on the host: a GPU sync every step
            return
        lengths = mask.long().sum(1)
        prefix = torch.arange(mask.size(1), device=mask.device)[None, :] < lengths[:, None]
        if not torch.equal(prefix, mask.bool()):
            raise ValueError("mask must be True on a prefix of every row")

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the rows that have at least one word."""
        # shape: emissions (batch, words, tags); tags, mask (batch, words)
        self._check(emissions, mask)
        m = mask.bool()
        keep = m[:, 0]  # shape: (batch,) rows with at least one word
        # pytorch-crf needs every row's first word on: an empty row is scored on its (padding) first
        # word and then weighted 0, which needs no host synchronisation (boolean indexing would)
        m = torch.cat([torch.ones_like(m[:, :1]), m[:, 1:]], dim=1)
        llh = self.crf(emissions.float(), tags, mask=m, reduction="none")  # shape: (batch,)
        # the mean over kept rows, written so that a batch with no empty row gives exactly llh.mean()
        return -llh.masked_fill(~keep, 0.0).mean() * (keep.numel() / keep.sum().clamp(min=1))

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log posterior of each tag at each word, log p(y_i = k | x), by forward-backward.

        Returns (batch, words, tags); rows past a sequence's length (and rows with no word) are 0,
        so that ``exp`` of them must not be read as a distribution: mask them.
        """
        # shape: emissions (batch, words, tags); mask (batch, words)
        self._check(emissions, mask)
        emissions = emissions.float()
        c = self.crf
        b, n, k = emissions.shape
        m = mask.bool()
        trans = c.transitions[None]  # shape: (1, tags from, tags to)
        alphas = [c.start_transitions[None] + emissions[:, 0]]  # each (batch, tags)
        for i in range(1, n):
            step = torch.logsumexp(alphas[-1][:, :, None] + trans, dim=1) + emissions[:, i]
            alphas.append(torch.where(m[:, i, None], step, alphas[-1]))  # past the end: carry the last
        lengths = m.long().sum(1)
        betas: list[torch.Tensor] = [emissions.new_zeros(b, k)] * n
        beta = c.end_transitions[None].expand(b, k)
        for i in range(n - 1, -1, -1):
            # at the last word of a row beta is the end transition; before it, one step back
            if i < n - 1:
                step = torch.logsumexp(trans + (emissions[:, i + 1] + beta)[:, None, :], dim=2)
                beta = torch.where(m[:, i + 1, None], step, c.end_transitions[None].expand(b, k))
            betas[i] = beta
        alpha = torch.stack(alphas, 1)  # shape: (batch, words, tags)
        beta_all = torch.stack(betas, 1)
        last = (lengths - 1).clamp(min=0)
        log_z = torch.logsumexp(alpha[torch.arange(b), last] + c.end_transitions[None], dim=-1)  # shape: (batch,)
        out = alpha + beta_all - log_z[:, None, None]
        return out * m[..., None]

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        self._check(emissions, mask)
        emissions = emissions.float()
        out: list[list[int]] = [[] for _ in range(emissions.size(0))]
        keep = mask[:, 0].bool()
        if keep.any():
            idx = keep.nonzero().flatten().tolist()
            for i, path in zip(idx, self.crf.decode(emissions[keep], mask=mask[keep].bool()), strict=True):
                out[i] = path
        return out


def marginal_kl(teacher_log_p: torch.Tensor, student_log_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the words of ``mask`` of KL(p || q) between two (batch, words, tags) tensors of log
    tag marginals (:meth:`CRF.log_marginals`): the soft-target loss of cross-view alignment and of
    distillation."""
    kl = torch.nn.functional.kl_div(student_log_q, teacher_log_p.to(student_log_q.dtype), log_target=True, reduction="none").sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)
