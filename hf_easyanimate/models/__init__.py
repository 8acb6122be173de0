"""Everything that knows a model: the families (one object per EasyAnimate generation), reading a checkpoint once,
loading its components, the V2-V4 ports, the encoders, inpaint conditioning, the LoRA and its file formats, and the
tiny random checkpoints. The rest of the package asks these objects and never branches on a version."""
