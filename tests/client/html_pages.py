"""Streams and parsers shared by the report page tests (tests/client/test_html*.py).

``three_classes`` is built so that a person looking at the page can check it: class ``sure`` is
separated perfectly (its ROC curve goes through the top-left corner), ``eel`` is the worst class
(lowest recall) and most of its errors go to ``cat``."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np

CLASSES = ["sure", "cat", "eel"]


def three_classes(n: int = 2000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.4, 0.4, 0.2])
    p = np.empty((n, 3))
    sure = y == 0
    p[sure] = [0.9, 0.05, 0.05]
    z = rng.normal(np.where(y == 1, 0.4, -0.1), 0.5)  # eel lands on cat's side 42% of the time
    cat = 0.98 / (1 + np.exp(-z))
    p[~sure, 0] = 0.02
    p[~sure, 1] = cat[~sure]
    p[~sure, 2] = 0.98 - cat[~sure]
    return y, p


class Tables(HTMLParser):
    """Every ``<table id=...>`` of a page: ``tables[id] = [[cell, ...], ...]`` where a cell is
    ``(text, data_value)``; header rows are kept as text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.svg_titles: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._value: str | None = None
        self._in_svg_title = False
        self._svg_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "svg":
            self._svg_depth += 1
        if tag == "title" and self._svg_depth:
            self._in_svg_title = True
            self.svg_titles.append("")
        if tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell, self._value = [], a.get("data-value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg_depth -= 1
        if tag == "title":
            self._in_svg_title = False
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append(("".join(self._cell).strip(), self._value))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_svg_title:
            self.svg_titles[-1] += data


def parse(page: str) -> Tables:
    t = Tables()
    t.feed(page)
    return t
