"""The optimisation every stage's training shares: AdamW, warm-up then cosine decay, optional
gradient clipping, the loss of every step, and one log line per epoch."""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger("trackflow.pipeline.training")


def warmup_cosine(optimiser: torch.optim.Optimizer, total_steps: int, warmup: float = 0.05):
    """Learning-rate schedule shared by every stage: linear warm-up over ``warmup`` of the steps,
    then cosine decay to 2 % of the peak (works for any number of steps, even 1)."""
    total = max(int(total_steps), 1)
    n_warm = max(1, int(warmup * total))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        progress = min(1.0, (step - n_warm) / max(total - n_warm, 1))
        return 0.02 + 0.98 * 0.5 * (1.0 + float(np.cos(np.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


class Optimisation:
    """``step(loss)`` back-propagates, clips (when ``max_grad_norm`` is set), steps AdamW and the
    :func:`warmup_cosine` schedule planned for ``total_steps``; ``losses`` holds every step's loss.

    ``end_epoch(epoch, epochs)`` logs the mean loss of the epoch's steps as ``"<name> epoch i/n"``.
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        learning_rate: float,
        total_steps: int,
        max_grad_norm: float | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
        self.scheduler = warmup_cosine(self.optimiser, total_steps)
        self.max_grad_norm = max_grad_norm
        self.losses: list[float] = []
        self._epoch_start = 0

    def step(self, loss: torch.Tensor) -> None:
        self.optimiser.zero_grad()
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimiser.step()
        self.scheduler.step()
        self.losses.append(loss.item())

    def end_epoch(self, epoch: int, epochs: int) -> None:
        recent = self.losses[self._epoch_start :]
        self._epoch_start = len(self.losses)
        log.info("%s epoch %d/%d: loss %.4f", self.name, epoch + 1, epochs,
                 float(np.mean(recent)) if recent else float("nan"))
