"""The peer libraries, called as their documentation shows, on our model, layer and input.

Each factory returns a :class:`~benchmarks.harness.Case`, or a case whose ``error``
says why the peer cannot run (not installed, import error). Objects that register
hooks are created inside the timed call and released at its end, so no peer's hooks
are left on the model while another case runs.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import torch
from torch import nn

from benchmarks.harness import Case, requires_grad_setup

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM prints a progress bar


def _missing(name: str, err: Exception) -> Case:
    case = Case(name, lambda x: None)
    case.error = f"cannot import ({type(err).__name__}: {err})"
    return case


def pgc_case(model: nn.Module, layer: nn.Module, method: str, *, name: str, batch_size: int | None = None) -> Case:
    """pytorch-grad-cam: ``with Method(model, [layer]) as cam: cam(input_tensor=x, targets=[...])``.

    Gradient methods target the top class (``targets=None`` does the same); Eigen-CAM
    is class-agnostic. Returns the ``[H, W]`` map (upsampled and min-max scaled by the library).
    """
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except Exception as err:  # noqa: BLE001
        return _missing(name, err)
    cls = getattr(pgc, method)

    def run(x: torch.Tensor, c: int | None = None) -> np.ndarray:
        kwargs = {"batch_size": batch_size} if method == "AblationCAM" and batch_size else {}
        with cls(model=model, target_layers=[layer], **kwargs) as cam:
            if method == "ScoreCAM" and batch_size:
                cam.batch_size = batch_size
            targets = None if c is None else [ClassifierOutputTarget(c)]
            return cam(input_tensor=x, targets=targets)[0]  # None: the top class

    def run_gradient(x: torch.Tensor) -> np.ndarray:
        with cls(model=model, target_layers=[layer]) as cam:
            return cam(input_tensor=x, targets=None)[0]  # None = the top class, one forward

    def run_perturbation(x: torch.Tensor) -> np.ndarray:
        # pytorch-grad-cam's Ablation-CAM swaps the layer for its AblationLayer while it
        # runs and does not swap it back when it fails: put the layer back in any case.
        name_of = {m: n for n, m in model.named_modules()}[layer]
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # its tqdm progress bar
                return run(x)
        finally:
            _put_back(model, name_of, layer)

    fn = run_perturbation if method in ("ScoreCAM", "AblationCAM") else run_gradient
    return Case(name, fn, setup=requires_grad_setup(model))


def _put_back(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if getattr(parent, child) is not layer:
        setattr(parent, child, layer)


def torchcam_case(model: nn.Module, layer_name: str, *, name: str = "torchcam Grad-CAM") -> Case:
    """torchcam: ``with GradCAM(model, layer) as cam: out = model(x); cam(class_idx, out)``."""
    try:
        from torchcam.methods import GradCAM
    except Exception as err:  # noqa: BLE001
        return _missing(name, err)

    def run(x: torch.Tensor) -> torch.Tensor:
        with GradCAM(model, target_layer=layer_name, input_shape=tuple(x.shape[1:])) as cam:
            out = model(x)
            return cam(int(out[0].argmax()), out)[0]

    return Case(name, run, setup=requires_grad_setup(model))


def xai_engine_case(model: nn.Module, layer: nn.Module, k: int, *, name: str) -> Case:
    """xai-inference-engine (the FM-G-CAM authors' library): ``FMGCam(model, layer)(img, class_count=k)``.

    Called directly, not through ``XAIInferenceEngine.predict`` (which adds a thread and
    colourising with OpenCV); this is the part that computes the fused map.
    """
    try:
        from xai_inference_engine.services import FMGCam
    except Exception as err:  # noqa: BLE001
        return _missing(name, err)
    gen = FMGCam(model, layer, torch.device("cpu"))

    def run(x: torch.Tensor) -> np.ndarray:
        out = gen(img_tensor=x[0], class_count=k, enhance=True, act_mode="relu")
        while not gen.my_queue.empty():  # it also queues each result for its thread API
            gen.my_queue.get_nowait()
        return out[2]

    return Case(name, run, setup=requires_grad_setup(model))
