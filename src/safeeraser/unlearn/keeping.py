"""Checkpoint selection and early stop during a run: the dynamics probe's rows read by the
``select``/``stop_when`` rules (``unlearn.selection``), the best step's adapter kept."""

from __future__ import annotations

import json
import shutil

import torch

from safeeraser.formats import RUN_LOG
from safeeraser.io import atomic_dir, atomic_write_json, read_jsonl

KEPT = "kept"  # under select: the adapter of the best probed step so far (becomes adapter/ at the end)

SELECTION = "selection.json"  # under select: the kept step and why


class SelectionMixin:
    """``UnlearnRun``'s keeping phase (a mixin: it reads the run's attributes)."""

    def probed(self, done: int, row: dict) -> bool:
        """Under --select, after a probe: keep the adapter if this step is the best so far; whether
        --early-stop ends training now (decided on the main process, which alone probes, and shared)."""
        from safeeraser.unlearn.selection import select, stale_probes

        if done % self.config.eval_every and done != self.total:
            return False
        stop = keep = False
        if self.main:
            self.rows.append(row)
            rows = [r for r in self.rows if r["step"] > self.select_from]
            keep = select(self.rule, rows)["step"] == done
            patience = self.config.early_stop
            stop = bool(patience) and stale_probes(self.rule, rows) >= patience and done < self.total
            if stop:
                self.stopped = (
                    f"early stop: {patience} probes without a better step under '{self.rule.text}' (step {done})"
                )
        if self.sharded:  # gathering the adapter takes every process: all must know whether to keep it
            from accelerate.utils import broadcast_object_list

            keep = broadcast_object_list([keep])[0]
        if keep:
            state = self.gathered_adapter()
            if self.main:
                with atomic_dir(self.out / KEPT) as tmp:
                    self.save_adapter(tmp, state)
                    atomic_write_json(tmp / "step.json", {"step": done})
        if self.accelerator.num_processes > 1 and self.config.early_stop:
            flag = torch.tensor([float(stop)], device=self.accelerator.device)
            stop = self.accelerator.reduce(flag, "sum").item() > 0
            if stop and not self.main:
                self.stopped = "early stop (decided on the main process)"
        return stop

    def kept_before(self) -> int:
        """On --resume under --select: the step after which candidates count.

        The kept adapter of an interrupted attempt is used if it is still the log's best step up to
        the checkpoint; otherwise (it was lost or is from past the checkpoint) only steps probed
        after resuming are candidates, and selection.json says so.
        """
        from safeeraser.unlearn.selection import select

        if not self.start_step:
            return 0
        try:
            kept = json.loads((self.out / KEPT / "step.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            kept = None
        if kept is not None and select(self.rule, self.rows)["step"] == kept:
            return 0
        return self.start_step

    def keep_selected(self) -> dict:
        """adapter/ becomes the kept step's adapter (the last one moves to adapter-last/); selection.json says which and why."""
        from safeeraser.unlearn.selection import select

        out = self.out
        rows = [r for r in read_jsonl(out / RUN_LOG) if r.get("step", 0) > self.select_from]
        selection = select(self.rule, rows)
        selection["candidates_after_step"] = self.select_from
        if self.select_from:
            selection["why"] += (
                f" (candidates: steps probed after resuming at step {self.select_from}; the earlier kept adapter was lost)"
            )
        kept = out / KEPT
        if selection["met"] and selection["step"] != self.steps and (kept / "step.json").exists():
            if (out / "adapter-last").exists():
                shutil.rmtree(out / "adapter-last")
            (out / "adapter").rename(out / "adapter-last")
            (kept / "step.json").unlink()
            kept.rename(out / "adapter")
        else:
            selection["step"] = self.steps if not selection["met"] else selection["step"]
        if kept.exists():
            shutil.rmtree(kept)
        selection["adapter"] = "adapter"
        atomic_write_json(out / SELECTION, selection)
        return selection
