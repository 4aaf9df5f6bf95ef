"""One report for a task that ran as shards: what ``summarize_task.ipynb`` computes.

The notebook gets every shard's ``predictions.json`` (staged read-only as ``<input_dir>/NNNN.json``)
and a table of the shards (``shards_file``: resource, host, device, images, images/s, duration,
state, the shard's own report). :func:`summarize` reads the shards one at a time and never holds
the task's predictions: it streams the whole-task ``predictions.json`` and ``predictions.csv``
to the output directory as it goes, and keeps only counts, a score histogram and the least
certain images (a bounded heap). A task of a million images costs the memory of one shard.

The images themselves stay on the shards' hosts, so each shard's notebook leaves small
thumbnails of its least certain images (``thumbnails.json``, staged as
``<input_dir>/thumbnails/NNNN.json``); the task's least certain images are among those, and the
report shows each with its picture.

Standard library only (Pillow only where thumbnails are made, never here): the notebook adds
the figures, the tests call this directly.
"""

from __future__ import annotations

import csv
import errno
import heapq
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_to_data.contract.files import discard, located
from compute_to_data.contract.results import STAGED_THUMBNAILS_DIR, read_thumbnails
from compute_to_data.notebook.thumbnails import img_html

#: bins of the score histogram over [0, 1]
BINS = 20


@dataclass
class ShardRow:
    """One line of the shards table."""

    shard: str
    resource: str = ""
    host: str = ""
    device: str = ""
    images: int = 0
    images_per_second: float | None = None
    seconds: float | None = None
    state: str = ""
    report: str = ""
    predictions: int = 0


@dataclass
class Summary:
    task_id: str
    images: int = 0
    classified: int = 0
    unreadable: int = 0
    below_threshold: int = 0
    counts: Counter = field(default_factory=Counter)
    score_sums: dict[str, float] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * BINS)
    #: (score, file, class, runner-up, its score, below threshold), lowest score first
    least_certain: list[tuple[float, str, str, str, float, bool]] = field(default_factory=list)
    shards: list[ShardRow] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    #: file -> thumbnail (a base64 PNG data URI) of the least certain images that have one
    thumbnails: dict[str, str] = field(default_factory=dict)

    def class_rows(self) -> list[tuple[str, int, str, str]]:
        """(class, images, share, mean score), most frequent first."""
        rows = []
        for label, n in sorted(self.counts.items(), key=lambda item: (-item[1], item[0])):
            share = f"{100 * n / self.classified:.1f} %" if self.classified else "-"
            rows.append((label, n, share, f"{self.score_sums.get(label, 0.0) / n:.3f}"))
        return rows


def read_shards_table(path: Path) -> list[ShardRow]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = []
    for item in doc.get("shards", []):
        known = {k: item[k] for k in ShardRow.__dataclass_fields__ if k in item}
        rows.append(ShardRow(**known))
    return rows


def _entries(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    images = doc.get("images", []) if isinstance(doc, dict) else []
    return doc, [e for e in images if isinstance(e, dict) and isinstance(e.get("file"), str)]


def _best(entry: dict[str, Any]) -> tuple[str, float, str, float] | None:
    try:
        ranked = entry["classifications"]
        best = ranked[0]
        second = ranked[1] if len(ranked) > 1 else {"class": "", "score": 0.0}
        return str(best["class"]), float(str(best["score"])), str(second["class"]), float(str(second["score"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


class _JsonArrayWriter:
    """``{"task_id": ..., ..., "images": [`` then one entry at a time, then ``]}``: never the whole list."""

    def __init__(self, path: Path, head: dict[str, Any]) -> None:
        self.tmp = path.with_name(path.name + ".tmp")
        self.path = path
        self.out = open(self.tmp, "w", encoding="utf-8")
        text = json.dumps({**head, "images": []}, indent=1)
        self.out.write(text[: text.rindex("[") + 1] + "\n")
        self.first = True

    def add(self, entry: dict[str, Any]) -> None:
        self.out.write(("" if self.first else ",\n") + json.dumps(entry, separators=(",", ":")))
        self.first = False

    def abandon(self) -> None:
        """After a failed write: close quietly (flushing may fail again) and remove the file."""
        try:
            self.out.close()
        except OSError:
            pass
        discard(self.tmp)

    def close(self) -> None:
        self.out.write("\n ]\n}\n")
        self.out.close()
        os.replace(self.tmp, self.path)


def shard_files(input_dir: Path) -> Iterator[tuple[str, Path]]:
    """(shard number, its predictions file), in shard order."""
    for path in sorted(Path(input_dir).glob("*.json")):
        yield path.stem, path


def summarize(input_dir: Path, output_dir: Path, shards_file: Path | None, task_id: str,
              least_certain: int = 15) -> Summary:
    """Read every shard's predictions once; write the task's ``predictions.json`` and ``.csv``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(task_id)
    rows = {row.shard: row for row in (read_shards_table(shards_file) if shards_file else [])}
    heap: list[tuple[float, str, str, str, float, bool]] = []  # max-heap of the lowest scores (negated)
    writer: _JsonArrayWriter | None = None
    pictures: dict[str, str] = {}  # thumbnails of the images in the heap (a shard's, once read)
    csv_tmp = out / "predictions.csv.tmp"
    try:
        with open(csv_tmp, "w", encoding="utf-8", newline="") as csv_file:
            table = csv.writer(csv_file, lineterminator="\n")
            table.writerow(["path", "class", "score", "top_k"])
            for number, path in shard_files(input_dir):
                doc, entries = _entries(path)
                if writer is None:
                    head: dict[str, Any] = {k: doc.get(k) for k in ("model", "labels", "top_k", "score_threshold") if k in doc}
                    summary.labels = list(doc.get("labels") or [])
                    writer = _JsonArrayWriter(out / "predictions.json", {"task_id": task_id, **head})
                rows.setdefault(number, ShardRow(number)).predictions = len(entries)
                pictures.update(read_thumbnails(Path(input_dir) / STAGED_THUMBNAILS_DIR / f"{number}.json"))
                for entry in entries:
                    writer.add(entry)
                    summary.images += 1
                    best = None if entry.get("error") else _best(entry)
                    if best is None:
                        summary.unreadable += 1
                        table.writerow([entry.get("path", entry["file"]), "", "", ""])
                        continue
                    label, score, second, second_score = best
                    below = bool(entry.get("below_threshold"))
                    summary.classified += 1
                    summary.below_threshold += below
                    summary.counts[label] += 1
                    summary.score_sums[label] = summary.score_sums.get(label, 0.0) + score
                    summary.histogram[min(BINS - 1, max(0, int(score * BINS)))] += 1
                    item = (-score, entry["file"], label, second, second_score, below)
                    if len(heap) < least_certain:
                        heapq.heappush(heap, item)
                    elif item > heap[0]:
                        heapq.heapreplace(heap, item)
                    ranked = ";".join(f"{c['class']}:{float(c['score']):.4f}" for c in entry["classifications"])
                    table.writerow([entry.get("path", entry["file"]), label, f"{score:.4f}", ranked])
                kept = {item[1] for item in heap}
                pictures = {f: uri for f, uri in pictures.items() if f in kept}  # memory: one shard's at most
        os.replace(csv_tmp, out / "predictions.csv")
        if writer is None:
            writer = _JsonArrayWriter(out / "predictions.json", {"task_id": task_id})
        writer.close()
    except OSError as exc:  # leave no temporary file behind; a full disk says where
        discard(csv_tmp)
        if writer is not None:
            writer.abandon()
        if exc.errno == errno.ENOSPC:
            raise located(exc, out / "predictions.json") from exc
        raise
    summary.least_certain = sorted((-s, f, c, r, rs, b) for s, f, c, r, rs, b in heap)
    summary.thumbnails = {f: pictures[f] for _, f, *_ in summary.least_certain if f in pictures}
    summary.shards = [rows[k] for k in sorted(rows)]
    return summary


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], links: dict[int, int] | None = None,
               markup: Sequence[int] = ()) -> str:
    """A plain HTML table; ``links`` maps a column to the column holding its href (relative);
    the ``markup`` columns hold HTML made by the report itself (a thumbnail), shown as it is;
    every other value is escaped."""
    import html

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text = str(value) if i in markup else html.escape("" if value is None else str(value))
            target = (links or {}).get(i)
            if target is not None and row[target]:
                text = f'<a href="{html.escape(str(row[target]))}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def shard_table_rows(summary: Summary) -> list[tuple[Any, ...]]:
    """(shard, resource, host, device, images, images/s, duration, state, report link)."""
    rows = []
    for row in summary.shards:
        rate = f"{row.images_per_second:.1f}" if row.images_per_second else ""
        seconds = f"{row.seconds:.1f} s" if row.seconds is not None else ""
        rows.append((row.shard, row.resource, row.host, row.device, row.images, rate, seconds, row.state, row.report))
    return rows


def least_certain_rows(summary: Summary, picture: Any = None) -> list[tuple[Any, ...]]:
    """(thumbnail, file, class, score, runner-up, its score, below threshold) of the least certain
    images; ``picture(uri, alt)`` makes the thumbnail's HTML (default: none)."""
    rows = []
    for score, file, label, second, second_score, below in summary.least_certain:
        uri = summary.thumbnails.get(file)
        shown = picture(uri, file) if picture is not None and uri else ""
        rows.append((shown, file, label, f"{score:.3f}", second, f"{second_score:.3f}", "yes" if below else ""))
    return rows


LEAST_CERTAIN_HEADER = ("image", "file", "class", "score", "runner-up", "its score", "below threshold")


def text_report(summary: Summary) -> str:
    """A minimal HTML report of the summary (what a test runner writes instead of the notebook's)."""
    parts = [
        f"<h1>Task {summary.task_id}</h1>",
        f"<p>{summary.images} images: {summary.classified} classified, {summary.unreadable} unreadable, "
        f"{summary.below_threshold} below the score threshold</p>",
        html_table(["class", "images", "share", "mean score"], summary.class_rows()),
        html_table(LEAST_CERTAIN_HEADER, least_certain_rows(summary, img_html), markup=(0,)),
        html_table(["shard", "resource", "host", "device", "images", "images/s", "duration", "state", "report"],
                   shard_table_rows(summary), links={0: 8}),
    ]
    return "<html><body>" + "\n".join(parts) + "</body></html>\n"
