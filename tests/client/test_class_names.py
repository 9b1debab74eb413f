"""Class names as labels: ``log`` and ``log_labels`` map them with the stream's classes, fetched
once per client and stream, and mapped again when the stream was deleted and created with other
classes (by this client or by another one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import EvalClient

CLASSES = ["cat", "dog", "eel"]


class _Counted:
    """Wraps one stub method and counts its calls."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.method(*args, **kwargs)


def _count_get_stream(client: EvalClient) -> _Counted:
    counted = _Counted(client._stub.GetStream)
    client._stub.GetStream = counted
    return counted


def _batch(seed: int, n: int, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = np.array(classes)[rng.integers(0, len(classes), n)]
    p = rng.dirichlet(np.ones(len(classes)), n).astype(np.float32)
    return names, p


def _assert_mapped(client: EvalClient, stream: str, names, p, classes: list[str]) -> None:
    """The stream's confusion matrix is sklearn's with the names mapped by ``classes``."""
    y = np.array([classes.index(v) for v in names])
    want = skm.confusion_matrix(y, p.argmax(axis=1), labels=range(len(classes)))
    np.testing.assert_array_equal(client.report(stream).confusion_matrix(), want)


def test_named_labels_fetch_the_classes_once_per_stream(server, client, name):
    client.create_stream(name, "multiclass", CLASSES)
    with EvalClient(server.target) as c:
        get_stream = _count_get_stream(c)
        all_names, all_p = [], []
        for seed in range(8):
            names, p = _batch(seed, 50, CLASSES)
            assert c.log(name, names, p).accepted_samples == 50
            all_names.append(names)
            all_p.append(p)
        assert get_stream.calls == 1
        c.log(name, [0, 1], all_p[0][:2])  # indices need no classes
        assert get_stream.calls == 1
    _assert_mapped(
        client, name, np.r_[np.concatenate(all_names), ["cat", "dog"]],
        np.concatenate([*all_p, all_p[0][:2]]), CLASSES,
    )  # fmt: skip


def test_named_labels_of_log_labels_fetch_the_classes_once(server, client, name):
    client.create_stream(name, "multiclass", CLASSES, resolution="exact")
    names, p = _batch(1, 60, CLASSES)
    ids = [f"id-{i}" for i in range(60)]
    client.log_predictions(name, ids, p)
    with EvalClient(server.target) as c:
        get_stream = _count_get_stream(c)
        matched = sum(
            c.log_labels(name, ids[i : i + 10], names[i : i + 10]).matched for i in range(0, 60, 10)
        )
        assert (matched, get_stream.calls) == (60, 1)
    _assert_mapped(client, name, names, p, CLASSES)


def test_a_stream_created_again_by_another_client_maps_with_the_new_classes(server, client, name):
    client.create_stream(name, "multiclass", CLASSES)
    with EvalClient(server.target) as c:
        get_stream = _count_get_stream(c)
        c.log(name, *_batch(1, 40, CLASSES))
        c.log(name, *_batch(2, 40, CLASSES))
        assert get_stream.calls == 1

        # The same names in another order: nothing unknown to the cached list, so only the
        # sequence gap the new stream answers tells the client to map the names again.
        reordered = ["eel", "cat", "dog"]
        client.delete_stream(name)
        client.create_stream(name, "multiclass", reordered)
        names, p = _batch(3, 40, reordered)
        result = c.log(name, names, p)
        assert (result.accepted_samples, result.rejected_batches) == (40, 0)
        _assert_mapped(client, name, names, p, reordered)
        assert get_stream.calls == 2

        # A name the cached list lacks fetches the classes again (then the gap does once more).
        grown = ["eel", "cat", "dog", "fox"]
        client.delete_stream(name)
        client.create_stream(name, "multiclass", grown)
        names, p = _batch(4, 40, grown)
        assert "fox" in names
        assert c.log(name, names, p).accepted_samples == 40
        _assert_mapped(client, name, names, p, grown)

        # Fewer classes; a name that is gone is refused before anything is sent.
        client.delete_stream(name)
        client.create_stream(name, "multiclass", ["dog", "eel"])
        with pytest.raises(ValueError, match=r"unknown names \['cat'\]"):
            c.log(name, ["dog", "cat"], np.full((2, 2), 0.5, np.float32))
        assert client.get_stream(name).sample_count == 0


def test_a_stream_created_again_by_the_same_client_maps_with_the_new_classes(client, name):
    client.create_stream(name, "multiclass", CLASSES)
    get_stream = _count_get_stream(client)
    client.log(name, *_batch(5, 30, CLASSES))
    client.delete_stream(name)
    reordered = ["dog", "eel", "cat"]
    client.create_stream(name, "multiclass", reordered)
    names, p = _batch(6, 30, reordered)
    client.log(name, names, p)
    _assert_mapped(client, name, names, p, reordered)
    assert get_stream.calls == 2  # create_stream dropped the cached list
