"""Clips per second of dataset + collator (2 dataloader workers), against a naive reader, side by side.

    python bench/data_throughput.py [--videos 16] [--epochs 6] [--repeats 3] [--workers 2] [--smoke]

Two clip sets: the demo mp4s (`hf-easyanimate make-demo-data`: 24-48 frames, 64-112 px, one keyframe), and
longer clips closer to real footage (240 frames at 256x256, a keyframe every 30 frames, 49 frames at
stride 3 sampled, as the V5.1 recipe does).

Both readers run the same sampler, plans and collator; the naive one decodes every frame of each clip and
then picks the sampled ones (what a reader without frame-accurate seeking does), ours decodes only the
frames the batch keeps. Rounds alternate between the two so load from other processes hits both alike;
medians are printed, and the ratio ours / naive.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from _report import SMOKE_HELP, ratio

from hf_easyanimate.config import DataArguments
from hf_easyanimate.data import EasyAnimateDataset, build_train_data
from hf_easyanimate.data.metadata import KIND_VIDEO
from hf_easyanimate.data.video import read_image, read_video_frames, sample_frame_indices, usable_frame_count
from hf_easyanimate.testing import make_demo_data


class NaiveDataset(EasyAnimateDataset):
    """Decodes the whole clip, then keeps the sampled frames: same output, no frame-selective decoding."""

    def _read(self, index, plan, entropy):
        row = int(self.index.rows[index])
        path = self.metadata.path(row)
        rng = np.random.default_rng([*entropy, index])
        if self.index.kinds[index] == KIND_VIDEO:
            every = read_video_frames(path)
            picked = sample_frame_indices(len(every), self.options.frames, rng)
            available = len(picked)
            frames = every[picked[: plan.decode_limit]] if plan is not None else every[picked]
            kind = "video"
        else:
            frames, available, kind = read_image(path), 1, "image"
        text = self.metadata.text(row)
        if rng.random() < self.options.text_drop_ratio:
            text = ""
        return {"frames": torch.from_numpy(np.ascontiguousarray(frames)), "text": text, "type": kind, "index": index,
                "row": row, "available_frames": int(available), "plan": plan}


def write_long_clips(folder: str, count: int, frames: int = 240, side: int = 256, gop: int = 30) -> str:
    """Moving-square clips with a keyframe every ``gop`` frames, and their metadata.json."""
    import json

    import av

    os.makedirs(os.path.join(folder, "long"), exist_ok=True)
    rows = []
    ys, xs = np.mgrid[:side, :side]
    for i in range(count):
        path = os.path.join(folder, "long", f"clip_{i:03d}.mp4")
        with av.open(path, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=24)
            stream.width = stream.height = side
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = gop
            stream.options = {"crf": "23", "keyint_min": str(gop), "sc_threshold": "0"}
            for t in range(frames):
                frame = np.zeros((side, side, 3), np.uint8)
                frame[..., 0] = (xs + t * 3 + i * 17) % 256
                frame[..., 1] = (ys * 2 + t) % 256
                x0 = (t * 5 + i * 31) % (side - 40)
                frame[40:80, x0 : x0 + 40] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        rows.append({"file_path": path, "text": f"clip {i}", "type": "video"})
    meta = os.path.join(folder, "long", "metadata.json")
    with open(meta, "w", encoding="utf-8") as handle:
        json.dump(rows, handle)
    return meta


def clips_per_second(dataset, sampler, collator, workers: int, epochs: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collator, num_workers=workers,
                                         persistent_workers=False)
    clips = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            clips += batch["pixel_values"].shape[0]
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--long_side", type=int, default=256, help="side of the long clips, pixels")
    parser.add_argument("--long_frames", type=int, default=240, help="frames of each long clip")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:  # 2 short clips per set, one epoch, one round, no workers
        args.videos, args.epochs, args.repeats, args.workers, args.long_side, args.long_frames = 2, 1, 1, 0, 64, 60
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        demo = make_demo_data(os.path.join(folder, "demo"), videos=args.videos, images=0, seed=1)
        long = write_long_clips(folder, args.videos, frames=args.long_frames, side=args.long_side)
        compare("demo mp4s", demo, 64, args.stride, args.frames, args)
        compare("long clips", long, args.long_side, 3, 49, args)


def compare(label: str, meta: str, size: int, stride: int, frames: int, args) -> None:
    data_args = DataArguments(train_data_meta=meta, train_data_dir=os.path.dirname(meta), enable_bucket=False,
                              video_sample_size=size, image_sample_size=size, video_sample_stride=stride,
                              video_sample_n_frames=frames, text_drop_ratio=0.0,
                              data_cache_dir=os.path.join(os.path.dirname(meta), "cache"))
    data = build_train_data(data_args, batch_size=2, seed=0)
    naive = NaiveDataset(data.metadata, data.index, data.dataset.options, seed=0)
    lengths = [len(read_video_frames(data.metadata.path(int(row)))) for row in data.index.rows]
    used = [usable_frame_count(n, data.dataset.options.frames) for n in lengths]
    print(f"{label}: {len(data.index)} clips of {min(lengths)}-{max(lengths)} frames (mean "
          f"{statistics.mean(lengths):.0f}) at {size}px; {frames} frames at stride {stride} sampled (mean "
          f"{statistics.mean(used):.1f}); batch 2, {args.workers} workers, {args.epochs} epochs per round")
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(clips_per_second(data.dataset, data.sampler, data.collator, args.workers, args.epochs))
        theirs.append(clips_per_second(naive, data.sampler, data.collator, args.workers, args.epochs))
    print(f"  dataset+collator (decodes sampled frames): {statistics.median(ours):7.1f} clips/s  "
          f"runs {[round(v, 1) for v in ours]}")
    print(f"  naive reader (decodes every frame):        {statistics.median(theirs):7.1f} clips/s  "
          f"runs {[round(v, 1) for v in theirs]}")
    ratio(f"ours / naive ({label})", statistics.median(ours) / statistics.median(theirs))


if __name__ == "__main__":
    main()
