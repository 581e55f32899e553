"""A run's checkpoints: saved every ``checkpoint_every`` steps (adapter, optimizer, scheduler, RNG
states, the batches drawn), restored by ``--resume`` to continue exactly where the run stopped,
and the adapter snapshots a run is asked to keep."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from safeeraser.errors import UserError
from safeeraser.formats import CHECKPOINT, CHECKPOINT_STATE, RUN_LOG
from safeeraser.io import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from safeeraser.unlearn.adapters import snapshot_folder
from safeeraser.unlearn.distributed import _adapter_state, _flat, _full_trainable_state, _set_full_trainable_state

# settings a resumed run may change: they decide what is written and how, not what is learnt
RESUME_FREE = ("checkpoint_every", "log_every", "log_examples", "gradient_checkpointing", "report_to")

FULL_WEIGHTS = "trainable.safetensors"  # a sharded run's checkpoint: trainable weights by parameter name

FULL_OPTIMIZER = "optimizer-full.pt"  # ... and their optimizer state, by parameter name


def _trim_log(path: Path, step: int) -> None:
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


class CheckpointMixin:
    """``UnlearnRun``'s checkpoint phase (a mixin: it reads the run's attributes)."""

    def identity(self) -> dict:
        """What a checkpoint must share with the run that resumes it: method, base model, revision and
        every setting that shapes the trajectory. Settings free to change on resume are left out
        (checkpoint_every, log_every, log_examples, gradient_checkpointing), and grad_accum enters as
        micro_batches_per_step, grad_accum x processes, so that a run may resume on another number
        of processes with grad_accum traded against it."""
        settings = self.config.model_dump()
        for free in RESUME_FREE:
            settings.pop(free, None)
        settings["micro_batches_per_step"] = settings.pop("grad_accum") * self.accelerator.num_processes
        started = {"adapter": str(self.adapter)} if self.adapter is not None else {}
        return {
            "method": self.name,
            "model": str(self.model),
            "revision": self.revision,
            **started,
            "settings": settings,
        }

    def examples_drawn(self) -> dict[str, list[int]]:
        """The examples of the last optimizer step, by view, from every process in unit order
        (the same list whatever the process count). A collective call: every process makes it."""
        from accelerate.utils import gather_object

        drawn = sorted(
            gather_object(self.drawn) if self.accelerator.num_processes > 1 else self.drawn, key=lambda d: d[0]
        )
        out: dict[str, list[int]] = {}
        for _, view, idx in drawn:
            out.setdefault(view, []).extend(idx)
        return out

    def check_resumable(self) -> None:
        """Under --resume, refuse a checkpoint written by another run (one line naming the difference)."""
        folder = self.out / CHECKPOINT
        if not (self.resume and (folder / CHECKPOINT_STATE).exists()):
            return
        try:
            state = json.loads((folder / CHECKPOINT_STATE).read_text())
        except (OSError, ValueError):
            raise UserError(f"{folder}: unreadable checkpoint (state.json); remove it or pass --overwrite") from None
        if "settings" not in state:  # written before checkpoints recorded their run
            return
        ours = self.identity()
        theirs, mine = (
            _flat(state["settings"]),
            _flat(json.loads(json.dumps(ours["settings"]))),
        )  # as state.json holds them
        differ = [
            f"{k} {state.get(k)!r} -> {ours.get(k)!r}"
            for k in ("method", "model", "revision", "adapter")
            if state.get(k) != ours.get(k)
        ]
        differ += [
            f"{k} {theirs.get(k)!r} -> {mine.get(k)!r}"
            for k in sorted(set(theirs) | set(mine))
            if theirs.get(k) != mine.get(k)
        ]
        if differ:
            more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
            raise UserError(
                f"{folder}: written by a run with other settings: {', '.join(differ[:3])}{more}; resume with the same ones, or pass --overwrite to start again"
            )

    def restore(self) -> None:
        """Under --resume, the checkpoint's state; the log cut back to the step it continues from."""
        self.start_step = 0
        if self.resume and (self.out / CHECKPOINT / CHECKPOINT_STATE).exists():
            self.start_step = self.load_checkpoint()
        if self.main:
            _trim_log(
                self.out / RUN_LOG, self.start_step
            )  # drop what an interrupted attempt logged past the checkpoint

    def save_snapshot(self, step: int) -> None:
        """The adapter as it is after optimizer step ``step``, in PEFT's format (a collective call)."""
        state = self.gathered_adapter()
        if self.main:
            with atomic_dir(snapshot_folder(self.out, step)) as tmp:
                self.save_adapter(tmp, state)
                atomic_write_json(tmp / "step.json", {"step": step})

    def save_checkpoint(self, step: int) -> None:
        """Adapter weights, optimizer and scheduler state, every process's RNG state: everything needed
        to resume. Under FSDP the trainable weights and their optimizer state are gathered whole (by
        parameter name, frozen weights left out), so the checkpoint is the same whatever the sharding
        and resumes on any number of processes. A collective call: every process makes it."""
        from safetensors.torch import save_file

        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        rng = self.rng_states()
        trainable = _full_trainable_state(self.wrapped, self.optimizer) if self.sharded else None
        if accelerator.is_main_process:
            with atomic_dir(self.out / CHECKPOINT) as tmp:
                if trainable is None:
                    save_file(_adapter_state(self.peft_model), str(tmp / "adapter.safetensors"))
                    torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                else:
                    save_file({k: v.contiguous() for k, v in trainable[0].items()}, str(tmp / FULL_WEIGHTS))
                    torch.save(trainable[1], tmp / FULL_OPTIMIZER)
                torch.save(
                    {"scheduler": self.scheduler.state_dict(), "rng": rng[0], "rng_by_process": rng}, tmp / "trainer.pt"
                )
                atomic_write_json(
                    tmp / CHECKPOINT_STATE, {"step": step, "processes": accelerator.num_processes, **self.identity()}
                )
        accelerator.wait_for_everyone()

    def rng_states(self) -> list[dict]:
        """Every process's RNG state, in process order (a collective call with several processes)."""
        from accelerate.utils import gather_object

        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        return gather_object([rng]) if self.accelerator.num_processes > 1 else [rng]

    def load_checkpoint(self) -> int:
        """The checkpoint's state put back (each process its own RNG state when the process count
        is the one that wrote it); returns its step."""
        from peft import set_peft_model_state_dict
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder, device = self.out / CHECKPOINT, self.accelerator.device
        full = (folder / FULL_WEIGHTS).exists()
        if self.sharded and not full:
            raise UserError(
                f"{folder}: written by a run without sharding; resume it without the FSDP config (or pass --overwrite)"
            )
        try:
            step = json.loads((folder / CHECKPOINT_STATE).read_text())["step"]
            if full:
                _set_full_trainable_state(
                    self.wrapped if self.sharded else self.peft_model,
                    self.optimizer,
                    load_file(str(folder / FULL_WEIGHTS)),
                    torch.load(folder / FULL_OPTIMIZER, weights_only=True),
                )
            else:
                set_peft_model_state_dict(
                    self.peft_model, load_file(str(folder / "adapter.safetensors"), device=str(device))
                )
                self.optimizer.load_state_dict(
                    torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
                )
            state = torch.load(folder / "trainer.pt", weights_only=True)
        except (OSError, EOFError, KeyError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError) as e:
            raise UserError(
                f"{folder}: unreadable checkpoint ({type(e).__name__}); remove it or pass --overwrite"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        by_process = state.get("rng_by_process") or []
        rng = (
            by_process[self.accelerator.process_index]
            if len(by_process) == self.accelerator.num_processes
            else state["rng"]
        )
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        return step

    def keep_last_good(self, step: int) -> str:
        """On a non-finite loss the weights are still those of the last good step: keep them."""
        folder = self.out / CHECKPOINT
        if self.deepspeed:
            return "No checkpoint is kept under DeepSpeed."
        finite = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()) for p in self.trainable)
        if self.accelerator.num_processes > 1:  # each process sees its own shards: all must be finite
            flag = torch.tensor([float(finite)], device=self.accelerator.device)
            finite = self.accelerator.reduce(flag, "sum").item() == self.accelerator.num_processes
        if finite:
            self.save_checkpoint(step)
            return f"The last good state (after step {step}) is kept in {folder}; lower the learning rate or check the data."
        if (folder / CHECKPOINT_STATE).exists():
            return f"The last good checkpoint is kept in {folder}."
        return "No good checkpoint exists (set checkpoint_every to keep one)."
