"""Training data from Delta-backed Spark DataFrames through Petastorm.

``make_spark_converter`` materialises the DataFrame under the session's
``petastorm.spark.converter.parentCacheDirUrl``; ``make_torch_dataloader`` opens a Petastorm batch
reader on it. Text columns cannot pass Petastorm's default PyTorch loader (it rejects string
arrays), so :class:`TextBatchLoader` is handed in as ``data_loader_fn``: it reads the same
Petastorm reader, shuffles rows through a seeded buffer and calls the collate function — where the
tokenisation happens — on each batch of row dicts.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np


class TextBatchLoader:
    """A PyTorch-style iterable over a Petastorm batch reader whose columns may be strings.

    Args:
        reader: A Petastorm reader (``make_batch_reader``), as passed by ``make_torch_dataloader``.
        batch_size: Rows per batch.
        collate_fn: ``list[dict] -> batch`` (tokenises the texts).
        seed: Seed of the shuffling buffer (same seed, same order).
        shuffle_buffer: Rows held for shuffling (0 = reader order).
        shuffling_queue_capacity: Accepted for Petastorm's ``data_loader_fn`` signature; unused.
    """

    def __init__(self, reader, batch_size: int, collate_fn: Callable[[list[dict]], Any], seed: int = 0, shuffle_buffer: int = 0, shuffling_queue_capacity: int = 0):
        self.reader = reader
        self.batch_size = batch_size
        self.collate_fn = collate_fn
        self.rng = np.random.default_rng(seed)
        self.shuffle_buffer = shuffle_buffer

    def _rows(self) -> Iterator[dict]:
        for chunk in self.reader:  # namedtuple of column arrays (one row group)
            cols = chunk._asdict()
            n = len(next(iter(cols.values())))
            for i in range(n):
                yield {k: (v[i].item() if np.ndim(v[i]) == 0 and hasattr(v[i], "item") and not isinstance(v[i], (str, bytes)) else v[i])
                       for k, v in cols.items()}  # scalars as Python values, arrays (vectors) as they are

    def _shuffled(self) -> Iterator[dict]:
        if self.shuffle_buffer <= 1:
            yield from self._rows()
            return
        buf: list[dict] = []
        for row in self._rows():
            buf.append(row)
            if len(buf) >= self.shuffle_buffer:
                j = int(self.rng.integers(len(buf)))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield buf.pop()
        order = self.rng.permutation(len(buf))
        for j in order:
            yield buf[j]

    def __iter__(self) -> Iterator[Any]:
        acc: list[dict] = []
        for row in self._shuffled():
            acc.append(row)
            if len(acc) == self.batch_size:
                yield self.collate_fn(acc)
                acc = []
        if acc:
            yield self.collate_fn(acc)


READ_AHEAD_ROW_GROUPS = 2
"""Decoded row groups a Petastorm reader may hold ahead of the training loop (its ``results_queue_size``;
Petastorm's default of 50 lets the reader thread decode up to 50 row groups of 32 MB into Python objects
on the driver before the loop consumes them)."""


def make_converter(df):
    """``petastorm.spark.make_spark_converter(df)`` (materialised once per DataFrame plan, cached)."""
    from petastorm.spark import make_spark_converter

    return make_spark_converter(df)


@contextlib.contextmanager
def petastorm_batches(
    converter,
    batch_size: int,
    collate_fn: Callable[[list[dict]], Any],
    *,
    seed: int,
    num_epochs: int | None = 1,
    shuffle_buffer: int = 0,
    workers: int = 1,
    cur_shard: int | None = None,
    shard_count: int | None = None,
) -> Iterator[TextBatchLoader]:
    """Batches of a converted DataFrame via ``converter.make_torch_dataloader``, collated by ``collate_fn``.

    Row groups are read in file order by ``workers`` reader threads (1 = deterministic); shuffling
    is done by the seeded buffer. ``cur_shard`` / ``shard_count`` split the rows between ranks. The
    readers decode at most :data:`READ_AHEAD_ROW_GROUPS` row groups ahead of the batches.
    """
    kwargs: dict = {"shuffle_row_groups": False, "reader_pool_type": "thread", "results_queue_size": READ_AHEAD_ROW_GROUPS}
    if shard_count and shard_count > 1:
        kwargs.update(cur_shard=cur_shard, shard_count=shard_count)

    def loader_fn(reader, batch_size, shuffling_queue_capacity):
        return TextBatchLoader(reader, batch_size, collate_fn, seed=seed, shuffle_buffer=shuffle_buffer)

    with converter.make_torch_dataloader(
        batch_size=batch_size, num_epochs=num_epochs, workers_count=workers, data_loader_fn=loader_fn, **kwargs
    ) as loader:
        yield loader
