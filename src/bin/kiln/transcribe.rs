//! `kiln transcribe`: a WAV file's speech as text on stdout, streamed as it is decoded.

use crate::cli;
use crate::progress;
use anyhow::{Context, Result, bail};
use kiln::transcribe::{TranscribeOptions, Transcriber};
use std::io::Write;
use std::time::Instant;

pub fn transcribe(args: &cli::Transcribe) -> Result<()> {
    let file = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {file}"))?;
    let audio = kiln::audio::wav::read(&file, &bytes)?;
    if audio.samples.is_empty() {
        bail!("{file}: the WAV holds no samples");
    }
    let options = TranscribeOptions {
        language: args.language.clone(),
        timestamps: args.timestamps,
    };
    let dir = crate::model_dir(
        args.model.as_deref(),
        &kiln::fetch::WHISPER_BASE,
        "a Whisper model (`kiln convert` makes one from a CTranslate2 model)",
    )?;
    let gpu = crate::open_gpu(args.adapter.as_deref())?;
    let t0 = Instant::now();
    let mut model = pollster::block_on(Transcriber::load(&gpu, &dir, progress::loading()))
        .with_context(|| format!("loading {}", dir.display()))?;
    eprintln!(
        "model: {} (Whisper, {} + {} layers, width {}), loaded in {:.2} s",
        dir.display(),
        model.config().encoder_layers,
        model.config().decoder_layers,
        model.config().d,
        t0.elapsed().as_secs_f64()
    );
    let profile = args.profile.then(kiln::exec::Profile::new);
    if let Some(p) = &profile {
        pollster::block_on(model.set_profile(Some(p.clone())))?;
    }
    let t1 = Instant::now();
    let mut out = std::io::stdout().lock();
    let transcript = if options.timestamps {
        // Segments print whole, each on its line with its times.
        let t = pollster::block_on(model.transcribe(&audio.samples, &options, &mut |_| {}))?;
        for s in &t.segments {
            writeln!(out, "[{:.2} -> {:.2}] {}", s.start, s.end, s.text.trim())?;
        }
        t
    } else {
        let mut first = true;
        let t = pollster::block_on(model.transcribe(&audio.samples, &options, &mut |text| {
            let text = if first { text.trim_start() } else { text };
            first &= text.is_empty();
            let _ = write!(out, "{text}");
            let _ = out.flush();
        }))?;
        writeln!(out)?;
        t
    };
    out.flush()?;
    let secs = t1.elapsed().as_secs_f64();
    let w = &transcript.windows;
    let encode: f64 = w.iter().map(|w| w.encode_secs).sum();
    let decode: f64 = w.iter().map(|w| w.decode_secs).sum();
    let steps: usize = w.iter().map(|w| w.margins.len()).sum();
    eprintln!(
        "transcribed {:.2} s of audio ({} window{}) in {secs:.2} s: {:.2}x real time; encoder \
         {encode:.2} s, decoder {decode:.2} s for {steps} steps ({:.1} ms a step)",
        transcript.seconds,
        w.len(),
        if w.len() == 1 { "" } else { "s" },
        transcript.seconds / secs,
        decode * 1e3 / steps.max(1) as f64
    );
    if let Some(p) = profile {
        eprint!("GPU time by kernel (each dispatch in its own pass):\n{p}");
    }
    Ok(())
}
