"""``hamner bulk``: tag collections of posts (JSONL or Parquet, with their images) on Ray Data.

Read -> image decoding and visual features in an actor pool (HamLearning models) -> tagging in an
actor pool -> Parquet (or JSONL) shards, embedded on this machine or on a Ray cluster. Every input
row gives exactly one output row, a bad one with its ``error``; an interrupted job rerun finishes
the work without redoing or duplicating rows (:mod:`hamner.bulk.output` says how).

Only :mod:`hamner.bulk.job` imports Ray (the ``bulk`` extra); the readers, the stages and the
output bookkeeping are plain Python over pyarrow and are tested without a cluster.
"""
