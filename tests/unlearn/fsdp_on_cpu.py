"""`python tests/unlearn/fsdp_on_cpu.py unlearn ...` under `accelerate launch --config_file
configs/accelerate/fsdp.yaml`: safeeraser's CLI with accelerate's FSDP on CPU processes (gloo).

accelerate 1.15 turns its FSDP plugin on only for GPU-like process groups: with CPU processes it
silently trains data-parallel (``AcceleratorState`` keeps ``MULTI_CPU``). PyTorch's fully_shard runs
on CPU with gloo, so here the state is made FSDP after accelerate set it up, as it would be on GPUs;
everything else (wrapping, sharding, gathering the state dict) is accelerate's and torch's own code.
"""

import os
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        # both states: every later AcceleratorState() copies the process state's type again
        PartialState._shared_state["distributed_type"] = self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin


if __name__ == "__main__":
    assert os.environ.get("ACCELERATE_USE_FSDP") == "true", "launch with --config_file configs/accelerate/fsdp.yaml"
    AcceleratorState.__init__ = _init_with_fsdp_on_cpu
    from safeeraser.cli import main

    sys.exit(main(sys.argv[1:]))
