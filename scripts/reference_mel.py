#!/usr/bin/env python3
"""Independent float64 reference for Whisper's log-mel spectrogram, in plain numpy.

    python3 scripts/reference_mel.py IN.f32 PADDING N_MELS OUT.f32

IN.f32 holds 16 kHz samples (little-endian float32); OUT.f32 gets the spectrogram,
(N_MELS, frames) row-major. It follows openai-whisper's `log_mel_spectrogram`: a periodic
Hann window of 400, hop 160, `torch.stft(center=True)`'s reflection, the last frame dropped,
librosa's Slaney mel filters (written out here, not imported), log10 clamped at 1e-10, then
floored 8 below the maximum and scaled by (x + 4) / 4. Shares no code with kiln.
"""
import sys

import numpy as np

SR, N_FFT, HOP = 16000, 400, 160


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log = f >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / (np.log(6.4) / 27.0), mel)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    hz = m * (200.0 / 3)
    return np.where(m >= 15.0, 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0)), hz)


def mel_filters(n_mels):
    fft_freqs = np.linspace(0, SR / 2, 1 + N_FFT // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SR / 2), n_mels + 2))
    fdiff = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def log_mel(x, padding, n_mels):
    x = np.concatenate([x.astype(np.float64), np.zeros(padding)])
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    frames = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
    power = spec[:-1].T  # (bins, frames), the last frame dropped
    log = np.log10(np.maximum(mel_filters(n_mels) @ power, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


def main():
    x = np.fromfile(sys.argv[1], dtype="<f4")
    out = log_mel(x, int(sys.argv[2]), int(sys.argv[3]))
    out.astype("<f4").tofile(sys.argv[4])


if __name__ == "__main__":
    main()
