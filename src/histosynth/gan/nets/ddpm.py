"""DDPM (Ho et al. 2020), Table 1's diffusion baseline: a ``diffusers`` UNet2DModel that predicts the noise,
trained with DDPMScheduler's forward process and sampled with DDIM (eta = 0) for evaluation.

With eta = 0 DDIM is deterministic, so :class:`DDPMGenerator` is a generator like the GANs': ``G(z)`` maps a
flat N(0, I) vector of ``C*H*W`` values (the initial noise x_T) to images in [-1, 1]. That is what lets the
bundle, ``histosynth evaluate`` and the registry treat it like any other generator. It is not exported to ONNX
or served through Triton: a sample is ``sample_steps`` UNet passes, not one graph.
"""

from __future__ import annotations

import torch
from torch import nn

from histosynth.errors import ConfigError


def _diffusers():
    try:
        import diffusers
    except ImportError as e:
        raise ConfigError("method=ddpm needs the diffusers package, which is not installed", "pip install -e . (diffusers is pinned in pyproject.toml)") from e
    return diffusers


class DDPMGenerator(nn.Module):
    """UNet noise predictor + DDIM sampler. ``levels`` resolutions of ``base_channels * (1, 2, 4, 4, ..)``
    channels; with ``attention`` the two lowest resolutions and the middle block use self-attention."""

    def __init__(
        self,
        image_size: int,
        channels: int = 3,
        base_channels: int = 64,
        levels: int = 4,
        layers_per_block: int = 2,
        attention: bool = True,
        train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        sample_steps: int = 50,
    ):
        super().__init__()
        d = _diffusers()
        if not 1 <= sample_steps <= train_timesteps:
            raise ConfigError(f"ddpm.sample_steps={sample_steps} must be in [1, ddpm.train_timesteps={train_timesteps}]", "DDIM usually samples with 50 steps")
        if image_size % 2 ** (levels - 1):
            raise ConfigError(f"data.image_size={image_size} cannot be halved {levels - 1} times (ddpm.levels={levels})", "use fewer ddpm.levels")
        widths = tuple(base_channels * min(2**i, 4) for i in range(levels))
        attn = [attention and i >= levels - 2 for i in range(levels)]
        self.unet = d.UNet2DModel(
            sample_size=image_size, in_channels=channels, out_channels=channels, block_out_channels=widths, layers_per_block=layers_per_block,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
            add_attention=attention, norm_num_groups=min(32, base_channels), attention_head_dim=min(8, base_channels),
        )  # fmt: skip
        try:
            self.noise_scheduler = d.DDPMScheduler(num_train_timesteps=train_timesteps, beta_schedule=beta_schedule)
        except (NotImplementedError, ValueError) as e:
            raise ConfigError(f"ddpm.beta_schedule={beta_schedule!r}: {e}", "use linear, scaled_linear or squaredcos_cap_v2") from e
        self.sampler = d.DDIMScheduler(num_train_timesteps=train_timesteps, beta_schedule=beta_schedule, clip_sample=True)
        self.shape = (channels, image_size, image_size)
        self.sample_steps = int(sample_steps)

    def noise_loss(self, x0: torch.Tensor) -> torch.Tensor:
        """The DDPM objective: mean ||eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t)||^2, t ~ U{0..T-1}."""
        eps = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        noisy = self.noise_scheduler.add_noise(x0, eps, t)
        return nn.functional.mse_loss(self.unet(noisy, t).sample.float(), eps.float())

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """DDIM (eta = 0) from x_T = ``z`` reshaped to (B, C, H, W): deterministic in ``z``."""
        x = z.reshape(z.shape[0], *self.shape)
        self.sampler.set_timesteps(self.sample_steps)
        for t in self.sampler.timesteps:
            eps = self.unet(x, t.to(x.device)).sample
            x = self.sampler.step(eps.float(), int(t), x.float(), eta=0.0).prev_sample
        return x.clamp(-1.0, 1.0)


def build_ddpm(spec: dict) -> DDPMGenerator:
    """From a bundle spec (``arch: ddpm``); ``latent_dim`` must be C*H*W."""
    keys = ("base_channels", "levels", "layers_per_block", "attention", "train_timesteps", "beta_schedule", "sample_steps")
    return DDPMGenerator(image_size=spec["image_size"], channels=spec.get("channels", 3), **{k: spec[k] for k in keys if k in spec})
