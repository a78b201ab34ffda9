//! WAV files to mono f32 samples at 16 kHz: PCM of 16, 24 or 32 bits or IEEE float, one
//! channel or two (averaged), any rate (resampled with `rubato`'s FFT resampler). The
//! container is read by `hound`; everything it or we cannot take is refused by name.

use super::SAMPLE_RATE;
use crate::error::{Error, Result};
use rubato::{FftFixedInOut, Resampler};

/// Decoded audio.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    /// Mono samples in [-1, 1] at [`SAMPLE_RATE`].
    pub samples: Vec<f32>,
    /// What the file held, for messages.
    pub source_rate: u32,
    /// Channels in the file (two are averaged to one).
    pub source_channels: u16,
}

impl Audio {
    /// Duration of the decoded audio in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(SAMPLE_RATE)
    }
}

/// Decode the WAV file `bytes` (named `origin` in errors) to 16 kHz mono.
pub fn read(origin: &str, bytes: &[u8]) -> Result<Audio> {
    let bad = |what: String| Error::load(origin, what);
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("not a WAV file we can read: {e}")))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.channels > 2 {
        return Err(bad(format!(
            "{} channels; kiln reads mono or stereo (mix it down first, e.g. `ffmpeg -i IN -ac 1 OUT.wav`)",
            spec.channels
        )));
    }
    if spec.sample_rate == 0 {
        return Err(bad("a sample rate of 0 Hz".into()));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<std::result::Result<_, _>>(),
        (hound::SampleFormat::Int, bits @ (16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<std::result::Result<_, _>>()
        }
        (format, bits) => {
            return Err(bad(format!(
                "{bits}-bit {} samples; kiln reads 16-, 24- or 32-bit PCM and 32-bit float",
                match format {
                    hound::SampleFormat::Float => "float",
                    hound::SampleFormat::Int => "integer",
                }
            )));
        }
    }
    .map_err(|e| bad(format!("the samples are cut short or unreadable: {e}")))?;
    let channels = usize::from(spec.channels);
    if interleaved.len() < channels {
        return Err(bad(
            "no samples: the file holds zero seconds of audio".into()
        ));
    }
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok(Audio {
        samples: resample(&mono, spec.sample_rate, SAMPLE_RATE)
            .map_err(|e| bad(format!("resampling from {} Hz: {e}", spec.sample_rate)))?,
        source_rate: spec.sample_rate,
        source_channels: spec.channels,
    })
}

/// `samples` at `from` Hz to `to` Hz, band-limited (FFT resampling), delay removed: the
/// result holds `len * to / from` samples, rounded.
pub fn resample(samples: &[f32], from: u32, to: u32) -> std::result::Result<Vec<f32>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    // An even number of the smallest whole chunks (from / gcd input samples each): with an
    // odd FFT length the output lags half an input sample behind the delay it reports.
    let (a, b) = (from as usize, to as usize);
    let min_chunk = a / gcd(a, b);
    let chunk = min_chunk * 2 * 1024usize.div_ceil(2 * min_chunk);
    let mut r = FftFixedInOut::<f32>::new(a, b, chunk, 1).map_err(|e| e.to_string())?;
    let want = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + r.output_frames_max());
    let mut rest = samples;
    while rest.len() >= r.input_frames_next() {
        let (chunk, tail) = rest.split_at(r.input_frames_next());
        let y = r.process(&[chunk], None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&y[0]);
        rest = tail;
    }
    // The last partial chunk, then zeros until the delayed samples are all out.
    let mut last = (!rest.is_empty()).then_some([rest]);
    while out.len() < want + delay {
        let input = last.take();
        let y = r
            .process_partial(input.as_ref().map(|a| &a[..]), None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&y[0]);
    }
    Ok(out[delay..delay + want].to_vec())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
