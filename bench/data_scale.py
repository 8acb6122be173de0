"""Scale of the data side: load + check + index + bucket + plan one epoch of a 100k and a 1M-row metadata file.

    python bench/data_scale.py [--rows 100000 1000000] [--batch_size 8] [--runs 1] [--smoke]

Each measurement runs in a fresh process (so peak RSS is that run's own) with an empty `datasets` cache
("cold": JSON list -> JSON Lines -> Arrow, then every check), then again with the caches warm (a restart).
The metadata is EasyAnimate's JSON list with width/height columns and ~150-character captions; the files
it names do not exist (nothing is opened: sizes come from the columns).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from _report import SMOKE_HELP, ratio

CAPTION = ("A group of young men in colourful jerseys play football on a sunny field near the sea while the "
           "camera pans slowly from left to right, clip {i}")
SIZES = ((1080, 1920), (720, 1280), (1920, 1080), (480, 640), (512, 512), (1024, 768), (1440, 1080), (576, 1024))


def write_metadata(path: str, rows: int) -> None:
    """A JSON list like filter_meta_train.py writes (indented), streamed out so writing stays cheap."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        for i in range(rows):
            if i % 2:  # half the rows at common video sizes, half at arbitrary ones (every bucket gets used)
                height, width = SIZES[(i * 7919) % len(SIZES)]
            else:
                height, width = 256 + (i * 7919) % 1700, 256 + (i * 104729) % 1700
            kind, ext = ("video", "mp4") if i % 10 < 7 else ("image", "jpg")
            row = {"file_path": f"train/{i:08d}.{ext}", "text": CAPTION.format(i=i), "type": kind,
                   "width": width, "height": height}
            handle.write("  " + json.dumps(row) + (",\n" if i < rows - 1 else "\n"))
        handle.write("]\n")


def measure(meta_path: str, batch_size: int) -> dict:
    """One run, in this process: the steps a training start performs before the first batch."""
    from hf_easyanimate.config import DataArguments
    from hf_easyanimate.data import BucketBatchSampler, PlanConfig, prepare_index

    args = DataArguments(train_data_meta=meta_path, train_data_dir=os.path.dirname(meta_path), enable_bucket=True,
                         image_sample_size=1024, video_sample_size=256, token_sample_size=512,
                         video_sample_n_frames=49, video_repeat=1, random_hw_adapt=True,
                         training_with_video_token_length=True)
    imports_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch, datasets, ... loaded
    start = time.perf_counter()
    meta, index, problems = prepare_index(args)
    indexed = time.perf_counter()
    sampler = BucketBatchSampler(index, batch_size, PlanConfig.from_data_args(args), seed=42, num_replicas=8, rank=3)
    batches = sampler.global_batches(0)
    planned = time.perf_counter()
    first = [next(iter(sampler)) for _ in range(1)]
    return {
        "rows": len(meta),
        "samples": len(index),
        "buckets": len(index.bucket_keys),
        "batches": int(len(batches)),
        "problems": len(problems),
        "index_s": indexed - start,
        "epoch_plan_s": planned - indexed,
        "total_s": planned - start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "imports_rss_mib": imports_rss,
        "first_batch_len": len(first[0]),
    }


def measure_direct(meta_path: str) -> dict:
    """What we avoid: ``datasets`` parsing the JSON list itself (every row becomes a Python dict first)."""
    import datasets

    imports_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    table = datasets.load_dataset("json", data_files=meta_path, split="train")
    return {"rows": len(table), "total_s": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "imports_rss_mib": imports_rss}


def run_child(meta_path: str, batch_size: int, cache: str, direct: bool = False) -> dict:
    env = {**os.environ, "HF_DATASETS_CACHE": cache, "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, __file__, "--child", meta_path, "--batch_size", str(batch_size)]
    out = subprocess.run(command + (["--direct"] if direct else []), capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1, help="Repeat each measurement; medians are printed.")
    parser.add_argument("--no_direct", action="store_true", help="Skip the plain `datasets` JSON-list load.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:  # 1k and 2k rows, once, without the plain `datasets` comparison
        args.rows, args.runs, args.no_direct = [1_000, 2_000], 1, True
    if args.child:
        print(json.dumps(measure_direct(args.child) if args.direct else measure(args.child, args.batch_size)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.rows:
            meta = os.path.join(folder, f"meta_{rows}.json")
            write_metadata(meta, rows)
            cold, warm, direct = [], [], []
            for run in range(args.runs):
                cache = os.path.join(folder, f"cache_{rows}_{run}")
                cold.append(run_child(meta, args.batch_size, cache))
                warm.append(run_child(meta, args.batch_size, cache))
                if not args.no_direct:
                    direct.append(run_child(meta, args.batch_size, os.path.join(folder, f"direct_{rows}_{run}"), True))
            results[rows] = (cold, warm, os.path.getsize(meta), direct)
    print(f"{'rows':>9} {'MiB':>6} {'phase':<5} {'index s':>8} {'plan s':>7} {'total s':>8} {'peak RSS MiB':>13}"
          f" {'after imports':>13} {'buckets':>7} {'batches':>8}")
    for rows, (cold, warm, size, direct) in results.items():
        for phase, runs in (("cold", cold), ("warm", warm)):
            med = {key: statistics.median(r[key] for r in runs)
                   for key in ("index_s", "epoch_plan_s", "total_s", "peak_rss_mib", "imports_rss_mib")}
            print(f"{rows:>9} {size / 2**20:>6.0f} {phase:<5} {med['index_s']:>8.2f} {med['epoch_plan_s']:>7.2f} "
                  f"{med['total_s']:>8.2f} {med['peak_rss_mib']:>13.0f} {med['imports_rss_mib']:>13.0f} "
                  f"{runs[0]['buckets']:>7} {runs[0]['batches']:>8}")
        if direct:
            total = statistics.median(r["total_s"] for r in direct)
            rss = statistics.median(r["peak_rss_mib"] for r in direct)
            print(f"{rows:>9} {size / 2**20:>6.0f} {'plain `datasets` load of the JSON list (no checks, no index)':<36}"
                  f" {total:>8.2f} s {rss:>8.0f} MiB peak")
    if len(results) >= 2:
        small, large = min(results), max(results)
        for phase, position in (("cold", 0), ("warm", 1)):
            t_small = statistics.median(r["total_s"] for r in results[small][position])
            t_large = statistics.median(r["total_s"] for r in results[large][position])
            m_small = statistics.median(r["peak_rss_mib"] for r in results[small][position])
            m_large = statistics.median(r["peak_rss_mib"] for r in results[large][position])
            ratio(f"time, {large // small}x rows ({phase})", t_large / t_small)
            ratio(f"peak RSS, {large // small}x rows ({phase})", m_large / m_small)


if __name__ == "__main__":
    main()
