"""Row-block parallelism for kernels that release the GIL (numpy sorts, numba ``nogil`` kernels)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["run_row_blocks"]

BLOCK_BYTES = 1 << 21  # rows go in blocks of about this many bytes, so that a block's work stays in the L2 cache
SERIAL_BYTES = 1 << 20  # below this much data in all, threads cost more than they save


def run_row_blocks(rows: int, row_bytes: int, job: Callable[[slice], None], *, first_alone: bool = False) -> None:
    """Call ``job(rows_slice)`` over cache-sized blocks of ``rows`` rows of ``row_bytes`` bytes each, on
    ``torch.get_num_threads()`` threads (``job`` must release the GIL to gain anything).

    Args:
        rows: number of rows.
        row_bytes: bytes touched per row (sets the block size).
        job: called once per block with a ``slice`` of rows; blocks are disjoint and cover ``range(rows)``.
        first_alone: run the first block before starting the others (e.g. so that a JIT kernel compiles once).
    """
    step = max(1, BLOCK_BYTES // max(row_bytes, 1))
    blocks = [slice(i, min(i + step, rows)) for i in range(0, rows, step)]
    if first_alone and blocks:
        job(blocks.pop(0))
    workers = min(torch.get_num_threads(), len(blocks))
    if workers <= 1 or rows * row_bytes < SERIAL_BYTES:
        for sl in blocks:
            job(sl)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(job, blocks))
