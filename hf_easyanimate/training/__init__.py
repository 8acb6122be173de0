"""Training-loop helpers the trainer delegates to: guards, resume, clipping, reproducibility, evaluation,
launch set-up, attention kernels, graceful stop and output-folder safety. Each module has one job."""
