r"""Faithfulness at dataset scale: ``python -m xai_core.evaluate``.

For every image of a folder, every method and every layer asked for, compute the map of
one class (the top-1 prediction, or the true label) and score it with the faithfulness
metrics (:func:`xai_core.metrics.evaluate_maps`). One row per (image, method, layer,
class) goes to a folder of Parquet parts; an interrupted run resumes where it stopped.

Example::

    python -m xai_core.evaluate samples/imagenet --methods grad_cam,fm_g_cam:k=3,fg_cam@input,lrp \
        --out results/eval
    python -m xai_core.evaluate samples/imagenet --methods grad_cam --engine ray --workers 2 --out results/eval
    python -m xai_core.evaluate summary results/eval results/eval-shard1

Modules, one job each:

- :mod:`~xai_core.evaluate.methods`: method names from the explainer registry, maps for a batch.
- :mod:`~xai_core.evaluate.jobs`: what to compute (jobs, images, labels, resume keys).
- :mod:`~xai_core.evaluate.dataset`: the DataLoader (safe reader, crop boxes, error items).
- :mod:`~xai_core.evaluate.compute`: explain and score a batch on the model's device.
- :mod:`~xai_core.evaluate.store`: Parquet parts, written atomically.
- :mod:`~xai_core.evaluate.engines`: local and Ray.
- :mod:`~xai_core.evaluate.summary`: the Markdown table and CSV.
- :mod:`~xai_core.evaluate.progress`: the progress bar and the final line.
- :mod:`~xai_core.evaluate.cli`: the command line.

Exit status: 0 done; 1 done but some rows hold errors (unreadable images, a method that
cannot run) or the results could not be written; 2 bad arguments; 130 interrupted
(finished parts are kept).
"""

from xai_core.evaluate.cli import main
from xai_core.evaluate.store import COLUMNS, SCHEMA, key_of, read_rows

__all__ = ["COLUMNS", "SCHEMA", "key_of", "main", "read_rows"]
