"""Queries of the Redis store: the merged state of a stream (cumulative, or a window's live
buckets) read from Redis, revalidated by version against the local cache, answered stale for up
to ``max_stale`` seconds when Redis is unreachable; reports and curves from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..engine import CUMULATIVE, State, build_report, curve
from ..engine.counting import CUMULATIVE_ONLY, TAKEN_FROM_CUMULATIVE
from ..engine.state import ExactScores
from ..engine.thresholds import ThresholdGoals
from .base import NotFoundError, StoreUnavailableError, same_window
from .redis_catalogue import StreamCatalogue
from .redis_compaction import Compactor
from .redis_connection import RedisConnection, text
from .redis_reads import Merged, MergedCache
from .redis_rows import merge_samples, unpack_rows
from .sparse_log import add_dense, decode_log

__all__ = ["MergedReads"]


class MergedReads:
    """``state``, ``report_context``, ``report`` and ``curve`` of the Redis store.

    Parameters
    ----------
    conn, catalogue, compactor
        The store's parts (a read that finds a long log mostly cancelling out schedules its
        compaction).
    cache : MergedCache
        The last merged state of each (stream, window).
    status_of : callable
        ``status_of(name)``: the join table's status (``JoinTable.label_status``).
    clock : callable
    max_stale : float
        With Redis unreachable, queries answer from a merged state at most this old.
    """

    def __init__(
        self,
        conn: RedisConnection,
        catalogue: StreamCatalogue,
        compactor: Compactor,
        cache: MergedCache,
        status_of: Callable[[str], dict[str, Any]],
        *,
        clock: Callable[[], float],
        max_stale: float,
    ) -> None:
        self.conn = conn
        self.catalogue = catalogue
        self.compactor = compactor
        self.cache = cache
        self.status_of = status_of
        self.clock = clock
        self.max_stale = max_stale

    def state(self, name: str, window: str) -> State:
        return self._merged(name, window)[0]

    def _merged(
        self, name: str, window: str, retry: bool = True
    ) -> tuple[State, float | None, str]:
        """``(state, age, reason)``: age is None for a state confirmed by Redis just now."""
        cached = self.catalogue.cached(name)
        ring = cached.engine.ring(window)
        now = self.clock()
        k = self.conn.keys
        if ring is None:
            ck, bucket, logs = (name, CUMULATIVE), 0, [k.of(name, "cum")]
        else:
            bucket = ring.bucket_of(now)
            ck = (name, str(ring.seconds))
            logs = [
                k.bucket(name, ring.seconds, b)
                for b in range(bucket - ring.n_buckets + 1, bucket + 1)
            ]
        hit = self.cache.get(ck)
        usable = hit is not None and hit.uid == cached.uid and hit.bucket == bucket
        try:
            res = self.conn.call(
                "query", "read", [k.of(name, "meta"), *logs], [hit.ver if usable and hit else ""]
            )
        except StoreUnavailableError as exc:
            if hit is not None and hit.uid == cached.uid and now - hit.read_at <= self.max_stale:
                return hit.state.copy(), max(0.0, now - hit.read_at), str(exc)
            raise StoreUnavailableError(
                f"{exc}; no merged state of {name!r} ({window or CUMULATIVE}) younger than "
                f"{self.max_stale:g} s to answer from"
            ) from exc
        if not res:
            self.catalogue.forget(name)
            raise NotFoundError(name)
        uid, ver = text(res[0]), text(res[1])
        if uid != cached.uid:
            self.catalogue.forget(name)
            if retry:
                return self._merged(name, window, retry=False)
            raise StoreUnavailableError(f"stream {name!r} was re-created meanwhile; retry")
        cached.refresh(text(res[2]), text(res[3]), ver)
        if len(res) == 4 and hit is not None:
            hit.read_at = now
            return hit.state.copy(), None, ""
        size = cached.layout.size
        spec = cached.record.spec
        total = np.zeros(size)
        n_at = cached.layout.offset("n")
        rows: list[ExactScores | None] = []
        samples: list[bytes] = []
        for at, key in enumerate(logs):
            data, raw_rows, sample = res[4 + 3 * at : 7 + 3 * at]
            samples.append(sample)
            if not data:
                continue
            dense, listed = decode_log(data, size, cached.layout.max_cells)
            add_dense(total, dense, cached.layout.max_cells)
            self.compactor.note_read(name, key, len(data), listed, dense)
            # its raw rows, if they are all there (redis_rows): else the log answers as bins
            rows.append(unpack_rows(spec, raw_rows, int(round(dense[n_at]))))
        state = cached.layout.state(total)
        state.exact = ExactScores(spec.n_columns, spec.task == "multiclass")
        for part in rows:
            state.join_rows(part)
        if state.sample is not None:
            try:
                merge_samples(spec, samples, into=state.sample)
            except ValueError as exc:
                raise StoreUnavailableError(f"stream {name!r}: {exc}") from exc
        if ring is not None:
            # a window takes the cumulative state's score range, as the engine's windows do
            # (counting.CUMULATIVE_ONLY): the same report from every store
            for n in CUMULATIVE_ONLY:  # the moments: the cumulative state's alone
                if n in state.counts and n not in TAKEN_FROM_CUMULATIVE:
                    state.counts[n][...] = 0
            kept = [n for n in TAKEN_FROM_CUMULATIVE if n in state.counts]
            if kept:
                cumulative = self._merged(name, CUMULATIVE, retry)[0]
                for n in kept:
                    state.counts[n][...] = cumulative.counts[n]
        self.cache.put(ck, Merged(uid, ver, bucket, state, now))
        return state.copy(), None, ""

    def report_context(
        self, name: str, window: str
    ) -> tuple[State, State | None, dict[str, Any] | None]:
        state, ref, labels, _, _ = self._context(name, window)
        return state, ref, labels

    def _context(
        self, name: str, window: str
    ) -> tuple[State, State | None, dict[str, Any], float | None, str]:
        """The window's state, its prior reference's, the join table's status (``redis_join``),
        and the state's age and staleness reason."""
        state, age, reason = self._merged(name, window)
        reference = self.catalogue.get(name).spec.prior_reference
        ref = None if same_window(window, reference) else self._merged(name, reference)[0]
        return state, ref, self.status_of(name), age, reason

    def report(
        self,
        name: str,
        window: str,
        curves: bool = False,
        max_points: int = 200,
        threshold_goals: ThresholdGoals | None = None,
    ) -> dict[str, Any]:
        state, ref, labels, age, reason = self._context(name, window)
        out = build_report(
            state,
            window=window or CUMULATIVE,
            curves=curves,
            max_points=max_points,
            reference=ref,
            labels=labels,
            threshold_goals=threshold_goals,
        )
        if age is not None:
            out["staleness"] = {"age_seconds": round(age, 3), "reason": reason}
        return out

    def curve(
        self, name: str, window: str, kind: str, target: str, max_points: int = 200
    ) -> dict[str, Any]:
        return curve(self.state(name, window), kind, target, max_points)
