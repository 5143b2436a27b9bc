"""Measurements that need a fresh process: cold start, the dashboard's first map, memory.

Each runs a small script with ``python -c`` (or Streamlit) in a child process, so
nothing imported or cached by the benchmark itself helps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

COLD_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(2)
import xai_core as xc
t1 = time.perf_counter()
model = xc.load_model("efficientnet_lite0")
t2 = time.perf_counter()
image = xc.read_image("samples/imagenet/cat_dog.png")
exp = xc.explain(model, image, method="grad_cam", top_k=5)
t3 = time.perf_counter()
picture = xc.render_fused(exp, exp.fused())
t4 = time.perf_counter()
assert picture.shape == (224, 224, 3)
print("RESULT", json.dumps({"import": t1 - t0, "load": t2 - t1, "explain": t3 - t2, "render": t4 - t3}))
"""

APPTEST_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(2)
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=300)
at.run()
t1 = time.perf_counter()
at.switch_page("pages/classification.py")
at.run()
t2 = time.perf_counter()
images = at.get("image")
fused = sum("FM-G-CAM fused map" in repr(getattr(e, "proto", e)) for e in images)
images = len(images)
errors = [str(e.value)[:200] for e in at.exception]
print("RESULT", json.dumps({"home": t1 - t0, "classification": t2 - t1, "images": images, "fused": fused,
                           "errors": errors}))
"""

MEMORY_SCRIPT = r"""
import gc, glob, json, sys, time
import torch
torch.set_num_threads(2)
import xai_core as xc

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def peak_mib():
    # VmHWM: this process's own high-water mark. (ru_maxrss is not: Linux carries the
    # parent's resident size at fork over into the child across exec.)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

repeats = int(sys.argv[1])
files = sorted(glob.glob("samples/imagenet/*"))[:10]
pictures = [xc.read_image(f) for f in files]
base = rss_mib()
models = [xc.load_model("efficientnet_lite0"), xc.load_model("resnet50", weights=None),
          xc.load_model("densenet121", weights=None)]
loaded = rss_mib()
for m in models:
    for p in pictures:
        exp = xc.explain(m, p, method="grad_cam", top_k=5)
        xc.render_fused(exp, exp.fused())
after_ten = rss_mib()
series = []
for i in range(repeats):
    for m in models:
        exp = xc.explain(m, pictures[i % len(pictures)], method="grad_cam", top_k=5)
        xc.render_fused(exp, exp.fused())
    gc.collect()
    series.append(rss_mib())
peak = peak_mib()
print("RESULT", json.dumps({"base": base, "loaded": loaded, "after_ten": after_ten, "peak": peak, "series": series}))
"""


def _child(code: str, root: Path, *args: str, timeout: float = 600) -> tuple[float, dict | str]:
    """Run ``python -c code`` in ``root``; wall seconds and the RESULT json (or the error text)."""
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return wall, json.loads(line[7:])
    return wall, (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _streamlit_health(root: Path, timeout: float = 120) -> float | str:
    """Seconds from ``streamlit run app.py`` to a 200 from ``/_stcore/health``."""
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                return f"streamlit exited with {proc.returncode}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.2)
        return f"no health answer in {timeout:.0f} s"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cold_start(root: Path, *, dashboard: bool = True) -> dict:
    """Rows ``(label, seconds or reason, target)``."""
    rows = []
    wall, res = _child(COLD_SCRIPT, root)
    if isinstance(res, dict):
        rows.append(
            ("python -c: import xai_core + load_model + explain (K=5) + render_fused, process wall", wall, "<= 15 s")
        )
        rows += [(f"  of which {k}", v, "") for k, v in res.items()]
    else:
        rows.append(("python -c cold start", f"failed: {res}", "<= 15 s"))
    if dashboard and (root / "app.py").exists():
        wall, res = _child(APPTEST_SCRIPT, root)
        if isinstance(res, dict) and not res["errors"] and res["fused"] > 0:
            rows.append(
                (
                    f"dashboard via AppTest: app.py + Classification page to its first map "
                    f"({res['fused']} fused map, {res['images']} images shown), process wall",
                    wall,
                    "<= 15 s",
                )
            )
            rows.append(("  of which home page", res["home"], ""))
            rows.append(("  of which Classification page (model load, explain, render)", res["classification"], ""))
        else:
            detail = res if isinstance(res, str) else f"{res['images']} images, no fused map, errors {res['errors']}"
            rows.append(("dashboard via AppTest", f"no map shown: {detail} ({wall:.1f} s)", "<= 15 s"))
        health = _streamlit_health(root)
        rows.append(("`streamlit run app.py` until /_stcore/health answers (server only, no session)", health, ""))
    return {"rows": rows}


def memory(root: Path, repeats: int = 30) -> dict:
    """Peak RSS with three models and ten images each, and RSS after each further round."""
    _, res = _child(MEMORY_SCRIPT, root, str(repeats))
    if isinstance(res, str):
        return {"rows": [("memory run", f"failed: {res}")]}
    s = res["series"]
    half = len(s) // 2
    rows = [
        ("RSS after import (before models)", f"{res['base']:.0f}"),
        ("RSS with EfficientNet-Lite0, ResNet50, DenseNet121 loaded", f"{res['loaded']:.0f}"),
        ("RSS after 10 images x 3 models explained (K=5) and rendered", f"{res['after_ten']:.0f}"),
        ("peak RSS over the whole run (VmHWM)", f"{res['peak']:.0f}"),
        (
            f"RSS over {len(s)} further rounds (3 explanations each): first / middle / last",
            f"{s[0]:.0f} / {s[half]:.0f} / {s[-1]:.0f}",
        ),
        ("growth over the second half of the rounds", f"{s[-1] - s[half]:+.1f}"),
    ]
    return {"rows": rows, **res}
