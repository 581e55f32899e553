"""`safeeraser push`: a run's adapter/ (or merged/) folder, model card included, to a Hugging Face
Hub model repository, through huggingface_hub (``create_repo``, then ``upload_folder``)."""

from __future__ import annotations

import os
from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.formats import RUN_SUMMARY


def push_plan(run_dir: Path | str, *, merged: bool = False) -> tuple[Path, list[str]]:
    """The folder a push sends and its files (relative paths, sorted); a run that has none is refused in one line."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    if not (run_dir / RUN_SUMMARY).is_file():
        raise UserError(
            f"{run_dir}: not a finished run (no {RUN_SUMMARY}); push the folder `unlearn --out` wrote, once it has finished"
        )
    folder = run_dir / ("merged" if merged else "adapter")
    if not folder.is_dir():
        hint = "merge it first: safeeraser merge --run RUN_DIR" if merged else "it has no adapter"
        raise UserError(f"{folder}: not found; {hint}")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return folder, files


def push_run(run_dir: Path | str, repo_id: str, *, private: bool = False, merged: bool = False) -> str:
    """Create the model repository (kept if it exists) and upload the folder to it; returns the commit's URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    folder, files = push_plan(run_dir, merged=merged)
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UserError(
            f"--repo-id {repo_id!r}: not a Hugging Face repository id (expected NAME or OWNER/NAME)"
        ) from None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UserError("HF_HUB_OFFLINE is set: unset it to push")
    token = get_token()  # HF_TOKEN, else the one `hf auth login` saved
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN (a token with write access) or run `hf auth login`")
    api = HfApi(token=token)
    what = "merged model" if merged else "adapter"
    try:
        # not private: the account's default visibility (an existing repository keeps its own)
        api.create_repo(repo_id, repo_type="model", private=True if private else None, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=folder,
            allow_patterns=files,
            commit_message=f"safeeraser: the {what} of {Path(run_dir).name}",
        )
    except Exception as e:  # the Hub's refusal (auth, quota, name) or the network's: one line
        first = " ".join(str(e).split("\n")[0].split()) or type(e).__name__
        raise UserError(f"push to {repo_id} failed: {first}") from None
    return str(getattr(commit, "commit_url", commit))
