//! Whisper's log-mel spectrogram, as its `log_mel_spectrogram` computes it:
//!
//! ```text
//!     x = audio + `padding` zeros, reflected by N_FFT/2 at each end
//!     S[f, t] = |FFT(hann(N_FFT) * x[t*HOP .. t*HOP + N_FFT])[f]|^2    t < len/HOP, f <= N_FFT/2
//!     M = filters (n_mels, N_FFT/2 + 1) . S         librosa's Slaney-scale, Slaney-normed mel filters
//!     L = log10(max(M, 1e-10));  L = max(L, max(L) - 8);  L = (L + 4) / 4
//! ```
//!
//! On the CPU in f64 (`rustfft`), returned as f32.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// FFT window length in samples (25 ms at 16 kHz).
pub const N_FFT: usize = 400;
/// Samples between successive frames (10 ms at 16 kHz).
pub const HOP: usize = 160;
/// Frames in one 30-second window of 16 kHz audio.
pub const WINDOW_FRAMES: usize = 3000;

/// A log-mel spectrogram: `mels` rows of `frames` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Mel {
    /// Mel bands (rows): 80 or 128, as the model's encoder expects.
    pub mels: usize,
    /// Time frames (columns), one per [`HOP`] samples.
    pub frames: usize,
    /// `mels * frames` log-mel values, row-major.
    pub data: Vec<f32>,
}

/// Hz to mels on the Slaney scale (linear below 1 kHz, logarithmic above), as librosa's
/// `hz_to_mel(htk=False)`.
fn hz_to_mel(f: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let logstep = 6.4f64.ln() / 27.0;
    match f >= min_log_hz {
        true => min_log_hz / f_sp + (f / min_log_hz).ln() / logstep,
        false => f / f_sp,
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let (min_log_mel, logstep) = (min_log_hz / f_sp, 6.4f64.ln() / 27.0);
    match m >= min_log_mel {
        true => min_log_hz * ((m - min_log_mel) * logstep).exp(),
        false => m * f_sp,
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels)`: triangles between mel-spaced edges from 0 to
/// sr/2, each scaled to unit area (Slaney). (n_mels, n_fft/2 + 1), row-major.
pub fn filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f64> {
    let bins = n_fft / 2 + 1;
    let nyquist = f64::from(sample_rate) / 2.0;
    let freqs: Vec<f64> = (0..bins)
        .map(|i| nyquist * i as f64 / (bins - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0.0; n_mels * bins];
    for m in 0..n_mels {
        let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (right - left);
        for (b, &f) in freqs.iter().enumerate() {
            let rising = (f - left) / (centre - left);
            let falling = (right - f) / (right - centre);
            w[m * bins + b] = rising.min(falling).max(0.0) * norm;
        }
    }
    w
}

/// Index `i` (which may run `N_FFT/2` past either end) of `x` reflected at its ends, without
/// repeating the edge sample, as `torch.stft(center=True)` pads.
fn reflect(x: &[f32], i: isize) -> f32 {
    let n = x.len() as isize;
    if n == 1 {
        return x[0];
    }
    let period = 2 * (n - 1);
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - j;
    }
    x[j as usize]
}

/// The log-mel spectrogram of 16 kHz `samples` followed by `padding` zeros, `n_mels` bins
/// (80 for Whisper base): `(samples.len() + padding) / HOP` frames.
pub fn log_mel(samples: &[f32], padding: usize, n_mels: usize) -> Mel {
    let mut x = samples.to_vec();
    x.resize(samples.len() + padding, 0.0);
    if x.is_empty() {
        x.push(0.0);
    }
    let frames = x.len() / HOP;
    let bins = N_FFT / 2 + 1;
    let window: Vec<f64> = (0..N_FFT)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
        .collect();
    let fft = FftPlanner::<f64>::new().plan_fft_forward(N_FFT);
    let mut power = vec![0.0f64; bins * frames];
    let mut buf = vec![Complex::new(0.0, 0.0); N_FFT];
    for t in 0..frames {
        let start = (t * HOP) as isize - (N_FFT / 2) as isize;
        for (i, c) in buf.iter_mut().enumerate() {
            *c = Complex::new(f64::from(reflect(&x, start + i as isize)) * window[i], 0.0);
        }
        fft.process(&mut buf);
        for (f, c) in buf[..bins].iter().enumerate() {
            power[f * frames + t] = c.norm_sqr();
        }
    }
    let w = filters(super::SAMPLE_RATE, N_FFT, n_mels);
    let mut log = vec![0.0f64; n_mels * frames];
    for m in 0..n_mels {
        let row = &mut log[m * frames..(m + 1) * frames];
        for (f, &wf) in w[m * bins..(m + 1) * bins].iter().enumerate() {
            if wf != 0.0 {
                for (r, p) in row.iter_mut().zip(&power[f * frames..(f + 1) * frames]) {
                    *r += wf * p;
                }
            }
        }
        for v in row.iter_mut() {
            *v = v.max(1e-10).log10();
        }
    }
    let top = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let data = log
        .iter()
        .map(|&v| ((v.max(top - 8.0) + 4.0) / 4.0) as f32)
        .collect();
    Mel {
        mels: n_mels,
        frames,
        data,
    }
}
