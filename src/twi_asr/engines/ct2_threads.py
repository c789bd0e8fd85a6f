"""How the CTranslate2 engine spends the CPU cores: model replicas, threads each, batches at once.

CTranslate2 runs a model as ``inter_threads`` replicas (weights shared), each computing with
``intra_threads`` OpenMP threads, and releases the GIL while it works. A batch of 8 short clips
is a few small matrix products per decoding step, too small to keep two threads busy: on 2
cores one replica on 2 threads spent more CPU seconds for the same words than one on 1
thread (60 clips, tiny.en, beam 5: user+sys 13.7 against 12.5 s). So on CPU, by default, the
engine runs its batches in *lanes*: one replica and one thread per lane, and one batch per lane
at a time (:class:`ThreadPlan`), which also overlaps one batch's feature extraction and token
handling (Python) with another's encoder and decoder (C++).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_AUTO_LANES = 2
"""Lanes picked on CPU when nobody says: batches of a call run at most this many at once."""


@dataclass(frozen=True)
class ThreadPlan:
    """What to ask CTranslate2 for, and how many batches one ``transcribe`` call runs at once."""

    inter_threads: int
    """Model replicas (``WhisperModel(num_workers=...)``)."""
    intra_threads: int
    """Threads per replica (``cpu_threads``; 0 = CTranslate2's own default)."""
    lanes: int
    """Batches of one call decoded at the same time (each on its own replica)."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_threads(device: str, cpu_threads: int, workers: int, cores: int | None = None) -> ThreadPlan:
    """The replicas, threads and lanes for ``device`` given the user's ``cpu_threads`` and ``workers``.

    Lanes are the default only where nothing was asked: on CPU, ``cpu_threads=0`` and one worker,
    ``min(cores, MAX_AUTO_LANES)`` lanes of ``cores // lanes`` threads. An explicit
    ``cpu_threads`` or several ``workers`` (concurrent calls, e.g. the server's) keep what was
    asked: ``workers`` replicas of ``cpu_threads`` threads, one batch at a time per call. On CUDA
    one batch at a time (the GPU is one device).
    """
    if device != "cpu" or cpu_threads or workers > 1:
        return ThreadPlan(inter_threads=workers, intra_threads=cpu_threads, lanes=1)
    cores = available_cores() if cores is None else max(1, cores)
    lanes = min(cores, MAX_AUTO_LANES)
    return ThreadPlan(inter_threads=lanes, intra_threads=max(1, cores // lanes), lanes=lanes)


def split_evenly(items: list[int], batch_size: int, lanes: int) -> list[list[int]]:
    """``items`` (sorted by length) in consecutive batches of at most ``batch_size``.

    Batches of ``batch_size`` and a smaller last one, except when all of them run in one round
    of the lanes (no more batches than lanes): then as many batches as lanes, of equal sizes,
    since the round lasts as long as its biggest batch. The 12 pieces of a 5-minute file in
    batches of 8 on 2 lanes are 6 + 6, not 8 + 4.
    """
    size = max(1, batch_size)
    count = -(-len(items) // size)
    if lanes <= 1 or count > lanes or not items:
        return [items[first : first + size] for first in range(0, len(items), size)]
    count = min(len(items), lanes)
    share, extra = divmod(len(items), count)
    out: list[list[int]] = []
    first = 0
    for b in range(count):
        end = first + share + (1 if b < extra else 0)
        out.append(items[first:end])
        first = end
    return out
