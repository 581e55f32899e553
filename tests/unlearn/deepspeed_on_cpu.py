"""`python tests/unlearn/deepspeed_on_cpu.py unlearn ...` under `accelerate launch --config_file
configs/accelerate/deepspeed_zero{2,3}.yaml`: safeeraser's CLI with DeepSpeed on CPU processes.

DeepSpeed runs on CPUs (its CPU accelerator, collectives over gloo), but accelerate 1.15 turns
DeepSpeed on only when the Accelerator is not made with ``cpu=True``, which safeeraser passes on a
machine without GPUs (so that plain multi-process launches use gloo); with ``cpu=False`` on such a
machine accelerate then leaves the process count and rank at their one-process values. Here the
Accelerator is made with ``cpu=False`` and the process state takes its rank and count from the
process group DeepSpeed set up, as it does on GPUs; everything else (the DeepSpeed engine, ZeRO's
partitioning, gathering the adapter) is accelerate's and DeepSpeed's own code.
"""

import os
import sys

import accelerate
import torch
from accelerate.state import PartialState

_accelerator_init = accelerate.Accelerator.__init__
_state_init = PartialState.__init__


def _state_with_ranks(self, cpu: bool = False, **kwargs):
    _state_init(self, cpu=False, **kwargs)
    if torch.distributed.is_initialized():
        self.num_processes = torch.distributed.get_world_size()
        self.process_index = torch.distributed.get_rank()
        self.local_process_index = int(os.environ.get("LOCAL_RANK", self.process_index))


def _accelerator_on_cpu(self, *args, cpu: bool = False, **kwargs):
    _accelerator_init(self, *args, cpu=False, **kwargs)


if __name__ == "__main__":
    assert os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true", (
        "launch with --config_file configs/accelerate/deepspeed_zero2.yaml"
    )
    PartialState.__init__ = _state_with_ranks
    accelerate.Accelerator.__init__ = _accelerator_on_cpu
    from safeeraser.cli import main

    sys.exit(main(sys.argv[1:]))
