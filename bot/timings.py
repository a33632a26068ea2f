"""What a reply says about speed: each engine's timing on this photo, rendered as the caption's text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from runtime.engines import LITERT, TVM_DEFAULT, TVM_TUNED, engine_label
from runtime.ratios import in_words

from .engines import EngineSet
from .published import PublishedLatency

# measured: timed on this photo; measuring: queued on the timing lane (the answering engine keeps its reply's
# figure meanwhile); published: the benchmark's p50 is quoted instead; failed: the timing run raised;
# skipped: not timed (backlog full, reply not delivered, stop)
TimingState = Literal["measured", "measuring", "published", "failed", "skipped"]


@dataclass
class Timing:
    ms: float | None = None  # measured inference time on this photo
    state: TimingState = "measured"
    contended: bool = False  # another request ran during the measurement
    runs: int = 1  # ms is the median of this many runs
    lane: Literal["reply", "timing"] = "reply"  # where it was timed: ratios compare timings of one lane only


@dataclass
class TimingReport:
    engines: EngineSet
    threads: int
    published: PublishedLatency
    timings: dict[str, Timing] = field(default_factory=dict)  # in display order: the answering engine first

    def measuring(self) -> list[str]:
        """Engines still to be timed on this photo by the timing lane."""
        return [n for n, t in self.timings.items() if t.state == "measuring"]

    def published_ms(self, name: str) -> float | None:
        """The benchmark's p50 for this engine, only if it was measured on the library this engine runs
        (a TVM library is built for one target; the report is for this machine's own)."""
        meta = getattr(self.engines.segmenters[name].engine, "metadata", None)
        if meta is not None and meta.target_spec.id != self.published.target_id:
            return None
        return self.published.p50.get((name, self.threads))

    def text(self) -> str:
        parts = []
        for name, t in self.timings.items():
            label = engine_label(name)
            if t.state == "measured":
                notes = [f"median of {t.runs}"] * (t.runs > 1) + ["while busy"] * t.contended
                parts.append(f"{label} {t.ms:.0f} ms" + (f" ({', '.join(notes)})" if notes else ""))
            elif t.state == "measuring" and t.ms is not None:  # the answering engine, timed again beside the others
                parts.append(f"{label} {t.ms:.0f} ms (this reply; timing it again beside the others)")
            elif t.state == "measuring":
                parts.append(f"{label} … (timing it now)")
            elif t.state == "published":
                parts.append(f"{label} ~{self.published_ms(name):.0f} ms (benchmark p50 of "
                             f"{self.published.date or '?'}; too many photos queued to time it now)")
            elif t.state == "failed":
                parts.append(f"{label} failed")
            else:
                parts.append(f"{label} not timed (too many photos queued)")
        first = next(iter(self.timings))
        lines = [f"{self.engines.spec.name}, {self.threads} threads each: " + " · ".join(parts),
                 f"(answered by {engine_label(first)}, the fastest at start-up)"]
        # The caption's ratios compare the timing lane's interleaved medians only, never a reply's single run.
        ms = {n: t.ms for n, t in self.timings.items() if t.state == "measured" and t.ms and t.lane == "timing"}
        for other in (LITERT, TVM_DEFAULT):  # one direction, as in the reports: tuned / other, said in words
            if TVM_TUNED in ms and other in ms:
                lines.append(in_words(ms[TVM_TUNED] / ms[other], engine_label(TVM_TUNED), engine_label(other)))
        for name in self.timings:
            meta = getattr(self.engines.segmenters[name].engine, "metadata", None)
            if warning := getattr(meta, "tuning_warning", None):
                lines.append(f"{engine_label(name)}: {warning}")
        if self.engines.unavailable:
            lines.append(f"({', '.join(engine_label(n) for n in self.engines.unavailable)} not available here)")
        quoted = [f"{engine_label(n)} {self.published_ms(n):.0f} ms" for n in self.timings
                  if self.published_ms(n) is not None]
        if quoted:
            lines.append(f"benchmark p50 ({self.published.target_id}, {self.published.date}): " + " · ".join(quoted))
        if notice := self.engines.spec.synthetic_notice:
            lines.append(f"⚠️ {notice}")
        return "\n".join(lines)


@dataclass
class Result:
    images: list[tuple[bytes, str]]  # (encoded image, caption); the report goes under the last one
    report: TimingReport
    rgb: np.ndarray  # the photo, kept for the background timings of the other engines
