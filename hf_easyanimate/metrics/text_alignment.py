"""Text alignment: mean CLIP cosine similarity between each validation clip's frames and its prompt.

An ``evaluate`` metric (load it by path: ``evaluate.load(hf_easyanimate.metrics.module_path("text_alignment"))``).
It takes CLIP embeddings, not pixels, so the CLIP model is loaded once by the caller and the module stays pure
numpy: ``frame_embeds`` is one (F, D) list per clip, ``text_embeds`` one (D,) list per clip (its prompt). Each
clip scores the mean over its frames of cos(frame, prompt); the metric is the mean over clips. Higher is better.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mean CLIP cosine similarity between each clip's frames and its prompt (mean over frames, then clips)."
_INPUTS = """
Args:
    frame_embeds: per clip, a list of per-frame CLIP image embeddings (F x D).
    text_embeds: per clip, the CLIP text embedding of its prompt (D).
Returns:
    text_alignment: float in [-1, 1]; per_clip: the score of each clip.
"""


def _unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


class TextAlignment(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({
                "frame_embeds": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                "text_embeds": datasets.Sequence(datasets.Value("float32")),
            }),
        )

    def _compute(self, frame_embeds, text_embeds):
        per_clip = [float((_unit(frames) @ _unit(text)).mean()) for frames, text in zip(frame_embeds, text_embeds)]
        return {"text_alignment": float(np.mean(per_clip)), "per_clip": per_clip}
