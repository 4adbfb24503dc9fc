"""The local executor: chunks of replicates in this process, or in a pool of worker processes.

It runs the chunk function it is given (``chunk_fn(cfg_json, chunk) -> results``) and yields each
chunk's results as soon as the chunk finishes; the caller stores them. It knows no backend."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator


def map_chunks(cfg_json: dict, chunks: list[list], chunk_fn: Callable, workers: int | None = None) -> Iterator:
    """``chunk_fn(cfg_json, chunk)`` for every chunk, yielded as each finishes.

    ``workers`` (default ``OHGW_WORKERS``, else the machine's CPUs): with one, or with one chunk, the
    chunks run here one after another and a failure propagates at once. Otherwise they run in a process
    pool and a failing chunk does not stop the others: every other result is yielded first, then the
    first failure is raised (rerun with ``--resume`` to redo only the missing replicates)."""
    workers = workers or int(os.environ.get("OHGW_WORKERS", os.cpu_count() or 1))
    if workers <= 1 or len(chunks) == 1:
        for ch in chunks:
            yield chunk_fn(cfg_json, ch)
        return
    failures = []
    with ProcessPoolExecutor(workers) as ex:
        futs = {ex.submit(chunk_fn, cfg_json, ch): ch for ch in chunks}
        for f in as_completed(futs):
            try:
                res = f.result()
            except Exception as e:  # the other chunks' results are still yielded
                failures.append((futs[f], e))
                continue
            yield res
    if failures:
        ch, e = failures[0]
        raise (ValueError if isinstance(e, ValueError) else RuntimeError)(
            f"{len(failures)} of {len(chunks)} chunks failed; the first ran {len(ch)} replicate(s) from {tuple(ch[0])}: "
            f"{e} (finished replicates are stored; rerun with --resume to redo the rest)") from e
