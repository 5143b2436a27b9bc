"""The short load test: 8 concurrent browser sessions for about 60 s of steps (``benchmarks/load_test.py``).

Each session uploads a different sample image on the classification page and keeps
changing K, activation and method. Asserts: no errors, no session ever shows another
session's image or result, every result equals xai_core's single run on that image, and
the server's peak resident memory stays under ``RSS_BOUND_MB``. Skipped without Chromium
or the playwright package. The full run: ``python -m benchmarks.load_test`` (see
docs/hardening.md for its numbers).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import load_test

# 8 Chromium sessions against a real server for a minute: outside the fast loop.
pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (set CHROMIUM=/path/to/chromium)", allow_module_level=True)
pytest.importorskip("playwright.async_api", reason="the playwright package is not installed (pip install playwright)")
pytest.importorskip("streamlit")


SESSIONS = 8
DURATION_S = float(os.environ.get("XAI_LOAD_SECONDS", "60"))
#: Peak RSS of the server (all its processes) allowed during the short run. Measured peaks
#: are about 1.1-1.3 GB (torch, one EfficientNet-Lite0, Streamlit, 8 sessions' caches);
#: 3 GB leaves room for slower machines but catches a cache or session leak.
RSS_BOUND_MB = 3072


def test_concurrent_sessions(tmp_path: Path) -> None:
    summary = load_test.run(sessions=SESSIONS, duration=DURATION_S, log_dir=tmp_path)
    problems = [
        (s["image"], s["errors"][:3], s["mismatches"][:3])
        for s in summary["per_session"]
        if s["errors"] or s["mismatches"]
    ]
    assert summary["errors"] == 0, problems
    assert summary["mismatches"] == 0, problems
    assert summary["server_alive_at_end"], f"the server died; see {summary['log']}"
    assert all(s["iterations"] >= 2 for s in summary["per_session"]), summary["per_session"]
    assert summary["rss_peak_mb"] < RSS_BOUND_MB, summary
