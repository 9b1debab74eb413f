"""The report page in a real browser: Debian's headless Chromium opens the HTML that
``report_page`` writes, at two widths, and the tests read what a person sees: screenshots (kept
as test artefacts in the gitignored ``test-artifacts/report-screenshots/``, or
``$EVALSTREAM_TEST_ARTIFACTS``) and the element boxes the browser laid out. Skipped only where
no ``chromium`` is installed and ``CI`` is unset; the project's tool install
(scripts/tools.d/chromium.sh) installs it."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from evalstream.htmlreport import report_page
from evalstream_server.engine import StreamEngine, StreamSpec
from sklearn.metrics import confusion_matrix, roc_auc_score

from .html_pages import CLASSES, parse, three_classes

PIL = pytest.importorskip("PIL.Image")  # pillow comes with matplotlib (the test extra)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing on CI: scripts/install-tools.sh installs it")
    pytest.skip(
        "chromium is not installed (bash scripts/install-tools.sh)", allow_module_level=True
    )

WIDTHS = (1280, 700)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
FIGURES = {  # section id -> the title a person reads above the figure
    "w0-roc": "ROC curves",
    "w0-pr": "Precision-recall curves",
    "w0-confusion": "Confusion matrix: counts and row-normalised",
    "w0-reliability": "Reliability diagram",
    "w0-support": "Support vs predicted share per class",
    "w0-label-free": "Label-free: confidence and prior shift",
}
# Run in a copy of the page only: the page itself has no script. It reports where the browser
# put every figure and whether each window is shown.
PROBE = """<script>
const out = {height: document.documentElement.scrollHeight, boxes: {}, titles: {}};
for (const el of document.querySelectorAll('[id$="-axes"], section.fig, div.window')) {
  const r = el.getBoundingClientRect();
  out.boxes[el.id] = [r.left + scrollX, r.top + scrollY, r.width, r.height];
}
for (const s of document.querySelectorAll('section.fig')) {
  out.titles[s.id] = s.querySelector('h3').innerText;
}
const pre = document.createElement('pre'); pre.id = 'probe';
pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script>"""


def _run(tmp: Path, width: int, height: int, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"  # a new, empty one per start
    shutil.rmtree(profile, ignore_errors=True)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _probe(page: Path, tmp: Path, width: int) -> tuple[dict, str]:
    probed = page.with_name(page.stem + f"-probe-{width}.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _run(tmp, width, 1000, "--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1))), dom


def _screenshot(page: Path, tmp: Path, width: int, height: int) -> np.ndarray:
    shot = tmp / f"{page.stem}-{width}.png"
    _run(tmp, width, min(height, 16000), f"--screenshot={shot}", page.as_uri())
    with PIL.open(shot) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def _near(img: np.ndarray, x: float, y: float, colour: str, radius: int, tol: int = 60) -> bool:
    """Whether a pixel of ``colour`` (within ``tol``, summed over channels) lies within
    ``radius`` pixels of (x, y)."""
    x0, y0 = int(round(x)), int(round(y))
    patch = img[max(y0 - radius, 0) : y0 + radius + 1, max(x0 - radius, 0) : x0 + radius + 1]
    return bool((np.abs(patch - _rgb(colour)).sum(axis=2) < tol).any())


@pytest.fixture(scope="module")
def stream() -> tuple[np.ndarray, np.ndarray, dict]:
    y, p = three_classes()
    engine = StreamEngine(StreamSpec(task="multiclass", classes=tuple(CLASSES)))
    engine.update(y, p)
    return y, p, engine.report(curves=True)


@pytest.fixture(scope="module")
def artefacts() -> Path:
    root = Path(__file__).resolve().parents[2] / "test-artifacts"
    out = Path(os.environ.get("EVALSTREAM_TEST_ARTIFACTS", root)) / "report-screenshots"
    shutil.rmtree(out, ignore_errors=True)  # this run's pages and screenshots only
    out.mkdir(parents=True)
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_what_a_person_sees(stream, artefacts, width):
    y, p, report = stream
    page = artefacts / "report.html"
    page.write_text(report_page([report]))
    probe, dom = _probe(page, artefacts, width)
    img = _screenshot(page, artefacts, width, probe["height"])
    print(f"screenshot: {artefacts / f'report-{width}.png'}")

    # not blank: a good share of the page is drawn, in many colours
    drawn = (img.sum(axis=2) < 3 * 245).mean()
    assert drawn > 0.05, drawn
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 50

    # every figure is there, under its title, and has something drawn in it
    for key, title in FIGURES.items():
        assert probe["titles"][key].startswith(title), (key, probe["titles"][key])
        left, top, w, h = probe["boxes"][key]
        assert w > 200 and h > 200, (key, w, h)
        region = img[int(top) : int(top + h), int(left) : int(left + w)]
        assert (region.sum(axis=2) < 3 * 200).mean() > 0.01, key

    # the ROC curve of the perfect class reaches the top-left corner; the others do not
    assert roc_auc_score(y == 0, p[:, 0]) == 1.0  # sklearn: "sure" is separated perfectly
    t = parse(dom)
    colour = {r[0][0]: r[1][0].split()[-1] for r in t.tables["w0-roc-data"][1:]}
    left, top, w, h = probe["boxes"]["w0-roc-axes"]
    corner_x, corner_y = left + w * 0.01 / 1.02, top + h * 0.01 / 1.02  # limits -0.01 to 1.01
    assert _near(img, corner_x, corner_y, colour["sure"], radius=4)
    for other in ("cat", "eel"):
        assert not _near(img, corner_x, corner_y, colour[other], radius=int(0.06 * w)), other

    # the worst class's largest confusion is the darkest off-diagonal cell of the heat map
    share = confusion_matrix(y, p.argmax(axis=1), normalize="true")
    worst = int(np.argmin(np.diag(share)))
    off = share - np.diag(np.diag(share))
    assert np.unravel_index(np.argmax(off), off.shape)[0] == worst  # the data's premise
    left, top, w, h = probe["boxes"]["w0-confusion-row-normalised-axes"]
    k = len(CLASSES)
    darkness = {}
    for i in range(k):
        for j in range(k):
            if i != j:  # a quarter into the cell: clear of the number printed at its centre
                px = img[int(top + (i + 0.25) * h / k), int(left + (j + 0.25) * w / k)]
                darkness[(i, j)] = -int(px.sum())
    darkest = max(darkness, key=darkness.get)
    assert darkest == (worst, int(np.argmax(off[worst]))), darkness

    # the numbers the browser shows equal the report's
    head = {r[0][0]: r for r in t.tables["w0-headline"][1:]}
    for name in CLASSES:
        auc = report["roc_auc"]["per_class"][name]["value"]
        assert float(head[name][6][1]) == auc
        assert float(head[name][6][0]) == pytest.approx(auc, abs=5.1e-5)
        assert float(head[name][11][1]) == report["support"]["per_class"][name]["value"]


def test_the_window_selector_works_without_script(stream, artefacts):
    y, p, report = stream
    half = StreamEngine(StreamSpec(task="multiclass", classes=tuple(CLASSES)))
    half.update(y[:500], p[:500])
    second = dict(half.report(curves=True), window="5m")
    page = artefacts / "windows.html"
    text = report_page([report, second])
    page.write_text(text)
    probe, dom = _probe(page, artefacts, WIDTHS[0])
    assert probe["boxes"]["win-w0"][3] > 1000 and probe["boxes"]["win-w1"][3] == 0
    assert "500 labelled samples" in dom and "Window 5m" in dom  # in the page, not shown
    picked = artefacts / "windows-5m.html"  # a person clicked "5m": its radio is checked
    picked.write_text(
        text.replace('id="pick-w0" checked>', 'id="pick-w0">').replace(
            'id="pick-w1">', 'id="pick-w1" checked>'
        )
    )
    probe, _ = _probe(picked, artefacts, WIDTHS[0])
    assert probe["boxes"]["win-w0"][3] == 0 and probe["boxes"]["win-w1"][3] > 1000
    img = _screenshot(picked, artefacts, WIDTHS[0], probe["height"])
    assert (img.sum(axis=2) < 3 * 245).mean() > 0.05
    print(f"screenshot: {artefacts / 'windows-5m-1280.png'}")
