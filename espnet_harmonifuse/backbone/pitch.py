"""Frame-level pitch features on the filterbank's frame grid (Kaldi's fbank+pitch idea).

Forty mel bins cannot resolve the harmonics of a voice, so an fbank encoder sees the pitch
level and contour only faintly; emotion is carried largely by them. ``PitchFeatures`` adds two
numbers per frame: the log-F0 in octaves relative to 150 Hz (0 in unvoiced frames) and the
NCCF peak (a voicing strength in [0, 1]).
"""

import math
from typing import Tuple

import torch


class PitchFeatures(torch.nn.Module):
    """Normalised cross-correlation (NCCF) pitch tracker, one frame per filterbank frame
    (centred, ``hop_length`` apart), as in Kaldi's pitch extractor without its Viterbi smoothing.

    Args:
        fs: sample rate.
        win_length: analysis window (samples).
        hop_length: frame shift (samples); equal to the filterbank's.
        f0_min, f0_max: search range (Hz).
        voicing_threshold: frames whose NCCF peak is below it count as unvoiced.
    """

    def __init__(
        self,
        fs: int = 16000,
        win_length: int = 400,
        hop_length: int = 160,
        f0_min: float = 60.0,
        f0_max: float = 400.0,
        voicing_threshold: float = 0.4,
    ):
        super().__init__()
        if not 0 < f0_min < f0_max < fs / 2:
            raise ValueError(f"pitch search range must satisfy 0 < f0_min < f0_max < fs/2, got {f0_min}, {f0_max}")
        self.fs, self.win, self.hop = fs, win_length, hop_length
        self.lag_min = int(fs // f0_max)
        self.lag_max = int(math.ceil(fs / f0_min))
        self.threshold = voicing_threshold

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``speech (B, L)`` -> ``(features (B, T, 2), frame lengths (B,))`` with ``T = L // hop + 1``."""
        w, lag_max = self.win, self.lag_max
        x = torch.nn.functional.pad(speech.float(), (w // 2, w // 2 + lag_max))
        seg = x.unfold(1, w + lag_max, self.hop)  # (B, T, w + lag_max): each frame and what follows
        seg = seg - seg[..., :w].mean(-1, keepdim=True)
        # normalised cross-correlation of the frame's w samples with the same length lag l later
        n_fft = 1 << (2 * (w + lag_max) - 1).bit_length()
        head = torch.fft.rfft(seg[..., :w], n=n_fft)
        cross = torch.fft.irfft(head.conj() * torch.fft.rfft(seg, n=n_fft), n=n_fft)[..., : lag_max + 1]
        cum = torch.nn.functional.pad(seg.pow(2).cumsum(-1), (1, 0))
        lags = torch.arange(lag_max + 1, device=seg.device)
        energy = cum[..., lags + w] - cum[..., lags]  # sum of x[l : l + w]^2
        nccf = cross / (energy[..., :1] * energy).clamp(min=1e-10).sqrt()
        # the shortest lag whose local peak is within 10 % of the highest: multiples of the
        # period (subharmonics) correlate as well as the period itself
        r = nccf[..., self.lag_min - 1 :]
        is_peak = (r[..., 1:-1] >= r[..., :-2]) & (r[..., 1:-1] >= r[..., 2:])
        cand = r[..., 1:-1] * is_peak
        best = cand.max(-1, keepdim=True).values
        idx = (cand >= 0.9 * best).float().argmax(-1)
        peak = cand.gather(-1, idx.unsqueeze(-1)).squeeze(-1).clamp(0.0, 1.0)
        lag = (idx + self.lag_min).float()
        voiced = peak >= self.threshold
        octaves = torch.log2(self.fs / lag / 150.0) * voiced
        out_lengths = torch.div(lengths, self.hop, rounding_mode="floor") + 1
        return torch.stack([octaves, peak], dim=-1), out_lengths
