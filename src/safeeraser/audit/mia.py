"""Membership inference on the harmful answers: is the forget set still told apart from unseen ones?

Members are the forget split's harmful answers (train split: image, question, ``model_response``),
non-members the held-out harmful answers of the test split (val split, the same fields). Each
answer is scored by the model (base + the run's adapter) under the run's training prompt format
(the codec ``unlearn`` trains with, the run's ``config.yaml``), on its answer tokens only, exactly
the tokens whose NLL unlearning moved. Four scores, each oriented so that **higher = more likely a
member**:

- ``loss`` (Yeom et al. 2018): −(mean NLL of the answer tokens);
- ``zlib`` (Carlini et al. 2021): −(mean NLL) / (bytes of the zlib-compressed answer text);
- ``min_k`` (Min-K%, Shi et al. 2024): mean of the k% lowest token log-probabilities;
- ``min_k_plus_plus`` (Min-K%++, Zhang et al. 2024): per token (log p(x_t) − μ_t) / σ_t, μ_t and
  σ_t the mean and standard deviation of log p(z) for z drawn from the model's next-token
  distribution at t, then the mean of the k% lowest.

k% of n answer tokens is max(1, ⌊k·n⌋) tokens. The AUC of each score separating members from
non-members comes from scikit-learn's ``roc_auc_score``: 0.5 is chance; above 0.5 the forget
answers look more like what the model was trained on than the held-out ones, below 0.5 less
(what unlearning by raising the forget loss leaves: the forget set stands out the other way).
Either side of 0.5 tells the two apart, hence ``distance`` = |AUC − 0.5|.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from safeeraser.data.records import load_split
from safeeraser.data.views import Example, forget_examples
from safeeraser.errors import UserError
from safeeraser.io import atomic_write_text
from safeeraser.models.codec import IGNORE

MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")
DEFAULT_K = 0.2  # the fraction of lowest tokens Min-K% and Min-K%++ average (both papers' usual 20%)
_SIGMA_FLOOR = 1e-12  # a next-token distribution with all its mass on one token has σ = 0


@dataclass(frozen=True)
class TokenStats:
    """What the scores read of one answer: each answer token's log-probability and the mean and
    standard deviation of log p under the model's next-token distribution at its position."""

    logp: torch.Tensor  # (n,)
    mu: torch.Tensor  # (n,)
    sigma: torch.Tensor  # (n,)


def lowest_mean(values: torch.Tensor, k: float) -> float:
    """Mean of the max(1, ⌊k·n⌋) lowest of ``values`` (n of them)."""
    count = max(1, math.floor(k * len(values) + 1e-9))  # 1e-9: 0.3 x 10 is 3.0000000000000004 in floating point
    return float(values.sort().values[:count].mean())


def scores(stats: TokenStats, answer: str, k: float) -> dict[str, float]:
    """The four scores of one answer (higher = more likely a member)."""
    loss = float(-stats.logp.mean())
    return {
        "loss": -loss,
        "zlib": -loss / len(zlib.compress(answer.encode("utf-8"))),
        "min_k": lowest_mean(stats.logp, k),
        "min_k_plus_plus": lowest_mean((stats.logp - stats.mu) / stats.sigma.clamp_min(_SIGMA_FLOOR), k),
    }


def token_stats(logits: torch.Tensor, labels: torch.Tensor) -> list[TokenStats]:
    """Per row of a batch: the answer tokens' statistics (labels -100 outside the answer)."""
    logits, labels = logits[:, :-1, :], labels[:, 1:]  # each position's logits predict the next token
    found = []
    for row_logits, row_labels in zip(logits, labels):
        answer = row_labels != IGNORE
        logp_all = torch.log_softmax(row_logits[answer].float(), dim=-1)  # (n, vocabulary)
        p = logp_all.exp()
        mu = (p * logp_all).sum(-1)
        sigma = (p * (logp_all - mu[:, None]).square()).sum(-1).sqrt()
        logp = logp_all.gather(-1, row_labels[answer].unsqueeze(-1)).squeeze(-1)
        found.append(TokenStats(logp, mu, sigma))
    return found


def auc(labels: list[int], values: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, values))


def _sklearn() -> str:
    try:
        import sklearn
    except ImportError:
        raise UserError("membership inference needs scikit-learn: pip install 'safeeraser[audit]'") from None
    return f"scikit-learn {sklearn.__version__}"


def membership_inference(
    model: str,
    data: Path,
    *,
    adapter: Path | None = None,
    k: float = DEFAULT_K,
    batch_size: int = 8,
    revision: str | None = None,
    config: Path | None = None,
    scores_out: Path | None = None,
    progress: bool = False,
) -> dict:
    """The four attacks' AUCs, members (forget split's harmful answers) against non-members (the
    test split's), scored by ``model`` + ``adapter`` (a run folder or adapter folder; None: the
    model itself) under the training prompt format of ``config`` (default: the run's config.yaml,
    else the released defaults). ``scores_out``: every answer's scores as JSON Lines (key, member,
    one value per attack). Returns {"members", "non_members", "k", "auc", "distance", "mean",
    "library", "prompt_config"}; "mean" holds each score's mean over members and non-members."""
    from safeeraser.models.loading import attach_adapter, default_device, default_dtype, load_model
    from safeeraser.progress import bar
    from safeeraser.unlearn.config import run_config
    from safeeraser.unlearn.trainer import capitalized, training_codec

    if not 0 < k <= 1:
        raise UserError(f"k must be in (0, 1] (got {k})")
    if batch_size <= 0:
        raise UserError(f"batch size must be positive (got {batch_size})")
    library = _sklearn()
    settings, config_file = run_config(adapter, config)
    members = forget_examples(load_split(data, "train"))
    non_members = forget_examples(load_split(data, "val"))
    device = default_device()
    dtype = default_dtype(device) if settings.dtype == "auto" else getattr(torch, settings.dtype)
    loaded = load_model(model, revision=revision, device=device, dtype=dtype)
    if adapter is not None:
        loaded = attach_adapter(loaded, adapter)
    codec = training_codec(loaded, settings)
    as_trained = capitalized if settings.text.capitalize else (lambda e: e)
    examples: list[tuple[Example, bool]] = [(as_trained(e), True) for e in members] + [
        (as_trained(e), False) for e in non_members
    ]
    rows = []
    with (
        torch.inference_mode(),
        bar(total=len(examples), desc="membership inference", unit="answer", enabled=progress) as shown,
    ):
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = codec.collate_train([codec.encode_example(e) for e, _ in chunk])
            labels = batch.pop("labels")
            logits = loaded.model(**{key: v.to(device) for key, v in batch.items()}).logits
            for (example, member), stats in zip(chunk, token_stats(logits, labels.to(device))):
                rows.append({"key": example.key, "member": member, **scores(stats, example.answer, k)})
            shown.update(len(chunk))
    if scores_out is not None:
        atomic_write_text(Path(scores_out), "".join(json.dumps(r) + "\n" for r in rows))
    labels_ = [int(r["member"]) for r in rows]
    aucs = {name: auc(labels_, [r[name] for r in rows]) for name in MIA_ATTACKS}
    return {
        "members": len(members),
        "non_members": len(non_members),
        "k": k,
        "auc": aucs,
        "distance": {name: abs(value - 0.5) for name, value in aucs.items()},
        "mean": {
            name: {
                side: sum(r[name] for r in rows if r["member"] == is_member) / count
                for side, is_member, count in (
                    ("members", True, len(members)),
                    ("non_members", False, len(non_members)),
                )
            }
            for name in MIA_ATTACKS
        },
        "library": library,
        "prompt_config": str(config_file) if config_file else "released defaults",
    }
