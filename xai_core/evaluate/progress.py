"""Progress people can read: a tqdm bar (rows, rows per second, time left) and a final line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm


class Progress:
    """Counts finished rows on a tqdm bar on stderr (nothing when ``enabled`` is False)."""

    def __init__(self, total: int, *, enabled: bool = True, stream=None) -> None:
        self.total = total
        self.done = 0
        self.errors = 0
        self.start = time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self._bar = tqdm(
            total=total, unit="row", dynamic_ncols=True, file=self.stream, disable=not enabled, smoothing=0.1
        )

    def update(self, rows: list[dict]) -> None:
        """Count finished rows (their errors too) and show the last one's method."""
        self.done += len(rows)
        self.errors += sum(1 for r in rows if r.get("error"))
        if rows:
            self._bar.set_postfix_str(f"{rows[-1]['method']}@{rows[-1]['layer']}, errors {self.errors}", refresh=False)
        self._bar.update(len(rows))

    @property
    def seconds(self) -> float:
        """Time since the start."""
        return time.monotonic() - self.start

    def close(self, out: Path, skipped: int, summary: Path | None = None) -> str:
        """Close the bar and print (and return) the final line."""
        self._bar.close()
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        line = (
            f"Done: {self.done} rows computed ({self.errors} with errors) in {self.seconds:.1f} s "
            f"({rate:.3f} rows/s); {skipped} already done were skipped. Results: {out}"
            + (f" (summary: {summary})" if summary else "")
        )
        if self.enabled:
            print(line, file=self.stream, flush=True)
        return line
