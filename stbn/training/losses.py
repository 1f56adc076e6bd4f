"""The training objectives: the Gaussian NLL (or L2) of the blind-spot prior, the L2 of a non-blind
student to a teacher's estimate, the paper's flow distillation; the teacher models."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
from torch import nn

import stbn
from stbn.model import STBN, sigma_tensor
from stbn.posterior import gaussian_nll, mean_l2
from stbn.training.config import Loss, Precision


def batch_psnr(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean over frames of the per-frame PSNR (data range 1), clean clipped to [0, 1]."""
    err = (estimate.float() - clean.float().clamp(0, 1)).pow(2).flatten(2).mean(-1).flatten()
    return float((10 * torch.log10(1.0 / err.clamp(min=1e-12))).mean())


def distillation_loss(
    model: STBN, teacher: nn.Module, noisy: torch.Tensor, prior: torch.Tensor, param_l2: float
) -> torch.Tensor:
    """Unweighted L_dis: L1 between the student's flow on noisy frames and the frozen teacher's flow
    on the (detached) prior means, both directions, plus ``param_l2`` times the sum of the student's
    parameter L2 norms (the authors' code). Gradients reach only ``model.flow``."""
    b, t = noisy.shape[:2]
    means = prior[:, :, :3].detach().to(noisy.dtype)
    a_idx = [i for i in range(t - 1)] + [i + 1 for i in range(t - 1)]
    b_idx = [i + 1 for i in range(t - 1)] + [i for i in range(t - 1)]
    flat = lambda x, idx: x[:, idx].reshape(b * len(idx), *x.shape[2:])  # noqa: E731
    with torch.no_grad():
        target = teacher(flat(means, a_idx), flat(means, b_idx))
    student = model.flow(flat(noisy, a_idx), flat(noisy, b_idx))
    loss = (student.float() - target.float()).abs().mean()
    if param_l2:
        loss = loss + param_l2 * sum(p.norm() for p in model.flow.parameters())
    return loss


def make_teacher(model: STBN) -> nn.Module:
    """A frozen copy of the model's current flow network."""
    teacher = copy.deepcopy(model.flow).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def load_denoising_teacher(path: str | Path, student: STBN) -> STBN:
    """A frozen checkpoint whose estimates (a blind-spot model's posterior means, a non-blind
    model's output) train ``student`` (a non-blind model); the student starts from the teacher's
    flow network when the two are the same kind."""
    teacher = stbn.load_checkpoint(path).model.eval()
    if student.config.blind_spot:
        raise ValueError("a teacher trains a non-blind student (e.g. preset cpu-rt-distilled)")
    for p in teacher.parameters():
        p.requires_grad_(False)
    same_flow = [(c.flow, c.flow_channels, c.flow_levels) for c in (teacher.config, student.config)]
    if same_flow[0] == same_flow[1]:
        student.flow.load_state_dict(teacher.flow.state_dict())
    return teacher


class LossModule(nn.Module):
    """Wraps the model so that DistributedDataParallel sees one forward per step."""

    def __init__(
        self, model: STBN, loss: Loss | str, mean_weight: float = 0.0, precision: Precision = Precision.FP32
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = Loss(loss)  # an unknown name is an error here, never a silent L2
        self.mean_weight = mean_weight
        self.precision = Precision(precision)
        self._teacher: tuple[nn.Module, ...] = ()

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The network in bf16 where asked; the likelihood (a 3x3 Cholesky, logs) stays in fp32."""
        if self.precision is Precision.FP32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def set_teacher(self, teacher: nn.Module | None) -> None:
        self._teacher = () if teacher is None else (teacher,)

    def forward(
        self,
        noisy: torch.Tensor,
        sigma: torch.Tensor,
        distill_weight: float,
        param_l2: float,
        target: torch.Tensor | None = None,
        observed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``target``: the teacher's estimate (Loss.TEACHER); ``observed``: what the likelihood
        scores the prior against where it is not ``noisy`` itself (a second capture)."""
        with self._autocast(noisy.device):
            prior = self.model.prior(noisy, sigma)
        prior = prior.float()
        observed = noisy if observed is None else observed
        if self.loss is Loss.TEACHER:
            main = 0.5 * (prior - target).pow(2).mean()
        elif self.loss is Loss.NLL:
            sig = sigma_tensor(sigma, noisy)
            main = gaussian_nll(prior, observed, sig)
            if self.mean_weight:
                main = main + self.mean_weight * mean_l2(prior, observed, sig)
        else:  # Loss.L2 (the value was checked in __init__)
            main = 0.5 * (prior[:, :, :3] - observed).pow(2).mean()
        dis = torch.zeros((), dtype=noisy.dtype, device=noisy.device)
        if distill_weight > 0 and self._teacher and self.model.config.blind_spot:
            with self._autocast(noisy.device):
                dis = distillation_loss(self.model, self._teacher[0], noisy, prior, param_l2)
        # not detached here: a compiled step that returns detached aliases of its outputs loses the
        # loss's gradient (torch 2.13); the trainer detaches them
        return main + distill_weight * dis, main, dis, prior
