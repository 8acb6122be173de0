"""Aspect-ratio buckets and per-batch sizes (SPEC.md §3). Pure functions so tests can state numbers."""

from __future__ import annotations

# h/w ratio -> (height, width) at the 512 scale; 40 entries from 0.25 to 4.0, as in EasyAnimate.
ASPECT_RATIO_512: dict[str, tuple[float, float]] = {
    "0.25": (256.0, 1024.0), "0.26": (256.0, 992.0), "0.27": (256.0, 960.0), "0.28": (256.0, 928.0),
    "0.32": (288.0, 896.0), "0.33": (288.0, 864.0), "0.35": (288.0, 832.0), "0.4": (320.0, 800.0),
    "0.42": (320.0, 768.0), "0.48": (352.0, 736.0), "0.5": (352.0, 704.0), "0.52": (352.0, 672.0),
    "0.57": (384.0, 672.0), "0.6": (384.0, 640.0), "0.68": (416.0, 608.0), "0.72": (416.0, 576.0),
    "0.78": (448.0, 576.0), "0.82": (448.0, 544.0), "0.88": (480.0, 544.0), "0.94": (480.0, 512.0),
    "1.0": (512.0, 512.0), "1.07": (512.0, 480.0), "1.13": (544.0, 480.0), "1.21": (544.0, 448.0),
    "1.29": (576.0, 448.0), "1.38": (576.0, 416.0), "1.46": (608.0, 416.0), "1.67": (640.0, 384.0),
    "1.75": (672.0, 384.0), "2.0": (704.0, 352.0), "2.09": (736.0, 352.0), "2.4": (768.0, 320.0),
    "2.5": (800.0, 320.0), "2.89": (832.0, 288.0), "3.0": (864.0, 288.0), "3.11": (896.0, 288.0),
    "3.62": (928.0, 256.0), "3.75": (960.0, 256.0), "3.88": (992.0, 256.0), "4.0": (1024.0, 256.0),
}

SIZE_MULTIPLE = 16


def closest_ratio(height: float, width: float, ratios: dict[str, tuple[float, float]] = ASPECT_RATIO_512) -> str:
    """Key of the table entry whose h/w is nearest to ``height / width`` (first one wins a tie)."""
    aspect = float(height) / float(width)
    return min(ratios, key=lambda key: abs(float(key) - aspect))


def bucket_size(
    ratio_key: str, sample_size: int, ratios: dict[str, tuple[float, float]] = ASPECT_RATIO_512
) -> tuple[int, int]:
    """(height, width) of a bucket at ``sample_size``: the 512-scale entry scaled, floored to 16 pixels."""
    base_h, base_w = ratios[ratio_key]
    scale = sample_size / 512
    return (
        int(base_h * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE,
        int(base_w * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE,
    )


def frames_on_vae_grid(num_frames: int, temporal_compression: int) -> int:
    """Largest ``k * n + 1 <= num_frames`` (MagVIT encodes 1 + k*n frames); never below 1."""
    if num_frames <= 1:
        return 1
    return (num_frames - 1) // temporal_compression * temporal_compression + 1
