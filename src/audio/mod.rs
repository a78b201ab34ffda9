//! Speech input: WAV files to 16 kHz mono samples ([`wav`]), and those to Whisper's log-mel
//! spectrogram ([`mel`]). Both run on the CPU, on bytes, so the browser build uses them too.

pub mod mel;
pub mod wav;

/// The sample rate speech models read (Whisper's).
pub const SAMPLE_RATE: u32 = 16_000;
