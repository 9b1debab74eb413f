"""``evalstream demo``: a live, self-contained tour on the embedded default.

Starts a server in this process, streams a 3-class, imbalanced, CNN-like prediction stream in
which the minority class degrades over time, and prints the live report every few seconds with
the Prometheus URL. The same predictions also go to a second stream the production way: logged
at once under request ids (label-free figures, prior shift against the 5-minute window), their
labels ``LABEL_DELAY`` seconds later, and one in ten never. Ends by itself after ``duration``
seconds unless ``forever``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np

from .server import ServerThread
from .settings import Settings

__all__ = ["run_demo", "DemoStream"]

CLASSES = ("car", "truck", "bicycle")
PREVALENCE = np.array([0.70, 0.25, 0.05])
DELAYED = "demo-delayed"
LABEL_DELAY = 2.0  # seconds between a prediction and its label in the delayed stream
UNLABELLED_SHARE = 0.1


class DemoStream:
    """Seeded CNN-like softmax outputs; the minority class's signal fades with ``progress``."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int, progress: float) -> tuple[np.ndarray, np.ndarray]:
        y = self.rng.choice(len(CLASSES), size=n, p=PREVALENCE)
        logits = self.rng.normal(size=(n, len(CLASSES))) * 1.5
        signal = np.array([4.0, 3.5, 4.0 * max(0.0, 1.0 - 1.2 * progress)])
        logits[np.arange(n), y] += signal[y]
        # a degrading minority class is mistaken for the majority class
        fading = y == 2
        logits[fading, 0] += 2.5 * progress
        return y, logits


def _summary(report) -> str:
    r = report.to_dict()
    recall = r["recall"]["per_class"]
    auc = r["roc_auc"]
    parts = [
        f"n={r['n_samples']:>7}",
        f"AUC micro {auc['micro']['value'] or 0:.3f} macro {auc['macro']['value'] or 0:.3f}",
        "recall "
        + " ".join(
            f"{c} {recall[c]['value'] if recall[c]['value'] is not None else 0:.2f}"
            for c in CLASSES
        ),
    ]
    return " | ".join(parts)


def _delayed_summary(report) -> str:
    r = report.to_dict()
    labels, free = r["labels"], r["label_free"]
    share = labels["labelled_share"]["value"]
    delay = labels["delay_seconds"]["p50"]["value"]
    psi = free["prior_shift"]["psi"]["value"]
    bicycle = free["predicted_prevalence"]["argmax"]["bicycle"]["value"]
    return " | ".join(
        [
            f"labelled {share or 0:.0%}",
            f"awaiting {labels['stream'].get('pending', 0):>5}",
            f"delay p50 {delay or 0:.1f}s",
            f"predicted bicycle {bicycle or 0:.3f}",
            f"PSI vs 5m {psi or 0:.4f}",
        ]
    )


def run_demo(
    duration: float = 30.0,
    forever: bool = False,
    rate: int = 20000,
    report_every: float = 3.0,
    grpc_port: int = 0,
    metrics_port: int = 9464,
    data_dir: str = "",
    echo: Callable[[str], None] = print,
) -> dict:
    """Run the demo; returns the final cumulative report (canonical dict)."""
    import tempfile

    from evalstream import EvalClient

    scratch = None
    if not data_dir:  # the embedded default: the durable SQLite store, here in a scratch dir
        scratch = tempfile.TemporaryDirectory(prefix="evalstream-demo-")
        data_dir = scratch.name
    settings = Settings.from_env(
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        data_dir=data_dir,
        log_format="text",
        log_level="WARNING",
    )
    try:
        server = ServerThread(settings).start()
    except OSError:
        if metrics_port <= 0:
            raise
        echo(f"port {metrics_port} is busy; serving /metrics on a free port instead")
        server = ServerThread(
            Settings.from_env(
                grpc_port=grpc_port, metrics_port=0, data_dir=data_dir, log_level="WARNING"
            )
        ).start()
    stream = DemoStream(seed=7)
    try:
        with EvalClient(server.target) as client:
            client.create_stream(
                "demo", task="multiclass", classes=CLASSES, scores="logits", windows=("30s", "5m")
            )
            client.create_stream(
                DELAYED,
                task="multiclass",
                classes=CLASSES,
                scores="logits",
                windows=("30s", "5m"),
                prior_reference="5m",
            )
            awaiting: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
            label_rng = np.random.default_rng(11)
            sent = 0
            echo(
                f"evalstream demo: gRPC on {server.target}, Prometheus metrics on "
                f"http://{settings.metrics_host}:{server.metrics_port}/metrics"
            )
            echo(
                "streaming a 3-class imbalanced stream (car 70%, truck 25%, bicycle 5%); "
                "the bicycle class degrades over time"
            )
            start = time.monotonic()
            next_report = start + report_every
            tick = 0.25
            while True:
                elapsed = time.monotonic() - start
                if not forever and elapsed >= duration:
                    break
                progress = (
                    min(1.0, elapsed / max(duration, 1e-9))
                    if not forever
                    else (elapsed % 300) / 300
                )
                y, logits = stream.batch(max(1, int(rate * tick)), progress)
                client.log("demo", y, logits)
                ids = np.array([f"req-{sent + i}" for i in range(len(y))], dtype=object)
                sent += len(y)
                client.log_predictions(DELAYED, ids, logits)  # labels come later
                awaiting.append((time.monotonic(), ids, y))
                while awaiting and awaiting[0][0] <= time.monotonic() - LABEL_DELAY:
                    _, old_ids, old_y = awaiting.popleft()
                    keep = label_rng.random(len(old_y)) >= UNLABELLED_SHARE
                    client.log_labels(DELAYED, old_ids[keep], old_y[keep])
                now = time.monotonic()
                if now >= next_report:
                    echo(
                        f"[{elapsed:5.1f}s] window 30s  | {_summary(client.report('demo', '30s'))}"
                    )
                    echo(
                        f"         delayed 30s | {_delayed_summary(client.report(DELAYED, '30s'))}"
                    )
                    next_report = now + report_every
                time.sleep(max(0.0, tick - (time.monotonic() - now)))
            final = client.report("demo")
            echo("")
            echo(final.classification_report())
            gap = final.to_dict()["imbalance"]["micro_macro_auc_gap"]["value"]
            echo(
                f"\nmicro - macro ROC AUC gap: {gap:+.4f} (the majority class hides the "
                "failing minority)"
                if gap is not None
                else ""
            )
            return final.to_dict()
    finally:
        server.stop()
        if scratch is not None:
            scratch.cleanup()
