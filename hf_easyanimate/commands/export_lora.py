"""``hf-easyanimate export-lora IN --to easyanimate|peft OUT``: convert a LoRA between its two formats."""

from __future__ import annotations

import os
import sys

from ..models.lora.files import export_lora, read_lora
from ..models.lora.format import LoraFormatError
from .common import subcommand_parser


def main(argv: list[str]) -> int:
    parser = subcommand_parser("export-lora",
                               "Convert a LoRA between the peft adapter and the EasyAnimate/ComfyUI (kohya) file.")
    parser.add_argument("input", help="LoRA file, peft adapter folder, or training output / checkpoint-N folder.")
    parser.add_argument("--to", required=True, choices=["easyanimate", "peft"], help="Format to write.")
    parser.add_argument("output", help="easyanimate: a .safetensors file (or a folder); peft: a folder.")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="Cast the weights (default: keep the input's dtype, so the conversion is lossless).")
    parser.add_argument("--key_style", choices=["original", "diffusers"], default="original",
                        help="easyanimate only: module names of the original EasyAnimate transformer (attn2.*; "
                        "loads in EasyAnimate and ComfyUI) or of the diffusers one.")
    parser.add_argument("--overwrite", action="store_true", help="Replace the output file(s) if they exist.")
    args = parser.parse_args(argv)
    try:
        written = export_lora(args.input, args.to, args.output, dtype=args.dtype, key_style=args.key_style,
                              overwrite=args.overwrite)
        summary = read_lora(written[0]).summary() if args.to == "easyanimate" else read_lora(args.output).summary()
    except (LoraFormatError, ValueError) as error:
        print(f"hf-easyanimate export-lora: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path} ({os.path.getsize(path) / 2**20:.2f} MiB)")
    print(summary)
    return 0
