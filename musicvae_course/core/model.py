"""The model card's convolutional VAE and its loss.

Architecture: "Music VAE - CNN pretrained on the Lakh MIDI Dataset"
(hub repo ``XR-Lin/music-vae-lmd``, MIT). Taught in
``notebooks/01_loading_the_pretrained_vae.ipynb``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .pianoroll import N_PITCHES, SEGMENT_STEPS, roll_batch

ENCODED_SHAPE = (256, 5, 2)  #: encoder output per example: channels, pitch, time
# log_var is clamped to this range before exp(): on early or random batches at
# lr 1e-3 it can spike, exp() overflows and clipped gradients become NaN.
LOG_VAR_RANGE = (-12.0, 8.0)
MAX_SAMPLES = 1 << 16  #: most prior samples one ``sample`` call decodes (46 MB of float32 output each 4,096)
#: prior samples decoded at a time: 16,384 in one pass peaked at 5.4 GB, MAX_SAMPLES would have needed about 21 GB
SAMPLE_CHUNK = 4096


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(c_out)]


def _deconv_block(c_in: int, c_out: int, output_padding=0, batchnorm: bool = True) -> list[nn.Module]:
    block = [
        nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, output_padding=output_padding),
        nn.ReLU(),
    ]
    return block + [nn.BatchNorm2d(c_out)] if batchnorm else block


class MusicVAE(nn.Module):
    """Convolutional VAE on 2-bar piano rolls, layer for layer as on the card.

    Input and output: ``(B, 1, 88, 32)`` float32 in [0, 1]; pitch 21 + row,
    one column per sixteenth note.

    Encoder: four ``Conv2d(k=4, s=2, p=1)`` + ReLU + BatchNorm
    (1 -> 32 -> 64 -> 128 -> 256 channels; 88x32 -> 44x16 -> 22x8 -> 11x4 -> 5x2),
    flatten to 2560, then two ``Linear(2560, latent_dim)`` for ``mu`` and
    ``log_var``.

    Decoder: ``Linear(latent_dim, 2560)``, reshape to ``(256, 5, 2)``, four
    ``ConvTranspose2d(k=4, s=2, p=1)`` (the first with ``output_padding=(1, 0)``
    so 5 -> 11 rows) back to ``(1, 88, 32)``, then a sigmoid.

    Activation choice: the card does not say whether the decoder has anything
    between its transposed convolutions. Without a non-linearity the four
    would collapse into one linear map, so this kit mirrors the encoder:
    ReLU + BatchNorm after each of the first three, none after the last
    (``decoder_batchnorm=True``, the default). The card's listing may also mean
    ReLU alone (``decoder_batchnorm=False``): ``load_pretrained`` builds whichever
    variant a checkpoint's tensors describe.

    Parameters: 3,348,545 trainable at ``latent_dim=256`` (the card says
    "~4.2M"; its listed layers, with this BatchNorm, add up to 3.35M);
    3,348,097 without the decoder's BatchNorm.

    Inputs: ``x`` may be bool, integer or any float type (cast to the model's
    float type); complex or non-tensor inputs are refused by name, and in eval
    mode so are NaN and values outside [0, 1].

    The sigmoid is applied only at the edge (``forward``, ``decode``):
    ``decode_logits`` and ``vae_loss`` work on logits, which keeps training
    numerically safe and allowed under CUDA autocast.
    """

    def __init__(self, latent_dim: int = 256, decoder_batchnorm: bool = True):
        super().__init__()
        from .midi_limits import MAX_LATENT_DIM

        if isinstance(latent_dim, bool) or int(latent_dim) != latent_dim or not 1 <= latent_dim <= MAX_LATENT_DIM:
            raise ValueError(
                f"latent_dim must be a whole number in 1..{MAX_LATENT_DIM} (MAX_LATENT_DIM), got {latent_dim}"
            )
        self.latent_dim = int(latent_dim)
        self.decoder_batchnorm = bool(decoder_batchnorm)
        flat = math.prod(ENCODED_SHAPE)
        self.encoder = nn.Sequential(
            *_conv_block(1, 32), *_conv_block(32, 64), *_conv_block(64, 128), *_conv_block(128, 256), nn.Flatten()
        )
        self.fc_mu = nn.Linear(flat, self.latent_dim)
        self.fc_log_var = nn.Linear(flat, self.latent_dim)
        self.decoder_input = nn.Linear(self.latent_dim, flat)
        self.decoder = nn.Sequential(
            *_deconv_block(256, 128, output_padding=(1, 0), batchnorm=self.decoder_batchnorm),
            *_deconv_block(128, 64, batchnorm=self.decoder_batchnorm),
            *_deconv_block(64, 32, batchnorm=self.decoder_batchnorm),
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, 1, 88, 32)`` in [0, 1] -> ``(mu, log_var)``, each ``(B, latent_dim)``.

        ``log_var`` is clamped to ``LOG_VAR_RANGE`` (see the constant's comment).
        """
        return self.heads(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, 1, 88, 32)`` in [0, 1] -> the encoder's flattened output ``(B, 2560)``, before the two heads."""
        return self.encoder(self._as_input(x))

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features ``h: (B, 2560)`` -> ``(mu, log_var)``; ``log_var`` clamped to ``LOG_VAR_RANGE``.

        Split from ``encode`` for ``core.prior_match``, which refits the log-variance head on ``h``.
        """
        return self.fc_mu(h), self.fc_log_var(h).clamp(*LOG_VAR_RANGE)

    def _as_input(self, x) -> torch.Tensor:
        """Cast what is safe (bool, ints, other float types, numpy arrays) to the model's float type; refuse the
        rest by name. In eval mode NaN and values outside [0, 1] are refused too (training skips the check: a
        device sync per step)."""
        if not torch.is_tensor(x):
            if not hasattr(x, "__array__"):
                raise TypeError(f"x must be a tensor of shape (B, 1, 88, 32), got {type(x).__name__}")
            x = torch.as_tensor(x)
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, N_PITCHES, SEGMENT_STEPS):
            raise ValueError(f"expected x of shape (B, 1, 88, 32), got {tuple(x.shape)}")
        if x.is_complex():
            raise TypeError(f"x must hold real numbers in [0, 1], got dtype {x.dtype}")
        dtype = self.fc_mu.weight.dtype
        if x.dtype != dtype:
            x = x.to(dtype)
        if not self.training and x.numel():
            if torch.isnan(x).any():
                raise ValueError("x contains NaN")
            low, high = float(x.min()), float(x.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(f"x has values in [{low:.3g}, {high:.3g}]; expected a roll in [0, 1]")
        return x

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``z = mu + eps * exp(0.5 * log_var)``, ``eps ~ N(0, I)``; shape of ``mu``."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * log_var)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``z: (B, latent_dim)`` -> logits ``(B, 1, 88, 32)`` (before the sigmoid)."""
        h = self.decoder_input(z).view(-1, *ENCODED_SHAPE)
        return self.decoder(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z: (B, latent_dim)`` -> note probabilities ``(B, 1, 88, 32)`` in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward_logits(self, x: torch.Tensor):
        """Like ``forward`` but returns logits: ``(logits, mu, log_var)``. Used to train."""
        mu, log_var = self.encode(x)
        z = self.reparameterize(mu, log_var) if self.training else mu
        return self.decode_logits(z), mu, log_var

    def forward(self, x: torch.Tensor):
        """The card's call: ``x_recon, mu, log_var = model(x)``.

        In training mode ``z`` is sampled; in eval mode ``z = mu`` so a
        reconstruction is deterministic. ``x_recon`` is ``(B, 1, 88, 32)`` in [0, 1].
        """
        logits, mu, log_var = self.forward_logits(x)
        return torch.sigmoid(logits), mu, log_var

    @torch.no_grad()
    def sample(
        self, n: int = 4, device=None, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Decode ``n`` draws ``z ~ N(0, temperature^2 I)``: ``(n, 1, 88, 32)`` in [0, 1].

        Taught in ``notebooks/02_latent_space_with_widgets.ipynb`` (lower
        temperature is not "safer" here: it gives more empty bars).
        """
        if isinstance(n, bool) or not hasattr(n, "__index__") or not 1 <= int(n) <= MAX_SAMPLES:
            raise ValueError(f"n must be an int in 1..{MAX_SAMPLES} (MAX_SAMPLES), got {n!r}")
        n = int(n)
        try:
            valid = math.isfinite(float(temperature)) and float(temperature) >= 0
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        device = torch.device(device) if device is not None else self.device
        z = torch.randn(
            n, self.latent_dim, generator=generator, device=generator.device if generator is not None else device
        )
        z = z.to(device) * temperature
        first = self.decode(z[:SAMPLE_CHUNK])
        if n <= SAMPLE_CHUNK:
            return first
        out = first.new_empty((n, *first.shape[1:]))
        out[:SAMPLE_CHUNK] = first
        for start in range(SAMPLE_CHUNK, n, SAMPLE_CHUNK):  # in eval mode each sample decodes alone: same values
            out[start : start + SAMPLE_CHUNK] = self.decode(z[start : start + SAMPLE_CHUNK])
        return out

    @torch.no_grad()
    def interpolate(self, z1: torch.Tensor, z2: torch.Tensor, steps: int = 8, method: str = "linear") -> torch.Tensor:
        """Decode ``steps`` points from ``z1`` to ``z2`` (both ends included).

        Args:
            z1, z2: ``(latent_dim,)`` or ``(1, latent_dim)``.
            steps: number of points, >= 2.
            method: ``"linear"`` or ``"slerp"`` (spherical; keeps the norm of
                typical prior samples, so midpoints are not washed out).

        Returns:
            ``(steps, 1, 88, 32)`` probabilities in [0, 1].
        """
        return self.decode(interpolate_latents(z1, z2, steps, method).to(self.device))


INTERPOLATION_METHODS = ("linear", "slerp")


def interpolate(z1: torch.Tensor, z2: torch.Tensor, t, method: str = "linear") -> torch.Tensor:
    """The kit's one interpolation: the points at fractions ``t`` from ``z1`` to ``z2``.

    Args:
        z1, z2: ``(latent_dim,)`` or ``(1, latent_dim)``, same size.
        t: a fraction or a sequence/1-D tensor of fractions in [0, 1]; 0 gives ``z1`` and 1 gives ``z2`` exactly.
        method: ``"linear"`` (``(1 - t) z1 + t z2``) or ``"slerp"`` (spherical: along the great circle, so the
            norm of typical prior samples is kept and midpoints are not washed out). For (anti)parallel
            vectors slerp is undefined (the angle is 0 or pi); within 1e-6 rad of parallel it falls back to
            linear, as is usual.

    Returns:
        ``(len(t), latent_dim)`` float32 on ``z1``'s device.

    Taught in ``notebooks/02_latent_space_with_widgets.ipynb``.
    """
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"method must be one of {INTERPOLATION_METHODS}, got {method!r}")
    a, b = z1.reshape(-1).float(), z2.reshape(-1).float().to(z1.device)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}")
    t = torch.as_tensor(t, dtype=torch.float32, device=a.device).reshape(-1, 1)
    if (~torch.isfinite(t) | (t < 0) | (t > 1)).any():  # NaN passed the comparisons and gave a NaN code
        raise ValueError(f"t must be in [0, 1], got {t.reshape(-1).tolist()}")
    if method == "linear":
        points = (1 - t) * a + t * b
    else:
        cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
        omega = torch.arccos(cos.clamp(-1.0, 1.0))
        if omega.abs() < 1e-6:  # parallel vectors: slerp degenerates to lerp
            points = (1 - t) * a + t * b
        else:
            points = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    # exact ends, whatever rounding the formulas add
    points = torch.where(t == 0, a, points)
    return torch.where(t == 1, b, points)


def interpolate_latents(z1: torch.Tensor, z2: torch.Tensor, steps: int = 8, method: str = "linear") -> torch.Tensor:
    """``steps`` evenly spaced points from ``z1`` to ``z2``, both ends included: ``(steps, latent_dim)``.

    See :func:`interpolate` and ``MusicVAE.interpolate``.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    return interpolate(z1, z2, torch.linspace(0, 1, steps), method)


def model_input(rolls, name: str = "rolls") -> torch.Tensor:
    """Rolls as the model's input: float32 ``(N, 1, 88, 32)`` (a tensor stays on its device).

    Args:
        rolls: any shape :func:`~musicvae_course.core.pianoroll.roll_batch` accepts, with ``T = 32``; bool or
            probabilities in [0, 1].
        name: the argument's name, for error messages.
    """
    batch, _ = roll_batch(rolls, name)
    if batch.shape[2] != SEGMENT_STEPS:
        raise ValueError(f"{name} must be {SEGMENT_STEPS} steps long (one 2-bar window), got {batch.shape[2]}")
    return torch.as_tensor(batch)[:, None].float()


def input_batches(data, batch_size: int = 256, device=None):
    """Float32 ``(B, 1, 88, 32)`` batches of ``data``, in order, on ``device`` (default: where they are).

    Args:
        data: a ``PianoRollDataset`` (anything with ``.batches``) or rolls as :func:`model_input` accepts.
        batch_size: at most this many segments per batch, >= 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if hasattr(data, "batches"):  # musicvae_course.core.data.PianoRollDataset
        placement = {} if device is None else {"device": device}
        for batch in data.batches(batch_size=batch_size, shuffle=False, **placement):
            yield batch.float()
        return
    rolls = model_input(data, "data")
    for start in range(0, rolls.shape[0], batch_size):
        yield rolls[start : start + batch_size].to(device=device)


def kl_per_dimension(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per example and latent dimension, in nats: ``(B, latent_dim)``."""
    mu, log_var = mu.float(), log_var.float()
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)


def vae_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    beta: float = 1.0,
    free_bits: float = 0.5,
):
    """The card's loss: BCE reconstruction + beta * KL with free bits.

    Args:
        logits: decoder output before the sigmoid, ``(B, 1, 88, 32)``.
        x: target roll, same shape, values in [0, 1].
        mu, log_var: encoder outputs, ``(B, latent_dim)``.
        beta: KL weight (the card anneals it 0 -> 1).
        free_bits: lambda, nats per latent dimension: each dimension's KL,
            averaged over the batch, counts as at least ``free_bits`` in the
            objective, so the encoder is not pushed to use less than that.

    Returns:
        ``(total, reconstruction, kl)``: scalars, nats per example (mean over
        the batch). ``reconstruction`` is the BCE summed over the 88x32 cells;
        ``kl`` is the true KL summed over dimensions (what is reported);
        ``total = reconstruction + beta * sum_j max(KL_j, free_bits)``.

    Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
    """
    batch = x.shape[0]
    # BCE on logits in float32: exact, and allowed under autocast (BCE on
    # sigmoid outputs is not).
    reconstruction = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="sum") / batch
    kl_dims = kl_per_dimension(mu, log_var).mean(dim=0)  # (latent_dim,)
    kl = kl_dims.sum()
    kl_objective = torch.clamp(kl_dims, min=free_bits).sum()
    return reconstruction + beta * kl_objective, reconstruction, kl


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
