"""Paper-vs-ours table for docs/reproduction.md from an evaluation results folder (Parquet parts).

Usage: python docs/reproduction/make_table.py docs/reproduction/lite0_448 > docs/reproduction/comparison.md
       python docs/reproduction/make_table.py docs/reproduction/lite0_448_canonized --before docs/reproduction/lite0_448
(the first, 8-step run of 2026-11-23 is in fg_cam_lite0.csv; this script reads the Parquet results).

Paper numbers: fg-cam.txt Tables 1, 2 (VGG16-BN, 2000 ILSVRC2012 val images; Layer33/23/13 =
the 4th/3rd/2nd max-pool, 14x14/28x28/56x56) and Tables 4, 5 (input layer). Our layers
have the same resolutions on EfficientNet-Lite0: _blocks.10 (14x14), _blocks.4 (28x28),
_blocks.2 (56x56).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from xai_core.evaluate import read_rows

LAYERS = {
    "_blocks.10": "Layer33 (14x14)",
    "_blocks.4": "Layer23 (28x28)",
    "_blocks.2": "Layer13 (56x56)",
    "input": "input",
}
METHODS = {
    "grad_cam": "Grad-CAM",
    "fg_cam": "FG-Grad-CAM",
    "fg_cam_d": "FG-Grad-CAM_D",
    "score_cam": "Score-CAM",
    "fg_cam:base=score_cam": "FG-Score-CAM",
    "fg_cam_d:base=score_cam": "FG-Score-CAM_D",
    "layer_cam": "Layer-CAM",
    "lrp": "LRP",
    "clrp": "CLRP",
    "sglrp": "SGLRP",
}
# (A.D., A.I., insertion, deletion, overall) from the paper.
PAPER = {
    ("grad_cam", "_blocks.10"): (44.53, 18.85, 0.43920, 0.15392, 0.28528),
    ("fg_cam", "_blocks.10"): (18.69, 34.90, 0.60214, 0.09640, 0.50574),
    ("fg_cam_d", "_blocks.10"): (18.00, 33.85, 0.60247, 0.11108, 0.49139),
    ("score_cam", "_blocks.10"): (32.63, 21.60, 0.51428, 0.11988, 0.39440),
    ("fg_cam:base=score_cam", "_blocks.10"): (21.13, 29.15, 0.58202, 0.10196, 0.48006),
    ("fg_cam_d:base=score_cam", "_blocks.10"): (19.19, 31.70, 0.59716, 0.11198, 0.48518),
    ("layer_cam", "_blocks.10"): (24.25, 26.80, 0.56566, 0.09997, 0.46569),
    ("grad_cam", "_blocks.4"): (72.89, 5.10, 0.30033, 0.19113, 0.10920),
    ("fg_cam", "_blocks.4"): (19.55, 33.45, 0.59217, 0.09459, 0.49758),
    ("fg_cam_d", "_blocks.4"): (17.75, 33.55, 0.60248, 0.11378, 0.48870),
    ("score_cam", "_blocks.4"): (51.24, 13.80, 0.39734, 0.14254, 0.25480),
    ("fg_cam:base=score_cam", "_blocks.4"): (22.63, 27.15, 0.57210, 0.09985, 0.47225),
    ("fg_cam_d:base=score_cam", "_blocks.4"): (18.99, 32.00, 0.59676, 0.11403, 0.48273),
    ("layer_cam", "_blocks.4"): (27.32, 24.50, 0.54096, 0.09333, 0.44763),
    ("grad_cam", "_blocks.2"): (83.80, 3.25, 0.23266, 0.16850, 0.06416),
    ("fg_cam", "_blocks.2"): (19.65, 32.35, 0.58630, 0.09256, 0.49374),
    ("fg_cam_d", "_blocks.2"): (17.90, 34.00, 0.59976, 0.11421, 0.48555),
    ("score_cam", "_blocks.2"): (57.06, 12.00, 0.36485, 0.15037, 0.21448),
    ("fg_cam:base=score_cam", "_blocks.2"): (23.50, 25.85, 0.56570, 0.09774, 0.46796),
    ("fg_cam_d:base=score_cam", "_blocks.2"): (19.24, 30.50, 0.59341, 0.11435, 0.47906),
    ("layer_cam", "_blocks.2"): (30.76, 24.40, 0.51348, 0.08469, 0.42879),
    ("lrp", "input"): (25.48, 25.00, 0.55344, 0.09975, 0.45369),
    ("clrp", "input"): (30.64, 24.15, 0.56740, 0.19168, 0.37572),
    ("sglrp", "input"): (40.62, 21.75, 0.51655, 0.22315, 0.29340),
    ("fg_cam", "input"): (16.81, 36.45, 0.60757, 0.08668, 0.52089),
    ("fg_cam_d", "input"): (16.13, 36.55, 0.61386, 0.11271, 0.50115),
    ("fg_cam:base=score_cam", "input"): (20.28, 30.15, 0.58608, 0.08980, 0.49628),
    ("fg_cam_d:base=score_cam", "input"): (16.84, 31.80, 0.60566, 0.11143, 0.49423),
}
COLS = ("average_drop", "average_increase", "insertion_auc", "deletion_auc", "overall")


def _means(path: str) -> dict[tuple[str, str], tuple[int, list[float]]]:
    """(method, layer) -> (images, mean of each of COLS) over the rows without error."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in read_rows([Path(path)]):
        if not row["error"]:
            groups[(row["method"], row["layer"])].append(row)
    return {
        key: (len(rows), [sum(float(r[c]) for r in rows) / len(rows) for c in COLS]) for key, rows in groups.items()
    }


def main(path: str, before: str | None = None) -> str:
    """The Markdown comparison table for the results folder at ``path``.

    With ``before`` (an earlier results folder, e.g. the run with the authors' BatchNorm
    rule), every cell reads "ours / before / paper".
    """
    ours_all = _means(path)
    before_all = _means(before) if before else {}
    what = "ours / before / paper" if before else "ours / paper"
    out = [
        f"| layer | method | n | A.D. {what} | A.I. {what} | Insertion {what} | Deletion {what} | Overall {what} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for layer in LAYERS:
        for method in METHODS:
            n, ours = ours_all.get((method, layer), (0, None))
            n_before, old = before_all.get((method, layer), (0, None))
            paper = PAPER.get((method, layer))
            if ours is None and paper is None and old is None:
                continue
            count = f"{n} / {n_before}" if before else str(n)
            cells = [LAYERS[layer], METHODS[method], count]
            for i in range(len(COLS)):
                fmt = "{:.2f}" if i < 2 else "{:.4f}"
                values = [ours] + ([old] if before else []) + [paper]
                cells.append(" / ".join(fmt.format(v[i]) if v is not None else "-" for v in values))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    before = None
    if "--before" in args:
        i = args.index("--before")
        before = args[i + 1]
        del args[i : i + 2]
    sys.stdout.write(main(args[0] if args else "docs/reproduction/lite0_448", before))
