"""Stream names are per tenant on the Redis store too: two tenants' streams of one name are
filed under their own keys and never share counts, producers or a registry entry."""

from __future__ import annotations

import time

import pytest
from evalstream_server.engine import CUMULATIVE, StreamSpec, make_batch
from evalstream_server.store import NotFoundError
from evalstream_server.store.redis_store import RedisStore

from .conftest import make_batches


def test_two_tenants_streams_of_one_name_are_apart(redis_server):
    store = RedisStore.from_url(redis_server.url, clock=time.time, background=False)
    spec = StreamSpec(task="binary", name="fraud")
    try:
        store.create(spec, tenant="team-a")
        store.create(spec, tenant="team-b")
        assert store.names() == ["team-a/fraud", "team-b/fraud"]
        (y, p), (y2, p2) = make_batches("binary", 2, 30, seed=3)
        store.ingest("team-a/fraud", "P", 1, make_batch(spec, y, p), None)
        store.flush()
        a, b = store.get("team-a/fraud"), store.get("team-b/fraud")
        assert (a.tenant, a.spec.name, b.tenant, b.spec.name) == (
            "team-a",
            "fraud",
            "team-b",
            "fraud",
        )
        assert store.state("team-a/fraud", CUMULATIVE).n_samples == 30
        assert store.state("team-b/fraud", CUMULATIVE).n_samples == 0
        assert store.expected_sequence("team-b/fraud", "P") == 1
        store.delete("team-b/fraud")
        assert store.names() == ["team-a/fraud"]
        assert store.state("team-a/fraud", CUMULATIVE).n_samples == 30
        with pytest.raises(NotFoundError, match="^stream 'fraud' not found$"):
            store.get("fraud")  # the bare name is no stream
    finally:
        store.close()
