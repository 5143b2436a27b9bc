"""Pre-download every model's weights, so a laptop is ready before going offline.

Usage::

    python -m xai_core.download            # every registered model
    python -m xai_core.download resnet50   # only these
    python -m xai_core.download --list     # what would be fetched, and where

Weights go to torchvision's cache (``$TORCH_HOME/hub/checkpoints``) and
torchxrayvision's (``~/.torchxrayvision/models_data``), where the dashboard looks first.
"""

from __future__ import annotations

import argparse
import sys

from xai_core.errors import XaiCoreError
from xai_core.models.registry import build_model, list_models


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (1 if any model failed)."""
    parser = argparse.ArgumentParser(prog="python -m xai_core.download", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help="registry keys (default: all)")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    args = parser.parse_args(argv)
    specs = list_models()
    if args.models:
        wanted = set(args.models)
        unknown = wanted - {s.key for s in specs}
        if unknown:
            parser.error(
                f"unknown model(s): {', '.join(sorted(unknown))}; choose from {', '.join(s.key for s in specs)}"
            )
        specs = [s for s in specs if s.key in wanted]
    if args.list:
        for spec in specs:
            print(f"{spec.key:32s} {'offline (in a package)' if spec.offline else 'downloaded once'}  {spec.label}")
        return 0
    failed = 0
    for spec in specs:
        try:
            build_model(spec.key)
            print(f"ok      {spec.key}")
        except XaiCoreError as err:
            failed += 1
            print(f"FAILED  {spec.key}: {err}", file=sys.stderr)
    print(f"{len(specs) - failed} of {len(specs)} models ready.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
