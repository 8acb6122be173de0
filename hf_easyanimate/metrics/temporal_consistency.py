"""Temporal consistency: mean CLIP cosine similarity of consecutive frames of each validation clip.

An ``evaluate`` metric over CLIP image embeddings (``frame_embeds``: one (F, D) list per clip). Each clip scores
the mean of cos(frame_i, frame_i+1); the metric is the mean over clips (a one-frame clip scores 1). Higher means
smoother; a frozen image scores 1 too, so read it beside text alignment.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mean CLIP cosine similarity of consecutive frames (mean over frame pairs, then clips)."
_INPUTS = """
Args:
    frame_embeds: per clip, a list of per-frame CLIP image embeddings (F x D).
Returns:
    temporal_consistency: float in [-1, 1]; per_clip: the score of each clip.
"""


class TemporalConsistency(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"frame_embeds": datasets.Sequence(datasets.Sequence(datasets.Value("float32")))}),
        )

    def _compute(self, frame_embeds):
        per_clip = []
        for frames in frame_embeds:
            frames = np.asarray(frames, dtype=np.float64)
            frames = frames / np.linalg.norm(frames, axis=-1, keepdims=True)
            per_clip.append(1.0 if len(frames) < 2 else float((frames[1:] * frames[:-1]).sum(axis=-1).mean()))
        return {"temporal_consistency": float(np.mean(per_clip)), "per_clip": per_clip}
