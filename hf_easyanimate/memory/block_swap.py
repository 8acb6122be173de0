"""``--blocks_to_swap N``: the frozen weights of the last N transformer blocks live in (pinned) CPU memory and visit
the GPU only while their block runs.

Why not diffusers' ``apply_group_offloading``: it moves *every* parameter of a group, the trainable LoRA weights
included, whose gradients and optimizer state must stay on the GPU beside them; and its hooks are written for
inference. Here only frozen parameters (``requires_grad=False``) move, by swapping ``param.data``: a forward
pre-hook puts the GPU copy in place (copied ahead of time on a side CUDA stream, the next block prefetched while
this one computes), a forward hook puts the CPU copy back. Autograd keeps the GPU tensors it saved until the
backward pass needs them, so with gradient checkpointing a block's weights are on the GPU twice per step, each
time briefly: in the forward, and in the recompute that precedes its backward (the recompute runs the same
hooks). Without checkpointing the saved weights of every swapped block would stay until backward, so the flag
requires it.

The swapped weights are also shielded from ``model.to(device)`` calls outside their block's forward (Trainer and
accelerate place the whole model on the device): those calls move everything else, never them.

With no CUDA device (tests, CPU runs) the same code path runs with plain copies: it changes nothing numerically
and saves nothing, which one note says.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)


class BlockSwapper:
    """Swaps the frozen parameters of ``blocks`` between ``device`` and CPU around each block's forward."""

    def __init__(self, blocks: Sequence[torch.nn.Module], device: torch.device | str, prefetch: bool = True) -> None:
        self.blocks = list(blocks)
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.prefetch = prefetch and self.cuda
        self.stream = torch.cuda.Stream(device=self.device) if self.cuda else None
        self.fetches = [0] * len(self.blocks)  # per block, for tests and logs
        self.releases = [0] * len(self.blocks)
        self._home: list[list[tuple[torch.nn.Parameter, torch.Tensor]]] = []
        self._pending: dict[int, tuple[list[torch.Tensor], torch.cuda.Event | None]] = {}
        self._handles = []
        self._active = [False] * len(self.blocks)
        for index, block in enumerate(self.blocks):
            frozen = [p for p in block.parameters() if not p.requires_grad]
            home = []
            for parameter in frozen:
                cpu = parameter.data.to("cpu")
                if self.cuda:
                    cpu = cpu.pin_memory()
                parameter.data = cpu
                home.append((parameter, cpu))
            self._home.append(home)
            self._shield(block, index)
            self._handles.append(block.register_forward_pre_hook(self._pre_hook(index)))
            self._handles.append(block.register_forward_hook(self._post_hook(index)))

    def _shield(self, block: torch.nn.Module, index: int) -> None:
        """Outside the block's forward, ``.to()`` / ``._apply`` leave its frozen parameters where they are."""
        swapper = self

        def shielded_apply(module, fn, recurse=True):
            if swapper._active[index]:
                return type(module)._apply(module, fn, recurse)
            frozen = {name: p for name, p in module._parameters.items() if p is not None and not p.requires_grad}
            for name in frozen:
                module._parameters.pop(name)
            try:
                return type(module)._apply(module, fn, recurse)
            finally:
                module._parameters.update(frozen)

        for module in block.modules():
            module._apply = types.MethodType(shielded_apply, module)

    @property
    def swapped_parameters(self) -> list[torch.nn.Parameter]:
        return [parameter for home in self._home for parameter, _ in home]

    def _copy(self, index: int) -> tuple[list[torch.Tensor], torch.cuda.Event | None]:
        """Start copying block ``index``'s frozen weights to the device (on the side stream when on CUDA)."""
        if not self.cuda:
            return [cpu.clone() for _, cpu in self._home[index]], None
        with torch.cuda.stream(self.stream):
            copies = [cpu.to(self.device, non_blocking=True) for _, cpu in self._home[index]]
            event = torch.cuda.Event()
            event.record(self.stream)
        return copies, event

    def _pre_hook(self, index: int):
        def hook(module, args):
            copies, event = self._pending.pop(index, None) or self._copy(index)
            if event is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(event)
                for tensor in copies:
                    tensor.record_stream(current)  # allocated on the side stream, used and freed on this one
            for (parameter, _), tensor in zip(self._home[index], copies):
                parameter.data = tensor
            self._active[index] = True  # dtype casts inside the block (fp8 storage) reach these weights
            self.fetches[index] += 1
            if self.prefetch:
                following = index - 1 if torch._C._current_graph_task_id() != -1 else index + 1  # backward: reverse
                if 0 <= following < len(self.blocks) and following not in self._pending:
                    self._pending[following] = self._copy(following)
            return None

        return hook

    def _post_hook(self, index: int):
        def hook(module, args, output):
            self._active[index] = False
            for parameter, cpu in self._home[index]:
                parameter.data = cpu  # autograd still holds the device copies it saved, until backward
            self.releases[index] += 1
            return None

        return hook

    def resident_on(self, index: int) -> torch.device:
        home = self._home[index]
        return home[0][0].device if home else self.device

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The repeated blocks of an EasyAnimate transformer (``transformer_blocks`` or V4's ``blocks``)."""
    for name in ("transformer_blocks", "blocks"):
        blocks = getattr(model, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ValueError(f"{type(model).__name__} has no transformer_blocks / blocks list to swap")


def swap_blocks(model: torch.nn.Module, count: int, device: torch.device | str) -> BlockSwapper | None:
    """Swap the last ``count`` blocks of ``model`` (the unwrapped transformer); None for 0."""
    if count <= 0:
        return None
    blocks = transformer_blocks(model)
    if count > len(blocks):
        raise ValueError(f"--blocks_to_swap {count}: this transformer has {len(blocks)} blocks")
    if torch.device(device).type != "cuda":
        logger.info("--blocks_to_swap %d: no CUDA device, so the blocks are copied but nothing is saved (the code "
                    "path runs as on a GPU)", count)
    return BlockSwapper(list(blocks)[len(blocks) - count:], device)


def ignore_in_ddp(wrapped: torch.nn.Module, parameters: Sequence[torch.nn.Parameter]) -> None:
    """Tell DDP not to broadcast or synchronise the swapped (frozen) parameters: they are not on the device."""
    ids = {id(p) for p in parameters}
    names = [name for name, parameter in wrapped.named_parameters() if id(parameter) in ids]
    if names:
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapped, names)
