"""Whether a loaded model's outputs may be read as a result: its weights' provenance."""

from __future__ import annotations

from dataclasses import dataclass

#: The banner text put on every figure, page and report made with random weights.
RANDOM_BANNER = "RANDOM WEIGHTS - NOT A RESULT"
#: The banner text for a weights file of unknown provenance.
UNKNOWN_BANNER = "UNKNOWN WEIGHTS - NOT A VALIDATED RESULT"


@dataclass(frozen=True)
class WeightsStatus:
    """What the weights of a model allow its outputs to claim.

    Attributes:
        kind: ``"published"`` (the model's own published weights), ``"random"`` (untrained)
            or ``"unknown"`` (a weights file the user supplied).
        banner: the watermark text (empty for published weights).
        explanation: one sentence saying why, for the page and the report.
    """

    kind: str
    banner: str
    explanation: str

    @property
    def is_result(self) -> bool:
        """True only for published weights: outputs and threshold flags may be shown as such."""
        return self.kind == "published"

    @property
    def flags_allowed(self) -> bool:
        """Whether the model's operating thresholds describe these weights (only the published ones)."""
        return self.is_result


def weights_status(weights_source: str) -> WeightsStatus:
    """Classify ``LoadedModel.weights_source`` (``"default"``, ``"random..."`` or a file's path).

    Args:
        weights_source: the ``weights_source`` attribute of a :class:`xai_core.LoadedModel`.

    Returns:
        The :class:`WeightsStatus`: published weights are a result; random weights are not;
        a user's weights file is of unknown provenance, so the published operating
        thresholds (calibrated on the published weights) are not applied to it.
    """
    source = str(weights_source)
    if source == "default":
        return WeightsStatus("published", "", "The model's published weights.")
    if source.startswith("random"):
        return WeightsStatus(
            "random",
            RANDOM_BANNER,
            "The model is untrained (random weights): its outputs and maps are meaningless, "
            "and no output is flagged against the operating thresholds.",
        )
    return WeightsStatus(
        "unknown",
        UNKNOWN_BANNER,
        "The weights come from a file whose training is unknown: the published operating thresholds "
        "were calibrated for the published weights, so no output is flagged against them.",
    )
