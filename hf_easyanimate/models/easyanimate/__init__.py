"""EasyAnimate V5.1 and V5 on diffusers' classes: the family, the loader (with the original release's key names),
the original-YAML reading and the tiny checkpoints."""
