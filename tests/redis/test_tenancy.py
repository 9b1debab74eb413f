"""Stream names are per tenant on the Redis store too: two tenants' streams of one name are
filed under their own keys and never share counts, producers or a registry entry."""

from __future__ import annotations

import time

import numpy as np
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


def _to_legacy_layout(client, prefix: str, key: str, name: str) -> None:
    """What the version before per-tenant names wrote: the stream's keys (bucket logs included)
    under ``P:{name}:`` and the bare name in the registry (copied key by key, as a cluster
    needs)."""
    old, new = f"{prefix}:{{{name}}}:", f"{prefix}:{{{key}}}:"
    members = client.zrange(new + "buckets", 0, -1, withscores=True)
    pattern = new.replace("{", "[{]").replace("}", "[}]") + "*"
    for k in list(client.scan_iter(match=pattern)):
        k = k.decode()
        client.restore(old + k[len(new) :], max(0, client.pttl(k)), client.dump(k), replace=True)
        client.delete(k)
    client.delete(old + "buckets")
    if members:
        client.zadd(old + "buckets", {old + m.decode()[len(new) :]: s for m, s in members})
    client.srem(f"{prefix}:streams", key)
    client.sadd(f"{prefix}:streams", name)


@pytest.fixture(params=["redis", "cluster"])
def any_redis(request):
    """One Redis, or a three-master Redis Cluster (where the old and new keys lie in different
    slots)."""
    return request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")


def test_data_written_before_per_tenant_names_migrates(any_redis):
    spec = StreamSpec(task="binary", name="fraud", windows=("5m",))
    store = RedisStore.from_url(any_redis.url, clock=time.time, background=False)
    try:
        store.create(spec, tenant="team-a")
        store.create(StreamSpec(task="binary", name="open"))  # the open server's: not moved
        batches = [make_batch(spec, y, p) for y, p in make_batches("binary", 3, 40, seed=4)]
        for seq, batch in enumerate(batches, 1):
            store.ingest("team-a/fraud", "P", seq, batch, None)
        store.flush()
        want_cum = store.state("team-a/fraud", CUMULATIVE)
        want_win = store.state("team-a/fraud", "5m")
    finally:
        store.close()
    client = _client(any_redis)
    _to_legacy_layout(client, "evalstream", "team-a/fraud", "fraud")
    assert client.exists("evalstream:{fraud}:meta")
    again = RedisStore.from_url(any_redis.url, clock=time.time, background=False)
    try:
        assert again.names() == ["open", "team-a/fraud"]
        assert not list(client.scan_iter(match="evalstream:[{]fraud[}]:*"))
        record = again.get("team-a/fraud")
        assert (record.tenant, record.spec.name) == ("team-a", "fraud")
        for window, want in ((CUMULATIVE, want_cum), ("5m", want_win)):
            got = again.state("team-a/fraud", window)
            assert got.n_samples == want.n_samples == 120
            for field, arr in want.counts.items():
                np.testing.assert_array_equal(got.counts[field], arr, err_msg=field)
        assert again.expected_sequence("team-a/fraud", "P") == 4
        buckets = client.zrange("evalstream:{team-a/fraud}:buckets", 0, -1)
        assert buckets and all(client.exists(b) for b in buckets)  # logs moved with the index
    finally:
        again.close()


def _client(server):
    if hasattr(server, "ports"):  # the cluster
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=server.ports[0])
    return server.client()
