"""A rank that dies ends the whole job: what the surviving ranks say when a collective fails for that reason.

The survivors learn of a dead peer inside a collective: gloo at once ("Connection closed by peer"), NCCL when
``--ddp_timeout`` (default 1800 s) runs out and its watchdog ends the process. Either way the error surfaces as a
``torch.distributed`` error deep in a step; :func:`lost_peer` turns it into one line on each survivor, and the
launcher (torchrun's failure summary) names the rank that died first. The last complete checkpoint is untouched:
checkpoints are written to a staging folder and moved into place whole.

The line must be out before the launcher's SIGTERM (sent within ~0.1 s of the death) ends the survivor, so the
run reports it where the failure surfaces, with stop signals held back (:meth:`GracefulStop.mute`), and raises
:class:`PeerLostError`, which the command maps to exit status 1 without printing it again.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

_DISTRIBUTED = f"{os.sep}torch{os.sep}distributed{os.sep}"


class PeerLostError(RuntimeError):
    """A collective failed because another rank is gone; the message (already printed) says so in one line."""


# What a collective says when its peer is gone: gloo's transport errors and NCCL's watchdog, which reach Python as
# a plain RuntimeError when the collective ran inside autograd (DeepSpeed's gradient hooks).
_PEER_GONE = re.compile(r"gloo/transport|Connection (closed|reset) by peer|NCCL (communicator|error)|"
                        r"collective operation timeout|ProcessGroup\w* .*(aborted|timed out)", re.IGNORECASE)


def _raised_in_torch_distributed(error: BaseException) -> bool:
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]  # no source lines read: fast
    return bool(frames) and _DISTRIBUTED in frames[-1].f_code.co_filename


def _from_a_collective(error: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and (_raised_in_torch_distributed(error)
                                                or bool(_PEER_GONE.search(str(error))))


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^\[[^\]]*third_party[^\]]*\]\s*", "", text)  # gloo's source location
    return text.split(" This is typically caused")[0][:200]


def lost_peer(error: BaseException) -> str | None:
    """One line for a collective that failed because another rank is gone (None for any other error)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    if not _from_a_collective(error):
        return None
    return (f"rank {dist.get_rank()} of {dist.get_world_size()} stopped: a collective failed ({_short(error)}). "
            "Another rank died or was killed; the launcher's summary names which. A hung peer is given up on after "
            "--ddp_timeout seconds")


def report_lost_peer(error: BaseException, output_dir: str) -> PeerLostError | None:
    """Print the one line for ``error`` now (see the module docstring) and return the error to raise instead."""
    from transformers.trainer_utils import get_last_checkpoint

    line = lost_peer(error)
    if line is None:
        return None
    last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if last:
        line += f"; the last complete checkpoint is {last}"
    print(f"\nhf-easyanimate: error: {line}", file=sys.stderr, flush=True)  # after any progress bar
    return PeerLostError(line)


def shutdown() -> None:
    """End the process group at the end of a command that succeeded. A process leaving with its gloo / NCCL threads
    still running can abort at exit ("terminate called without an active exception"), which the launcher then
    reports as a failed rank."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
