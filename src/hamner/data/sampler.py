"""Length-bucketed, shuffled, rank-sharded batches: little padding, same batches on every rank count."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


class BucketBatchSampler:
    """Batches of indices of similar length, for one rank of ``world``.

    Each epoch: shuffle all indices (seeded by ``seed + epoch``), cut them into pools of
    ``pool_batches`` batches, sort each pool by length and cut it into batches (so a batch holds
    posts of similar length and little padding), shuffle the batch order, then give rank ``r``
    batches ``r, r + world, ...``. The batch list is padded by repeating its first batches so that
    every rank gets the same number of steps, as DDP requires.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        pool_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.pool = pool_batches * batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start : start + self.pool], key=lambda i: self.lengths[i])
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        rng.shuffle(batches)
        if batches and len(batches) % self.world:
            batches += batches[: self.world - len(batches) % self.world]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._all_batches()[self.rank :: self.world])

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.pool)
        n = full * -(-self.pool // self.batch_size) + -(-rest // self.batch_size)
        return -(-n // self.world)
