"""Loss primitives as plain functions of tensors (labels use -100 for non-answer tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from safeeraser.models.codec import IGNORE


def _shift(logits: torch.Tensor, labels: torch.Tensor):
    """Align each position's logits with the token it predicts."""
    return logits[:, :-1, :], labels[:, 1:]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every label token, and the mask of answer tokens. Shapes (B, T-1)."""
    logits, labels = _shift(logits, labels)
    mask = labels != IGNORE
    safe = labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over answer tokens only (prompt and image tokens are masked)."""
    logits, labels = _shift(logits, labels)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of answer-token log-probabilities per sequence, shape (B,)."""
    logp, _ = token_logprobs(logits, labels)
    return logp.sum(-1)


def kl_to_reference(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    positions: torch.Tensor,
    direction: str = "forward",
) -> torch.Tensor:
    """Mean over the chosen positions of the KL divergence between next-token distributions.

    ``forward`` is KL(reference || current), the released direction (``kl_div(current, reference)``);
    ``reverse`` is KL(current || reference). ``positions`` is a (B, T) boolean mask.
    """
    cur = torch.log_softmax(logits[positions].float(), dim=-1)
    ref = torch.log_softmax(ref_logits[positions].float(), dim=-1)
    if direction == "forward":
        return (ref.exp() * (ref - cur)).sum(-1).mean()
    return (cur.exp() * (cur - ref)).sum(-1).mean()


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """The positions whose next token is an answer token (the logits that predict the answer)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE
    return mask


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative Preference Optimization: (2/beta) * mean softplus(beta * (logp - ref_logp))."""
    return (2.0 / beta) * F.softplus(beta * (logp - ref_logp)).mean()


def sequence_mean_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean answer-token log-probability per sequence (log p(y|x) / |y|), shape (B,)."""
    logp, mask = token_logprobs(logits, labels)
    return logp.sum(-1) / mask.sum(-1).clamp(min=1)


def simnpo_loss(mean_logp: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO: -(2/beta) * mean log sigmoid(-beta * mean_logp - gamma); no reference model."""
    return -(2.0 / beta) * F.logsigmoid(-beta * mean_logp - gamma).mean()


def dpo_loss(
    logp_win: torch.Tensor, ref_win: torch.Tensor, logp_lose: torch.Tensor, ref_lose: torch.Tensor, beta: float
) -> torch.Tensor:
    """DPO on sequence log-probabilities, scaled by 2/beta as NPO is:
    -(2/beta) * mean log sigmoid(beta * ((logp_win - ref_win) - (logp_lose - ref_lose)))."""
    return -(2.0 / beta) * F.logsigmoid(beta * ((logp_win - ref_win) - (logp_lose - ref_lose))).mean()


def adjusted_teacher_ce(
    logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, strength: float
) -> torch.Tensor:
    """UNDIAL: cross-entropy of the current model against the original's next-token distribution
    with the answer token's logit lowered by ``strength``, averaged over answer tokens."""
    logits, labels = _shift(logits, labels)
    ref_logits = ref_logits[:, :-1, :]
    mask = labels != IGNORE
    target = labels[mask]
    teacher = ref_logits[mask].float().clone()
    teacher[torch.arange(len(target), device=target.device), target] -= strength
    q = torch.softmax(teacher, dim=-1)
    return -(q * torch.log_softmax(logits[mask].float(), dim=-1)).sum(-1).mean()


def weighted_ascent(logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """WGA: -mean over answer tokens of p(token)^beta (no gradient through the weight) x its NLL."""
    logp, mask = token_logprobs(logits, labels)
    nll = -logp[mask]
    weight = torch.exp(-beta * nll.detach())
    return -(weight * nll).mean()


def activation_mse(hidden: torch.Tensor, target: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Mean over the chosen (B, T) positions of the mean squared difference over the hidden size."""
    return (hidden[positions].float() - target.expand_as(hidden)[positions].float()).pow(2).mean()
