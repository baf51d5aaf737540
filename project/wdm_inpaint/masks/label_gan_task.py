"""Training the label-generator GAN as a :class:`~wdm_inpaint.training.task.TrainingTask` of the generic trainer.

Objectives (``objective.kind``):

* ``alpha_wgan_gp`` (default, the recipe of the published generator): generator ``G``, encoder ``E``, critic
  ``D`` and code critic ``C`` (spectral norm on ``D`` and ``C``). Per step, with real labels ``x``,
  ``z_hat = E(x)``, ``x_hat = G(z_hat)``, ``z ~ N(0, I)`` and ``x_z = G(z)``:

  - ``G`` and ``E``: ``-D(x_hat) - D(x_z) - C(z_hat) + rec_weight * (MSE(x_hat, x) + gdl_weight * GDL(x_hat, x))``;
  - ``D``: ``D(x_hat) + D(x_z) - 2 D(x) + gp_weight * (GP(x, x_hat) + GP(x, x_z))``;
  - ``C``: ``C(z_hat) - C(z) + gp_weight * GP(z, z_hat)``;

  where means are over the batch, ``GP`` is the WGAN-GP penalty ``(||grad||_2 - 1)^2`` at random interpolates
  and ``GDL`` the gradient-difference loss (mean absolute difference of the absolute finite differences along
  each axis, summed over axes).
* ``wgan_gp``: only ``G`` and ``D``; ``G``: ``-D(G(z))``; ``D``: ``D(G(z)) - D(x) + gp_weight * GP(x, G(z))``.

Labels are fed as values in {-1, 1} (the generator ends in tanh). The critic takes ``critic_steps`` updates per
generator update, all on the step's batch.

Checkpoints hold the generator as a self-describing generator checkpoint under ``"generator"`` (EMA weights
when EMA is on), so ``sample-labels`` and ``make-masks --gan`` read a training checkpoint directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from wdm_inpaint.config import ConfigError
from wdm_inpaint.masks.label_data import LabelDataConfig
from wdm_inpaint.masks.label_gan_nets import CodeDiscriminator, Critic, Encoder, LabelGANNetsConfig
from wdm_inpaint.masks.label_generator import (
    WT_CHANNEL,
    LabelGenerator,
    LabelGeneratorConfig,
    convert_state_dict,
    generator_checkpoint,
    load_label_generator,
)
from wdm_inpaint.training.config import TrainerConfig
from wdm_inpaint.training.task import OptimizerSetup, TrainingTask, build_adamw, unwrap

logger = logging.getLogger(__name__)

TRAINING_FORMAT = "wdm-inpaint/label-gan-training"
"""Format marker of label-GAN training checkpoints."""

LABEL_KEY = "label"
"""Batch key of the (B, 3, 64, 64, 64) uint8 training labels."""


@dataclass(frozen=True)
class LabelGANObjectiveConfig:
    """Losses of the label GAN.

    Attributes:
        kind: ``alpha_wgan_gp`` (encoder + code critic + reconstruction) or ``wgan_gp`` (generator + critic).
        gp_weight: weight of the gradient penalties.
        rec_weight: weight of the reconstruction loss (alpha-GAN only).
        gdl_weight: weight of the gradient-difference loss inside the reconstruction loss.
        critic_steps: critic updates per generator update.
    """

    kind: Literal["alpha_wgan_gp", "wgan_gp"] = "alpha_wgan_gp"
    gp_weight: float = 10.0
    rec_weight: float = 10.0
    gdl_weight: float = 1.0
    critic_steps: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("alpha_wgan_gp", "wgan_gp"):
            raise ConfigError(f"objective.kind must be 'alpha_wgan_gp' or 'wgan_gp', got {self.kind!r}")
        if min(self.gp_weight, self.rec_weight, self.gdl_weight) < 0:
            raise ConfigError("objective.gp_weight, rec_weight and gdl_weight must be >= 0")
        if self.critic_steps < 1:
            raise ConfigError(f"objective.critic_steps must be >= 1, got {self.critic_steps}")


@dataclass(frozen=True)
class LabelGANTrainConfig(TrainerConfig):
    """A label-GAN training run (the YAML of ``wdm-inpaint train-label-gan``).

    Attributes:
        generator: the generator stored in every checkpoint.
        nets: widths of the critic, encoder and code critic.
        objective: losses.
        data: training shapes.
        init_generator: generator weights to start from (ours or a published ``LabelGenerator.pth``).
    """

    generator: LabelGeneratorConfig = field(default_factory=LabelGeneratorConfig)
    nets: LabelGANNetsConfig = field(default_factory=LabelGANNetsConfig)
    objective: LabelGANObjectiveConfig = field(default_factory=LabelGANObjectiveConfig)
    data: LabelDataConfig = field(default_factory=LabelDataConfig)
    init_generator: str | None = None


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """WGAN-GP penalty ``mean((||d critic / d x||_2 - 1)^2)`` at random interpolates of ``real`` and ``fake``.

    Args:
        critic: maps (B, ...) to (B,) scores.
        real: (B, ...) real samples.
        fake: (B, ...) generated samples (detached).
        generator: draws the interpolation weights.
    """
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    eps = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def gradient_difference_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``| |d pred| - |d target| |`` of the finite differences along each spatial axis, summed over axes.

    Args:
        pred, target: (B, C, D, H, W) volumes.
    """
    total = pred.new_zeros(())
    for dim in (2, 3, 4):
        total = total + (pred.diff(dim=dim).abs() - target.diff(dim=dim).abs()).abs().mean()
    return total


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class LabelGANTask(TrainingTask):
    """The label GAN for the generic trainer (manual optimisation with one optimiser per player).

    Args:
        config: the run config (generator, nets and objective sections are used).
    """

    manual_optimization: ClassVar[bool] = True

    def __init__(self, config: LabelGANTrainConfig) -> None:
        super().__init__()
        self.config = config
        gcfg = config.generator
        self.generator = LabelGenerator(gcfg)
        self.critic = Critic(config.nets.critic_channel, gcfg.out_channels)
        self.alpha = config.objective.kind == "alpha_wgan_gp"
        if self.alpha:
            self.encoder = Encoder(gcfg.noise_dim, config.nets.encoder_channel, gcfg.out_channels)
            self.code_critic = CodeDiscriminator(gcfg.noise_dim, config.nets.code_hidden)
        if config.init_generator:
            init, init_cfg = load_label_generator(config.init_generator)
            if init_cfg != gcfg:
                raise ConfigError(
                    f"init_generator {config.init_generator}: its config {init_cfg} differs from generator {gcfg}"
                )
            self.generator.load_state_dict(init.state_dict())
            logger.info("generator initialised from %s", config.init_generator)

    # ------------------------------------------------------------------ trainer hooks

    def modules(self) -> dict[str, nn.Module]:
        """``generator`` and ``critic`` (+ ``encoder`` and ``code_critic`` for the alpha-GAN)."""
        mods: dict[str, nn.Module] = {"generator": self.generator, "critic": self.critic}
        if self.alpha:
            mods.update(encoder=self.encoder, code_critic=self.code_critic)
        return mods

    def ema_module_names(self) -> list[str]:
        """Only the generator gets an EMA copy."""
        return ["generator"]

    def configure_optimizers(self, config: Any, max_steps: int) -> dict[str, OptimizerSetup]:
        """AdamW for ``generator`` (generator + encoder), ``critic`` and ``code_critic``."""
        gen_params = list(self.generator.parameters()) + (list(self.encoder.parameters()) if self.alpha else [])
        setups = {
            "generator": build_adamw(gen_params, config, max_steps),
            "critic": build_adamw(self.critic.parameters(), config, max_steps),
        }
        if self.alpha:
            setups["code_critic"] = build_adamw(self.code_critic.parameters(), config, max_steps)
        return setups

    def _update(self, name: str, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"non-finite {name} loss at step {self.global_step + 1}; lower optim.lr or set optim.grad_clip_norm"
            )
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.clip_gradients(name)
        opt.step()

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One generator update and ``critic_steps`` critic updates (plus a code-critic update for the alpha-GAN)."""
        obj = self.config.objective
        x = batch[LABEL_KEY].float() * 2 - 1
        n = x.shape[0]
        noise_dim = self.config.generator.noise_dim
        G, D = self.generator, self.critic
        out: dict[str, torch.Tensor] = {}

        # ---- generator (and encoder)
        _set_requires_grad(D, False)
        if self.alpha:
            _set_requires_grad(self.code_critic, False)
        z = torch.randn(n, noise_dim, generator=generator, device=x.device)
        with self.autocast():
            x_z = G(z)
            adv = -D(x_z).mean()
            if self.alpha:
                z_hat = self.encoder(x)
                x_hat = G(z_hat)
                adv = adv - D(x_hat).mean()
                code = -self.code_critic(z_hat).mean()
                mse = F.mse_loss(x_hat.float(), x)
                gdl = gradient_difference_loss(x_hat.float(), x)
                rec = mse + obj.gdl_weight * gdl
                loss_g = adv + code + obj.rec_weight * rec
                out.update(loss_code=code.detach(), rec_mse=mse.detach(), rec_gdl=gdl.detach())
            else:
                loss_g = adv
        self._update("generator", loss_g)
        _set_requires_grad(D, True)
        out.update(loss=loss_g.detach(), loss_g=loss_g.detach(), loss_adv=adv.detach())

        # ---- critic
        fakes = [x_z.detach().float()] + ([x_hat.detach().float()] if self.alpha else [])
        real_weight = float(len(fakes))
        for _ in range(obj.critic_steps):
            with self.autocast():
                d_real = D(x).mean()
                d_fake = sum(D(f).mean() for f in fakes)
                gp = sum(gradient_penalty(D, x, f, generator) for f in fakes)
                loss_d = d_fake - real_weight * d_real + obj.gp_weight * gp
            self._update("critic", loss_d)
        out.update(
            loss_d=loss_d.detach(), gp=gp.detach(), wasserstein=(real_weight * d_real - d_fake).detach() / real_weight
        )

        # ---- code critic
        if self.alpha:
            C = self.code_critic
            _set_requires_grad(C, True)
            z_prior = torch.randn(n, noise_dim, generator=generator, device=x.device)
            z_enc = z_hat.detach().float()
            with self.autocast():
                gp_c = gradient_penalty(C, z_prior, z_enc, generator)
                loss_c = C(z_enc).mean() - C(z_prior).mean() + obj.gp_weight * gp_c
            self._update("code_critic", loss_c)
            out.update(loss_c=loss_c.detach())
        return out

    def log_images(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Middle slices of the whole-tumour channel: a real label and a generated one (fixed latent)."""
        x = batch[LABEL_KEY][0, WT_CHANNEL].float()
        g = torch.Generator(device="cpu").manual_seed(0)
        z = torch.randn(1, self.config.generator.noise_dim, generator=g).to(x.device)
        G = unwrap(self.generator)
        was_training = G.training
        G.eval()
        fake = (G(z)[0, WT_CHANNEL].float() + 1) / 2
        G.train(was_training)
        mid = x.shape[-1] // 2
        return {"real_wt": x[..., mid].clamp(0, 1), "generated_wt": fake[..., mid].clamp(0, 1)}

    # ------------------------------------------------------------------ checkpoints

    def write_checkpoint(
        self,
        path: Path,
        module_states: dict[str, dict[str, torch.Tensor]],
        ema_states: dict[str, dict[str, torch.Tensor]] | None,
        training_state: dict[str, Any],
    ) -> None:
        """Training checkpoint with an embedded generator checkpoint (EMA weights when EMA is on)."""
        gen_state = (ema_states or {}).get("generator", module_states["generator"])
        exported = LabelGenerator(self.config.generator)
        exported.load_state_dict(convert_state_dict(gen_state, self.config.generator, "generator"))
        torch.save(
            {
                "format": TRAINING_FORMAT,
                "generator": generator_checkpoint(exported, {"step": int(training_state.get("step", 0))}),
                "modules": module_states,
                "ema": ema_states,
                "training_state": training_state,
            },
            path,
        )

    def read_checkpoint(self, path: Path) -> tuple[dict[str, dict], dict[str, dict] | None, dict[str, Any]]:
        """Read a checkpoint of :meth:`write_checkpoint`."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != TRAINING_FORMAT:
            raise ValueError(f"{path}: not a label-GAN training checkpoint (format {TRAINING_FORMAT!r} expected)")
        return payload["modules"], payload.get("ema"), payload["training_state"]


__all__ = [
    "LABEL_KEY",
    "TRAINING_FORMAT",
    "LabelGANObjectiveConfig",
    "LabelGANTask",
    "LabelGANTrainConfig",
    "gradient_difference_loss",
    "gradient_penalty",
]
