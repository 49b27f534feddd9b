"""Delivery and error rates as bar charts drawn on the server (SVG): no chart library, no script.

A chart is plain numbers for ``templates/_chart.html``: one stacked bar per time
bucket, succeeded attempts below failed ones, scaled to the busiest bucket, with a
time axis (a few labelled ticks, UTC) under the bars and the busiest bucket's count
beside them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

WIDTH, HEIGHT = 600, 120
SMALL_WIDTH, SMALL_HEIGHT = 300, 60
AXIS = 16        # pixels under the bars for the time labels
TICKS = 6        # labelled ticks on the time axis, about


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
class Tick:
    x: float
    label: str


@dataclass
class Chart:
    title: str
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    peak: int = 0
    succeeded: int = 0
    failed: int = 0
    width: int = WIDTH
    height: int = HEIGHT     # of the bars; the axis is drawn under them

    @property
    def error_rate(self) -> str:
        tried = self.succeeded + self.failed
        return f"{self.failed / tried:.1%}" if tried else "no attempts"

    @property
    def full_height(self) -> int:
        return self.height + AXIS


def chart(timeline: list[tuple[float, int, int]], since: float, now: float, bucket: float, title: str,
          small: bool = False) -> Chart:
    """``timeline`` (bucket start, succeeded, failed) from the store, every bucket since ``since`` drawn."""
    width, height = (SMALL_WIDTH, SMALL_HEIGHT) if small else (WIDTH, HEIGHT)
    by_start = {start: (ok, failed) for start, ok, failed in timeline}
    first = since - since % bucket
    count = int((now - first) // bucket) + 1
    peak = max((ok + failed for ok, failed in by_start.values()), default=0)
    slot = width / count
    result = Chart(title, peak=peak, succeeded=sum(ok for ok, _ in by_start.values()),
                   failed=sum(f for _, f in by_start.values()), width=width, height=height)
    scale = (height - 4) / peak if peak else 0
    for index in range(count):
        start = first + index * bucket
        ok, failed = by_start.get(start, (0, 0))
        result.bars.append(Bar(round(index * slot, 2), round(max(slot - 1, 1), 2), ok, failed,
                               round(ok * scale, 2), round(failed * scale, 2), start))
    every = max(1, round(count / (TICKS if not small else TICKS // 2)))
    room = 70 if bucket >= 3600 else 36   # pixels a label takes: none starts where it would be cut off
    for index in range(0, count, every):
        if index * slot <= width - room:
            result.ticks.append(Tick(round(index * slot, 2), _label(first + index * bucket, bucket)))
    return result


def _label(moment: float, bucket: float) -> str:
    when = datetime.fromtimestamp(moment, UTC)
    return when.strftime("%H:%M") if bucket < 3600 else when.strftime("%m-%d %H:%M")
