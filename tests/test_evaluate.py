"""The batch evaluation command ``python -m xai_core.evaluate`` (xai_core/evaluate.py).

Most tests run the command in-process on a tiny registered model (fast); one runs the
real entry point as a subprocess on two ImageNet samples with EfficientNet-Lite0.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from xai_core.evaluate import COLUMNS, main, row_key

ROOT = Path(__file__).resolve().parents[1]
IMAGENET = ROOT / "samples" / "imagenet"
SAMPLES = ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000015.JPEG")
TINY = "tiny_eval_net"
TINY_LABELS = ("zero", "golden retriever", "two", "three", "four", "five")
FAST = ["--pixels-per-step", "256", "--batch-size", "64", "--quiet"]  # 32x32 input: 5 points per curve


class TinyEvalNet(nn.Module):
    """Seeded conv / max-pool / GAP + linear net; FG-CAM and LRP have a rule for each layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, len(TINY_LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    from xai_core.models.preprocess import Preprocessing
    from xai_core.models.registry import ModelSpec, register

    register(
        ModelSpec(
            key=TINY,
            label="Tiny",
            family="imagenet",
            build=TinyEvalNet,
            fetch_weights=None,
            preprocessing=Preprocessing(kind="imagenet", input_size=(32, 32), resize=36),
            labels=TINY_LABELS,
            default_layer="features.4",
        ),
        replace=True,
    )


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    for name in SAMPLES:
        shutil.copy(IMAGENET / name, d / name)
    return d


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run(folder: Path, out: Path, *extra: str, **kwargs) -> int:
    return main([str(folder), "--model", TINY, "--out", str(out), *FAST, *extra], **kwargs)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None, reason="needs the offline Lite0 weights"
)
def test_command_end_to_end_on_two_samples_with_lite0(folder: Path, tmp_path: Path):
    out = tmp_path / "res" / "eval.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [
        sys.executable,
        "-m",
        "xai_core.evaluate",
        str(folder),
        "--methods",
        "grad_cam,layer_cam",
        "--pixels-per-step",
        "50176",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    got = rows(out)
    assert len(got) == 4 and not any(r["error"] for r in got)
    assert {(r["file"], r["method"], r["layer"]) for r in got} == {
        (f, m, "_head_act") for f in SAMPLES for m in ("grad_cam", "layer_cam")
    }
    for r in got:
        assert r["class_idx"] == r["predicted"] and r["target"] == "top1"
        assert 0 <= float(r["average_drop"]) <= 100 and float(r["average_increase"]) in (0.0, 100.0)
        assert 0 <= float(r["insertion_auc"]) <= 1 and 0 <= float(r["deletion_auc"]) <= 1
    summary = out.with_suffix(".md").read_text()
    assert "| efficientnet_lite0 | grad_cam | _head_act | 2 | 0 |" in summary
    assert "| efficientnet_lite0 | layer_cam | _head_act | 2 | 0 |" in summary
    assert "grad_cam" in done.stdout  # the summary is printed too
    assert "[4/4]" in done.stderr  # plain-text progress


def test_every_method_family_gives_a_row(folder: Path, tmp_path: Path):
    out = tmp_path / "all.csv"
    methods = "grad_cam,score_cam,fm_g_cam:2,fg_cam,fg_cam_d@features.2,fg_score_cam,fg_score_cam_d,lrp,clrp,sglrp"
    assert run(folder, out, "--methods", methods, "--limit", "1") == 0
    got = rows(out)
    assert [(r["method"], r["layer"]) for r in got] == [
        ("grad_cam", "features.4"),
        ("score_cam", "features.4"),
        ("fm_g_cam:2", "features.4"),
        ("fg_cam", "input"),
        ("fg_cam_d", "features.2"),
        ("fg_score_cam", "input"),
        ("fg_score_cam_d", "input"),
        ("lrp", "input"),
        ("clrp", "input"),
        ("sglrp", "input"),
    ]
    assert not any(r["error"] for r in got), [r["error"] for r in got]
    # Signed input-layer relevance uses the paper's positive-only Average Drop; hidden layers do not.
    assert {r["method"]: r["ad_positive_only"] for r in got}["fg_cam"] == "1"
    assert {r["method"]: r["ad_positive_only"] for r in got}["fg_cam_d"] == "0"


def test_cached_fg_score_cam_equals_fg_cam_with_score_base():
    from xai_core.evaluate import Job, MapMaker, parse_method
    from xai_core.models.registry import load_model
    from xai_core.relevance import fg_cam

    model = load_model(TINY)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maker = MapMaker(model, "features.4", batch_size=4)
    for key, denoise in (("fg_score_cam", False), ("fg_score_cam_d", True)):
        for layer in ("features.2", "input"):
            ours = maker._fg_cam(x, parse_method(key), layer, 3)
            ref = fg_cam(
                model.module,
                x,
                cam_layer="features.4",
                target_layer=layer,
                class_idx=[3],
                base="score_cam",
                denoise=denoise,
            ).relevance[0, 0]
            torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    assert Job(parse_method("fg_cam"), "input") == Job(parse_method("fg_cam"), "input")


# ----------------------------------------------------------------------------- resume


def test_resume_after_interruption_writes_no_duplicates(folder: Path, tmp_path: Path):
    out = tmp_path / "r.csv"
    args = ("--methods", "grad_cam,layer_cam")

    def stop(_row):
        raise KeyboardInterrupt

    assert run(folder, out, *args, on_row=stop) == 130
    assert len(rows(out)) == 1  # the row written before the interruption is kept
    seen = []
    assert run(folder, out, *args, on_row=seen.append) == 0
    assert len(seen) == 3  # only the missing rows were computed
    got = rows(out)
    assert len(got) == 4 and len({row_key(r) for r in got}) == 4
    assert run(folder, out, *args, on_row=seen.append) == 0 and len(seen) == 3  # nothing left to do
    assert len(rows(out)) == 4


def test_resume_drops_a_row_cut_short(folder: Path, tmp_path: Path):
    out = tmp_path / "cut.csv"
    assert run(folder, out, "--methods", "grad_cam") == 0
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:25])  # killed while writing the second row
    assert run(folder, out, "--methods", "grad_cam") == 0
    assert out.read_text().startswith("".join(lines[:2]))
    got = rows(out)
    assert len(got) == 2 and len({row_key(r) for r in got}) == 2


def test_shards_partition_the_work(folder: Path, tmp_path: Path):
    keys = []
    for i in range(2):
        out = tmp_path / f"shard{i}.csv"
        assert run(folder, out, "--methods", "grad_cam,eigen_cam", "--shard", f"{i}/2") == 0
        keys.append({row_key(r) for r in rows(out)})
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    full = tmp_path / "full.csv"
    assert run(folder, full, "--methods", "grad_cam,eigen_cam") == 0
    assert keys[0] | keys[1] == {row_key(r) for r in rows(full)}
    assert len(keys[0] | keys[1]) == 4


# ----------------------------------------------------------------------------- errors


def test_unreadable_file_becomes_error_rows(folder: Path, tmp_path: Path):
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "e.csv"
    assert run(folder, out, "--methods", "grad_cam,layer_cam") == 1
    got = rows(out)
    assert len(got) == 6
    bad = [r for r in got if r["file"] == "broken.jpg"]
    assert len(bad) == 2 and all(r["error"].startswith("ImageError") and r["average_drop"] == "" for r in bad)
    assert not any(r["error"] for r in got if r["file"] != "broken.jpg")
    assert "| 2 | 1 |" in out.with_suffix(".md").read_text()  # 2 images scored, 1 error, per method


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--methods", "grad_cm"), "Did you mean 'grad_cam'"),
        (("--methods", "fm_g_cam:x"), "fm_g_cam:K"),
        (("--methods", "grad_cam@input"), "cannot be evaluated at 'input'"),
        (("--layers", "features.9"), "Unknown layer 'features.9'"),
        (("--methods", "fg_cam@fc"), "does not run before the CAM layer"),
        (("--shard", "2/2"), "0 <= i < n"),
        (("--shard", "half"), "i/n"),
        (("--limit", "0"), "--limit must be >= 1"),
        (("--pixels-per-step", "0"), "--pixels-per-step must be >= 1"),
        (("--cam-layer", "nope"), "--cam-layer"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(folder, tmp_path, capsys, extra, message):
    out = tmp_path / "x.csv"
    assert run(folder, out, *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written on a usage error


def test_bad_folder_model_labels_and_out(folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "x.csv"
    assert main([str(tmp_path / "missing"), "--model", TINY, "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(folder), "--model", "resnet5", "--out", str(out)]) == 2
    assert "Did you mean 'resnet50'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty, out) == 2 and "no image files" in capsys.readouterr().err
    labels = tmp_path / "labels.csv"
    labels.write_text("name,class\na.jpg,1\n")
    assert run(folder, out, "--labels", str(labels)) == 2
    assert "'file' and 'label'" in capsys.readouterr().err
    labels.write_text(f"file,label\n{SAMPLES[0]},golden retrievr\n")
    assert run(folder, out, "--labels", str(labels)) == 2
    assert "Did you mean 'golden retriever'" in capsys.readouterr().err
    assert main([str(folder), "--bogus"]) == 2  # argparse's own usage error
    capsys.readouterr()
    out.write_text("a,b\n1,2\n")
    assert run(folder, out) == 2 and "not an evaluation CSV" in capsys.readouterr().err
    out.unlink()
    assert run(folder, out, "--methods", "grad_cam") == 0
    assert run(folder, out, "--methods", "grad_cam", "--pixels-per-step", "128") == 2
    assert "--pixels-per-step 256" in capsys.readouterr().err


# ----------------------------------------------------------------------------- labels and summary


def test_labels_from_csv_and_file_names(folder: Path, tmp_path: Path):
    shutil.copy(folder / SAMPLES[1], folder / "dog__golden_retriever.jpg")
    shutil.copy(folder / SAMPLES[1], folder / "other__4.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,label\n{SAMPLES[0]},3\n")
    out = tmp_path / "l.csv"
    # SAMPLES[1] has no label: with --target label it becomes an error row.
    assert run(folder, out, "--labels", str(labels), "--target", "label", "--methods", "grad_cam") == 1
    by_file = {r["file"]: r for r in rows(out)}
    assert by_file[SAMPLES[0]]["class_idx"] == "3" and by_file[SAMPLES[0]]["label"] == "3"
    assert by_file["dog__golden_retriever.jpg"]["class_idx"] == "1"
    assert by_file["dog__golden_retriever.jpg"]["class_name"] == "golden retriever"
    assert by_file["other__4.jpg"]["class_idx"] == "4"
    assert by_file[SAMPLES[1]]["error"].startswith("no label")
    for r in by_file.values():
        if r["label"]:
            assert r["correct"] == str(int(r["label"] == r["predicted"]))
    # Default target: the top-1 prediction, whatever the label.
    out2 = tmp_path / "t.csv"
    assert run(folder, out2, "--labels", str(labels), "--methods", "grad_cam") == 0
    assert all(r["class_idx"] == r["predicted"] for r in rows(out2))


def test_summary_only_and_columns(folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "s.csv"
    assert run(folder, out, "--methods", "grad_cam") == 0
    with open(out, newline="") as handle:
        assert tuple(next(csv.reader(handle))) == COLUMNS
    out.with_suffix(".md").unlink()
    capsys.readouterr()
    assert main(["ignored", "--summary-only", "--out", str(out)]) == 0
    text = out.with_suffix(".md").read_text()
    assert f"| {TINY} | grad_cam | features.4 | 2 | 0 |" in text and "Pixels per insertion/deletion step: 256" in text
    assert text in capsys.readouterr().out
