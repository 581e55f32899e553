"""What a finished run leaves: adapter/ (the gathered adapter under sharding), run.json, the
model cards, and merged/ when asked (through ``models.merge``)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from safeeraser.environment import config_hash, manifest
from safeeraser.formats import CHECKPOINT, RUN_SUMMARY, TRACKING_KEYS
from safeeraser.io import atomic_dir, atomic_write_json
from safeeraser.models.card import refresh_cards
from safeeraser.models.loading import default_dtype

ALREADY_COMPLETE = "already complete"  # RunResult.stopped of a --resume of a finished run


@dataclass
class RunResult:
    out: Path
    method: str
    steps: int
    total_steps: int
    seconds: float
    stopped: str | None  # why training ended early, if it did
    main_process: bool = True  # False in the other processes of a multi-process launch
    resumed_from: int = 0  # the checkpoint's step when --resume continued a run

    @property
    def already_complete(self) -> bool:
        return self.stopped == ALREADY_COMPLETE


class OutputsMixin:
    """``UnlearnRun``'s last phase (a mixin: it reads the run's attributes)."""

    def finish(self) -> RunResult:
        """The adapter (and merged model), run.json, which marks the run complete; the checkpoint removed."""
        self.accelerator.wait_for_everyone()
        state = self.gathered_adapter()
        if self.main:
            self.write_outputs(state)
        return RunResult(
            self.out,
            self.name,
            self.steps,
            self.total,
            self.seconds,
            self.stopped,
            self.main,
            resumed_from=self.start_step,
        )

    def gathered_adapter(self) -> dict | None:
        """Under sharded training (FSDP, DeepSpeed), the full weights gathered from every process,
        on the main process (a collective call: every process makes it); otherwise None, as each
        process holds them whole."""
        if not self.sharded:
            return None
        if not self.accelerator.is_fsdp2:  # DeepSpeed (ZeRO-3: 16-bit weights gathered), FSDP1: accelerate's gathering
            return self.accelerator.get_state_dict(self.wrapped)
        # FSDP2: only the weights PEFT saves (LoRA, modules_to_save), each gathered whole on every
        # process in the same order, so the memory needed is the adapter's, not the model's. (accelerate's
        # get_state_dict gathers the whole model, and on CPU returns the weights still sharded.)
        state = {}
        for name, value in self.peft_model.state_dict().items():
            if "lora_" in name or "modules_to_save" in name:
                state[name] = value.full_tensor() if hasattr(value, "full_tensor") else value
        return state

    def save_adapter(self, folder: Path, state: dict | None) -> None:
        """The adapter in PEFT's format (LoRA, and the projector when it is trained), loadable on
        one process; ``state``: the full weights gathered from a sharded run."""
        if state is None:
            self.peft_model.save_pretrained(folder, safe_serialization=True)
        else:
            self.peft_model.save_pretrained(folder, safe_serialization=True, state_dict=state)
        if self.objective.projector == "sine":  # what attach_adapter needs to rebuild the sine layers
            from safeeraser.models import sine_projector

            names = sine_projector.projector_linears(self.loaded.model, self.loaded.family.projector)
            sine_projector.write_marker(folder, self.config.method.sineproject.frequency, names)

    def write_outputs(self, state: dict | None = None) -> None:
        out = self.out
        with atomic_dir(out / "adapter") as tmp:
            self.save_adapter(tmp, state)
        selection = self.keep_selected() if self.rule is not None else None
        summary = {
            "method": self.name,
            "model": str(self.model),
            **({"revision": self.revision} if self.revision else {}),
            **({"preset": self.preset} if self.preset else {}),
            **({"adapter": str(self.adapter)} if self.adapter is not None else {}),
            "data": str(self.data),
            "steps": self.steps,
            "total_steps": self.total,
            "seconds": round(self.seconds, 2),
            "stopped": self.stopped,
            "processes": self.accelerator.num_processes,
            "config_hash": config_hash(self.config.model_dump(exclude=TRACKING_KEYS)),
            "environment": manifest(),
        }
        if selection is not None:
            summary["selected"] = {"step": selection["step"], "rule": selection["rule"], "why": selection["why"]}
        if self.on_finish is not None:
            self.on_finish(out, self.name)
        if self.merge and self.sharded:  # no process holds the whole model: the base again, whole, on the CPU
            from safeeraser.models.merge import merge_run

            merge_run(
                out,
                out / "merged",
                model=self.model,
                revision=self.revision,
                dtype=default_dtype(self.accelerator.device),
                overwrite=True,
            )
            summary["merged"] = str(out / "merged")
        elif self.merge:
            from safeeraser.models.merge import save_merged

            if selection is not None and selection["step"] != self.steps:  # merge the kept step's adapter, not the last
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file

                set_peft_model_state_dict(
                    self.peft_model,
                    load_file(str(out / "adapter" / "adapter_model.safetensors"), device=str(self.accelerator.device)),
                )
            save_merged(
                self.peft_model,
                self.loaded.processor,
                out / "merged",
                base=str(self.model),
                revision=self.revision,
                adapter=out / "adapter",
            )
            summary["merged"] = str(out / "merged")
        atomic_write_json(out / RUN_SUMMARY, summary)
        refresh_cards(out)  # README.md of adapter/ (and merged/), from run.json and config.yaml
        if (out / CHECKPOINT).exists():
            shutil.rmtree(out / CHECKPOINT)
