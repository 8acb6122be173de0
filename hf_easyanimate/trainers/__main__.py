"""``python -m hf_easyanimate.trainers > docs/flags.md``: the LoRA trainer's flags as the markdown page."""

import sys

from .lora_config import flags_markdown

sys.stdout.write(flags_markdown())
