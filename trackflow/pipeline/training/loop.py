"""The optimisation every stage's training shares: AdamW, warm-up then cosine decay, optional
gradient clipping, the loss of every step, one log line per epoch, and a checkpoint after every
epoch from which an interrupted run resumes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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

    ``end_epoch(epoch, epochs)`` logs the mean loss of the epoch's steps as ``"<name> epoch i/n"``
    and, with a ``checkpoint`` path, writes there (atomically) the model, optimiser and schedule
    after the epoch, with ``fingerprint`` (what the run was started with: data, config, seed).
    ``resume()`` loads such a checkpoint when its fingerprint is this run's and returns the
    epoch to go on from (0: none, or one of another run, which is then overwritten). A training
    loop that draws its randomness per epoch from (seed, epoch) then repeats the interrupted
    run exactly.
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        learning_rate: float,
        total_steps: int,
        max_grad_norm: float | None = None,
        checkpoint: Path | None = None,
        fingerprint: Any = None,
    ) -> None:
        self.name = name
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.fingerprint = repr(fingerprint)
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
        log.info(
            "%s epoch %d/%d: loss %.4f",
            self.name,
            epoch + 1,
            epochs,
            float(np.mean(recent)) if recent else float("nan"),
        )
        if self.checkpoint is not None:
            state = {
                "fingerprint": self.fingerprint,
                "epoch": epoch + 1,
                "model": self.model.state_dict(),
                "optimiser": self.optimiser.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "losses": list(self.losses),
            }
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            partial = self.checkpoint.with_name(self.checkpoint.name + ".partial")
            torch.save(state, partial)
            partial.replace(self.checkpoint)  # a kill mid-write leaves the last one whole

    def resume(self) -> int:
        """The epoch to start from: after the checkpoint's, when it is this run's; else 0."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return 0
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as error:
            log.warning(
                "%s: checkpoint %s unreadable (%s): starting afresh", self.name, self.checkpoint, error
            )
            return 0
        if state.get("fingerprint") != self.fingerprint:
            log.warning("%s: checkpoint %s is of another run: starting afresh", self.name, self.checkpoint)
            return 0
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.losses = list(state["losses"])
        self._epoch_start = len(self.losses)
        log.info("%s: resumed from %s after epoch %d", self.name, self.checkpoint, state["epoch"])
        return int(state["epoch"])
