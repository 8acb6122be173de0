"""The deterministic eval loss split by noise level: low, mid and high thirds of the diffusion range.

An ``evaluate`` metric over (loss, noise level) pairs: ``losses`` are per-batch losses at one timestep of the
eval grid, ``noise_levels`` that timestep as a fraction of the training range (0 = clean, 1 = pure noise).
Each band reports the mean loss of the pairs inside it: [0, 1/3), [1/3, 2/3), [2/3, 1]. A LoRA that only
learned the high-noise band (composition) but not the low-noise one (detail) shows here, where the single
``eval_loss`` averages it away. A band without pairs (too few --eval_timesteps) is left out.
"""

import datasets
import evaluate
import numpy as np

BANDS = (("eval_loss_low_noise", 0.0, 1 / 3), ("eval_loss_mid_noise", 1 / 3, 2 / 3),
         ("eval_loss_high_noise", 2 / 3, 1.0 + 1e-9))


class EvalLossBands(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean eval loss in the low, mid and high thirds of the noise range.",
            citation="",
            inputs_description="losses: float per (batch, timestep); noise_levels: that timestep in [0, 1].",
            features=datasets.Features({"losses": datasets.Value("float64"), "noise_levels": datasets.Value("float64")}),
        )

    def _compute(self, losses, noise_levels):
        losses, levels = np.asarray(losses, dtype=np.float64), np.asarray(noise_levels, dtype=np.float64)
        result = {}
        for name, low, high in BANDS:
            inside = (levels >= low) & (levels < high)
            if inside.any():
                result[name] = float(losses[inside].mean())
        return result
