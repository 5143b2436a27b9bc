"""Download model weights ahead of time, so a laptop is ready before going offline.

Usage::

    python -m xai_core.download                      # every listed model
    python -m xai_core.download resnet50             # only these
    python -m xai_core.download timm:convnext_atto   # any timm or torchvision CNN by name
    python -m xai_core.download --list               # what would be fetched

Weights go to torchvision's cache (``$TORCH_HOME/hub/checkpoints``, timm's in its
``timm`` sub-folder) and torchxrayvision's (``~/.torchxrayvision/models_data``), where
the dashboard looks first.
"""

from __future__ import annotations

import argparse
import sys

from xai_core.errors import XaiCoreError
from xai_core.models.libraries import PREFIXES
from xai_core.models.registry import build_model, list_models

EPILOG = (
    "Weights go to $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints; timm models in its "
    "timm/ folder) and ~/.torchxrayvision/models_data. Models whose weights come inside a Python package "
    "need no download."
)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (1 if any model failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m xai_core.download",
        description="Download model weights ahead of time, so the dashboard works offline.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="models to download, e.g. resnet50, timm:convnext_tiny, torchvision:regnet_y_800mf "
        "(default: every model --list shows)",
    )
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    args = parser.parse_args(argv)
    listed = list_models()
    keys = [info.key for info in listed]
    if args.models:
        unknown = [k for k in args.models if k not in keys and not k.startswith(PREFIXES)]
        if unknown:
            parser.error(
                f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(keys)}, or timm:NAME, torchvision:NAME"
            )
        keys = list(dict.fromkeys(args.models))
    if args.list:
        by_key = {info.key: info for info in listed}
        for key in keys:
            info = by_key.get(key)
            if info is None:
                print(f"{key:32s} downloaded once")
            else:
                print(f"{key:32s} {'offline (in a package)' if info.offline else 'downloaded once'}  {info.label}")
        return 0
    failed = 0
    for key in keys:
        try:
            build_model(key)
            print(f"ok      {key}")
        except XaiCoreError as err:
            failed += 1
            print(f"FAILED  {key}: {err}", file=sys.stderr)
    print(f"{len(keys) - failed} of {len(keys)} models ready.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
