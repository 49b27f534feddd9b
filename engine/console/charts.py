"""Delivery and error rates as bar charts drawn on the server (SVG): no chart library, no script.

A chart is plain numbers for ``templates/_chart.html``: one stacked bar per time
bucket, succeeded attempts below failed ones, scaled to the busiest bucket.
"""
from __future__ import annotations

from dataclasses import dataclass, field

WIDTH, HEIGHT = 600, 120


@dataclass
class Bar:
    x: float
    width: float
    ok: int
    failed: int
    ok_height: float
    failed_height: float
    start: float            # the bucket's start, for its tooltip


@dataclass
class Chart:
    title: str
    bars: list[Bar] = field(default_factory=list)
    peak: int = 0
    succeeded: int = 0
    failed: int = 0
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def error_rate(self) -> str:
        tried = self.succeeded + self.failed
        return f"{self.failed / tried:.1%}" if tried else "no attempts"


def chart(timeline: list[tuple[float, int, int]], since: float, now: float, bucket: float, title: str) -> Chart:
    """``timeline`` (bucket start, succeeded, failed) from the store, every bucket since ``since`` drawn."""
    by_start = {start: (ok, failed) for start, ok, failed in timeline}
    first = since - since % bucket
    count = int((now - first) // bucket) + 1
    peak = max((ok + failed for ok, failed in by_start.values()), default=0)
    slot = WIDTH / count
    result = Chart(title, peak=peak, succeeded=sum(ok for ok, _ in by_start.values()),
                   failed=sum(f for _, f in by_start.values()))
    for index in range(count):
        start = first + index * bucket
        ok, failed = by_start.get(start, (0, 0))
        scale = (HEIGHT - 4) / peak if peak else 0
        result.bars.append(Bar(round(index * slot, 2), round(max(slot - 1, 1), 2), ok, failed,
                               round(ok * scale, 2), round(failed * scale, 2), start))
    return result
