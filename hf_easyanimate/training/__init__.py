"""What a training loop needs beyond Trainer, one job per module: guards (NaN/inf, failed saves), resume and
checkpoint rotation, the original's clipping, reproducible per-sample draws, the deterministic evaluation, the
engine report, attention kernels, graceful stop, output-folder safety, validation sampling, the model card and Hub
push, and the report of a finished run."""
