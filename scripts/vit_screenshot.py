"""README screenshot of a vision transformer in the dashboard, with no downloaded weights.

Pretrained ViT weights cannot be downloaded here, so the transformer shown is the tiny
ViT of the synthetic benchmark (:func:`xai_core.trust.synthetic.train_tiny_vit`, the
recipe of ``python -m benchmarks.ground_truth --vit``: 4,000 images, 8 epochs, seed 0):

1. train it, save its ``state_dict`` as a ``.safetensors`` file and a test image it
   classifies right as a PNG (``artifacts/vit_screenshot/``);
2. serve the unchanged ``app.py`` with one addition made through the public API
   (README, "Another architecture"), by a ``sitecustomize`` on the server's path:
   ``xc.register`` of a :class:`ModelSpec` whose ``build`` is timm's ``VisionTransformer``
   with that architecture and no default weights;
3. in Chromium at 1366x768: pick that model, choose "A local weights file" and upload
   the ``.safetensors`` file (the dashboard's offline loading path), upload the image,
   pick the base method and screenshot the classification page.

Run: ``python -m scripts.vit_screenshot [--method hires_cam] [--copy]`` (``--copy`` puts
the PNG in ``docs/screenshots/``). Look at the PNG before using it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "artifacts" / "vit_screenshot"
WEIGHTS = OUT / "tiny_vit_synthetic.safetensors"
KEY = "synthetic_tiny_vit"
LABEL = "Tiny ViT, synthetic shapes (timm, weights file)"
ARCH = {"img_size": 64, "patch_size": 8, "embed_dim": 48, "depth": 3, "num_heads": 4, "mlp_ratio": 2.0}
WAIT_MS = 300_000


def _build() -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    from xai_core.trust.synthetic import CLASSES

    return VisionTransformer(**ARCH, num_classes=len(CLASSES))


def register() -> None:
    """Add the tiny ViT to the model registry (family ``imagenet``: the classification page lists it)."""
    import xai_core as xc
    from xai_core.models import ModelSpec, Preprocessing
    from xai_core.trust.synthetic import CLASSES

    size = ARCH["img_size"]
    xc.register(
        ModelSpec(
            key=KEY,
            label=LABEL,
            family="imagenet",
            build=partial(_build),
            fetch_weights=None,  # weights only from a file
            preprocessing=Preprocessing("imagenet", (size, size), size, mean=(0.0,) * 3, std=(1.0,) * 3),
            labels=CLASSES,
            default_layer=f"blocks.{ARCH['depth'] - 1}.norm1",
            description="timm VisionTransformer (64 px, 8 px patches, 3 blocks, class token) trained by "
            "xai_core.trust.synthetic.train_tiny_vit on the synthetic shapes benchmark; upload its weights file.",
        ),
        replace=True,
    )


def train_and_save(threads: int) -> Path:
    """Train the tiny ViT, save its weights and the test image to show; returns the image's path."""
    from PIL import Image
    from safetensors.torch import save_file

    from xai_core.trust import synthetic

    OUT.mkdir(parents=True, exist_ok=True)
    x, y, _ = synthetic.make_dataset(4000, seed=0)
    t0 = time.perf_counter()
    model = synthetic.train_tiny_vit(x, y, seed=0, epochs=8, threads=threads)
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    xt, yt, mt = synthetic.make_dataset(200, seed=1)
    print(f"test accuracy {synthetic.accuracy(model, xt, yt):.3f}")
    save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(WEIGHTS))
    probs = model.predict(xt)
    # The test image shown: one with a class object, classified right, the most confidently.
    ok = [i for i in range(len(yt)) if mt[i].any() and int(probs[i].argmax()) == int(yt[i])]
    best = max(ok, key=lambda i: float(probs[i, yt[i]]))
    name = f"synthetic_test_{best:03d}_{synthetic.CLASSES[int(yt[best])].replace(' ', '_')}.png"
    pixels = (xt[best].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype("uint8")
    Image.fromarray(pixels).save(OUT / name)
    print(f"image {name}: p({synthetic.CLASSES[int(yt[best])]}) = {float(probs[best, yt[best]]):.3f}")
    return OUT / name


def _startup(tmp: Path) -> dict:
    """The server's environment: a ``sitecustomize`` in ``tmp`` registers the model when the server starts.

    (A main script that registered and then ran app.py was tried first: the first session's
    model list lacked the model, not investigated further.)
    """
    (tmp / "sitecustomize.py").write_text("from scripts.vit_screenshot import register\n\nregister()\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def shoot(image: Path, method_label: str, path: Path) -> None:
    """Serve the app with the model registered and screenshot the classification page to ``path``."""
    from playwright.sync_api import sync_playwright

    from benchmarks import load_test

    port = load_test.free_port()
    with tempfile.TemporaryDirectory(prefix="vit-app-") as tmp:
        log = open(OUT / "streamlit.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
            + ["--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT,
            env=_startup(Path(tmp)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            load_test.wait_healthy(url, proc, timeout_s=120)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=load_test.CHROMIUM, args=load_test.CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
                page.set_default_timeout(WAIT_MS)
                try:
                    _drive(page, url, image, method_label, path)
                except Exception:
                    page.screenshot(path=str(OUT / "last_state.png"))  # what it saw
                    raise
                browser.close()
        finally:
            load_test.stop_server(proc)
            log.close()


def _drive(page, url: str, image: Path, method_label: str, path: Path) -> None:
    page.goto(f"{url}/classification")
    idle = """() => !document.querySelector('[data-testid="stStatusWidget"]')
              && !document.querySelector('[data-stale="true"]')"""
    page.wait_for_function(idle, timeout=WAIT_MS)
    _select(page, "Model", LABEL, type_text="Tiny ViT")
    page.get_by_text("A local weights file", exact=False).first.click()
    weights = page.locator('[data-testid="stFileUploader"]', has_text="Weights file")
    weights.locator('input[type="file"]').first.set_input_files(str(WEIGHTS))
    upload = page.locator('[data-testid="stFileUploader"]', has_text="Upload an image")
    upload.locator('input[type="file"]').first.set_input_files(str(image))
    shown = image.stem.split("_", 3)[-1].replace("_", " ")  # synthetic_test_<i>_<class>.png
    page.get_by_text(f"Top class: {shown}", exact=False).first.wait_for()
    page.wait_for_function(idle, timeout=WAIT_MS)
    if method_label != "Grad-CAM":
        _select(page, "Base method", method_label, type_text=method_label)
    page.locator('[data-testid="stImage"]', has_text="fused map, top 3").first.wait_for()
    page.wait_for_function(idle, timeout=WAIT_MS)
    bad = page.locator('[data-testid="stException"]')
    if bad.count():
        raise RuntimeError(bad.first.inner_text())
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stImage"] img')]
                 .every(i => i.complete && i.naturalWidth > 0)"""
    )
    page.screenshot(path=str(path))
    # The whole page: Streamlit scrolls inside its own container, so make the viewport as tall as it.
    height = page.evaluate(
        """() => Math.max(document.body.scrollHeight,
                 ...[...document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"]')]
                 .map(e => e.scrollHeight))"""
    )
    page.set_viewport_size({"width": 1366, "height": min(int(height) + 40, 5000)})
    page.wait_for_function(idle, timeout=WAIT_MS)
    page.screenshot(path=str(path.with_name(path.stem + "_full.png")))
    # The README's picture: the main column from the image uploader to the model's caption (the
    # fused map, each class's own map, the predictions), cut from the same tall page.
    main = page.locator('[data-testid="stMainBlockContainer"]').first.bounding_box()
    top = page.get_by_text("Upload an image", exact=False).first.bounding_box()
    bottom = page.get_by_text("classes computed in one pass", exact=False).first.bounding_box()
    y0 = top["y"] - 16
    clip = {"x": main["x"], "y": y0, "width": main["width"], "height": bottom["y"] + bottom["height"] + 16 - y0}
    page.screenshot(path=str(path.with_name(path.stem + "_maps.png")), clip=clip)


def _select(page, label: str, option: str, type_text: str = "") -> None:
    """Choose ``option`` in the select box ``label`` (typing filters its list, which shows only the first options)."""
    page.locator('[data-testid="stSelectbox"]', has_text=label).first.click()
    if type_text:
        page.keyboard.type(type_text)
    page.get_by_role("option", name=option, exact=True).first.click(timeout=60_000)


def main() -> None:
    """Train (or ``--reuse``), then shoot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="HiResCAM", help="the base method's label in the dashboard")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="use the weights and image of the last run")
    parser.add_argument("--copy", action="store_true", help="copy the maps' PNG to docs/screenshots/")
    args = parser.parse_args()
    saved = sorted(OUT.glob("synthetic_test_*.png"))
    image = saved[-1] if args.reuse and saved and WEIGHTS.exists() else train_and_save(args.threads)
    path = OUT / "vit_classification.png"
    shoot(image, args.method, path)
    print(f"screenshot {path}")
    if args.copy:  # the README shows the main column (fused and per-class maps, predictions)
        shutil.copyfile(path.with_name(path.stem + "_maps.png"), ROOT / "docs" / "screenshots" / path.name)


if __name__ == "__main__":
    main()
