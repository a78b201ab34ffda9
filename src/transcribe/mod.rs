//! Speech to text with Whisper: 16 kHz samples to a transcript, window by window of 30 s.
//!
//! Each window's log-mel frames go through the encoder program, which writes every decoder
//! layer's cross-attention keys and values into the decoder session's states (once per
//! window); then the decoder steps one token at a time over its KV cache, in the same
//! [`Session`] text generation uses. Whisper's rules ([`rules`]) choose each token from the
//! step's logits on the host, so a step reads back one row of logits rather than a sampled
//! token.

pub mod rules;

use crate::audio::SAMPLE_RATE;
use crate::audio::mel::{self, HOP};
use crate::error::{Error, Result};
use crate::exec::{Feed, Profile, Program};
use crate::generate::stream::TextStream;
use crate::generate::{Session, TextModel, now};
use crate::gpu::Gpu;
use crate::graph::{Graph, Seq, Step};
use crate::load::Weights;
use crate::models::whisper::{WhisperConfig, WhisperEncoder};
use rules::{Specials, TIME_PRECISION};
use std::sync::Arc;

/// What to transcribe how.
#[derive(Clone, Debug)]
pub struct TranscribeOptions {
    /// The spoken language's code ("en"), as the tokenizer's `<|en|>` names it.
    pub language: String,
    /// Timestamped segments (Whisper's timestamp tokens), or plain text.
    pub timestamps: bool,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            language: "en".into(),
            timestamps: false,
        }
    }
}

/// A stretch of speech and its text; without timestamps, a whole window.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Where it starts in the audio, in seconds.
    pub start: f64,
    /// Where it ends in the audio, in seconds.
    pub end: f64,
    /// Its text, as the tokenizer decodes it (not trimmed).
    pub text: String,
}

/// One window's decoding.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Its start in the audio, seconds.
    pub offset: f64,
    /// The prompt it was decoded after.
    pub prompt: Vec<u32>,
    /// The tokens chosen, end-of-text excluded.
    pub tokens: Vec<u32>,
    /// Per step, the gap between the two highest logits the rules allowed.
    pub margins: Vec<f32>,
    /// Seconds the encoder took, and the decoding after it.
    pub encode_secs: f64,
    /// Seconds the decoding took, after the encoder.
    pub decode_secs: f64,
}

/// A transcription.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// The whole text: each segment's, trimmed, joined by single spaces.
    pub text: String,
    /// Every segment, in order.
    pub segments: Vec<Segment>,
    /// Every window decoded, in order.
    pub windows: Vec<Window>,
    /// Seconds of audio.
    pub seconds: f64,
}

/// A Whisper model ready to transcribe: its decoder in a session, its encoder as a program
/// over that session's states.
pub struct Transcriber {
    model: Arc<TextModel>,
    config: WhisperConfig,
    session: Session,
    encoder: Program,
    frames: usize,
    specials: Specials,
}

/// The most tokens one window's answer takes (openai-whisper's `sample_len`: half the
/// decoder's positions).
fn sample_len(c: &WhisperConfig) -> usize {
    c.text_positions / 2
}

impl Transcriber {
    /// Load an HF-layout Whisper folder (`config.json`, safetensors, `tokenizer.json`):
    /// `kiln convert`'s output or HF's own.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn load(
        gpu: &Gpu,
        dir: &std::path::Path,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<Transcriber> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::load(dir.display(), format!("no {name} in the model folder"))
                }
                _ => Error::Io {
                    path: p.display().to_string(),
                    source: e,
                },
            })
        };
        let config_json = String::from_utf8(read("config.json")?)
            .map_err(|_| Error::load(dir.join("config.json").display(), "not UTF-8"))?;
        // Before any weight moves: a folder of another architecture fails here.
        WhisperConfig::from_json(&dir.join("config.json").display().to_string(), &config_json)?;
        let tokenizer_json = read("tokenizer.json")?;
        let weights = crate::load::Checkpoint::open(dir)?
            .upload(gpu, options)
            .await?;
        Self::from_parts(
            gpu,
            &dir.display().to_string(),
            &config_json,
            &tokenizer_json,
            &weights,
        )
        .await
    }

    /// The model from its texts and uploaded weights.
    pub async fn from_parts(
        gpu: &Gpu,
        origin: &str,
        config_json: &str,
        tokenizer_json: &[u8],
        weights: &Weights,
    ) -> Result<Transcriber> {
        let config = WhisperConfig::from_json(&format!("{origin}/config.json"), config_json)?;
        let model = Arc::new(TextModel::from_parts(
            gpu,
            origin,
            config_json,
            tokenizer_json,
            None,
            weights,
        )?);
        let encoder = WhisperEncoder::new(config.clone(), weights)?;
        let frames = encoder.frames();
        let session = model.session(config.text_positions).await?;
        let g = Graph::batch(1);
        let mel = g.input_dense("mel", frames, config.mels);
        g.output("encoded", encoder.forward(&g, mel, 1));
        let program = session.attach(&g).await?;
        let tok = model.tokenizer();
        let id = |t: &str| {
            tok.token_to_id(t)
                .ok_or_else(|| Error::load(origin, format!("the tokenizer has no {t}")))
        };
        let no_timestamps = id("<|notimestamps|>")?;
        let specials = Specials {
            eot: config.eot,
            sot: config.decoder_start,
            transcribe: id("<|transcribe|>")?,
            translate: id("<|translate|>")?,
            no_timestamps,
            // `<|0.00|>` follows `<|notimestamps|>` in every Whisper vocabulary.
            timestamp_begin: no_timestamps + 1,
            suppress: config.suppress.clone(),
            begin_suppress: config.begin_suppress.clone(),
        };
        Ok(Transcriber {
            model,
            config,
            session,
            encoder: program,
            frames,
            specials,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// Time every dispatch of later windows into `profile`: the encoder's under "encode",
    /// the decoder's under its session's phases; `None` stops. Needs the adapter's
    /// TIMESTAMP_QUERY.
    pub async fn set_profile(&mut self, profile: Option<Arc<Profile>>) -> Result<()> {
        let sink = profile.clone().map(|p| (p, "encode"));
        self.encoder.profile_into(sink).await?;
        self.session.set_profile(profile).await
    }

    /// The prompt of a window: start, language, task, and no-timestamps unless timestamped.
    pub fn prompt(&self, options: &TranscribeOptions) -> Result<Vec<u32>> {
        let lang = format!("<|{}|>", options.language);
        let lang = self.model.tokenizer().token_to_id(&lang).ok_or_else(|| {
            Error::Invalid(format!(
                "the model knows no language {:?} (no {lang} token)",
                options.language
            ))
        })?;
        let s = &self.specials;
        let mut p = vec![s.sot, lang, s.transcribe];
        if !options.timestamps {
            p.push(s.no_timestamps);
        }
        Ok(p)
    }

    /// Run the encoder on one window of mel frames, (frames, mels) frame-major, filling the
    /// decoder's cross-attention states; returns the encoder's output (positions, width).
    pub async fn encode(&mut self, frames: &[f32]) -> Result<Vec<f32>> {
        let want = self.frames * self.config.mels;
        if frames.len() != want {
            return Err(Error::Shape(format!(
                "a window is {} frames of {} mel bins ({want} values), given {}",
                self.frames,
                self.config.mels,
                frames.len()
            )));
        }
        let step = Step {
            seqs: vec![Seq::new(0, self.config.audio_positions)],
        };
        let out = self
            .encoder
            .run(&step, &[("mel", Feed::F32(frames))])
            .await?;
        out.get("encoded")
            .map(<[f32]>::to_vec)
            .ok_or_else(|| Error::Gpu("the encoder's output did not come back".into()))
    }

    /// Decode one window after [`Transcriber::encode`]: greedy, under Whisper's rules;
    /// `on_text` gets the text as it comes.
    pub async fn decode(
        &mut self,
        options: &TranscribeOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Window> {
        let prompt = self.prompt(options)?;
        let s = self.specials.clone();
        let mut window = Window {
            prompt: prompt.clone(),
            ..Default::default()
        };
        let mut logits = self.last(0, &prompt).await?;
        let mut stream = TextStream::new(Vec::new());
        for _ in 0..sample_len(&self.config) {
            rules::apply(&mut logits, &window.tokens, &s, options.timestamps);
            let (token, margin) = rules::greedy(&logits);
            if !logits[token as usize].is_finite() {
                return Err(Error::Invalid("Whisper's rules allowed no token".into()));
            }
            window.margins.push(margin);
            if token == s.eot {
                break;
            }
            window.tokens.push(token);
            if token < s.eot {
                let text = stream.push(self.model.tokenizer(), token)?;
                if !text.is_empty() {
                    on_text(&text);
                }
            }
            let fed = prompt.len() + window.tokens.len() - 1;
            logits = self.last(fed, &[token]).await?;
        }
        let rest = stream.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
        Ok(window)
    }

    /// The logits after feeding `ids` behind the first `keep` cached tokens.
    async fn last(&mut self, keep: usize, ids: &[u32]) -> Result<Vec<f32>> {
        self.session
            .logits_after(keep, ids, false)
            .await?
            .pop()
            .ok_or_else(|| Error::Gpu("no logits came back".into()))
    }

    /// Transcribe 16 kHz mono `samples`, window by window of 30 s; `on_text` gets the text
    /// as it is decoded.
    pub async fn transcribe(
        &mut self,
        samples: &[f32],
        options: &TranscribeOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Transcript> {
        if samples.is_empty() {
            return Err(Error::Invalid(
                "no audio to transcribe: the recording holds no samples".into(),
            ));
        }
        let window = self.frames * HOP; // samples in one window
        // As openai-whisper: the spectrogram of the whole audio and 30 s of silence, its
        // floor set by the loudest frame of all of it.
        let m = mel::log_mel(samples, window, self.config.mels);
        let content = samples.len() / HOP;
        let mut transcript = Transcript {
            seconds: samples.len() as f64 / SAMPLE_RATE as f64,
            ..Default::default()
        };
        let mut seek = 0;
        while seek < content.max(1) {
            let mut frames = vec![0.0f32; self.frames * m.mels];
            for b in 0..m.mels {
                for f in 0..self.frames {
                    frames[f * m.mels + b] = m.data[b * m.frames + seek + f];
                }
            }
            let t0 = now();
            self.encode(&frames).await?;
            let t1 = now();
            let mut w = self.decode(options, on_text).await?;
            w.offset = seek as f64 * HOP as f64 / SAMPLE_RATE as f64;
            (w.encode_secs, w.decode_secs) = (t1 - t0, now() - t1);
            let segments = self.segments(&w, options.timestamps)?;
            for seg in &segments {
                let piece = seg.text.trim();
                if !piece.is_empty() {
                    if !transcript.text.is_empty() {
                        transcript.text.push(' ');
                    }
                    transcript.text.push_str(piece);
                }
            }
            transcript.segments.extend(segments);
            transcript.windows.push(w);
            seek += self.frames;
        }
        Ok(transcript)
    }

    /// A window's segments: between each pair of timestamps (an unclosed one runs to the
    /// window's end), or the whole window without timestamps.
    fn segments(&self, w: &Window, timestamps: bool) -> Result<Vec<Segment>> {
        let s = &self.specials;
        let tok = self.model.tokenizer();
        let text = |ids: &[u32]| -> Result<String> {
            let ids: Vec<u32> = ids.iter().copied().filter(|&t| t < s.eot).collect();
            tok.decode(&ids, true)
                .map_err(|e| Error::Invalid(format!("decoding tokens failed: {e}")))
        };
        let span = self.frames as f64 * HOP as f64 / SAMPLE_RATE as f64;
        if !timestamps {
            return Ok(vec![Segment {
                start: w.offset,
                end: w.offset + span,
                text: text(&w.tokens)?,
            }]);
        }
        let time = |t: u32| w.offset + f64::from(t - s.timestamp_begin) * TIME_PRECISION;
        let mut out = Vec::new();
        let mut start: Option<u32> = None;
        let mut from = 0;
        for (i, &t) in w.tokens.iter().enumerate() {
            if t < s.timestamp_begin {
                continue;
            }
            match start {
                None => {
                    start = Some(t);
                    from = i + 1;
                }
                Some(open) => {
                    out.push(Segment {
                        start: time(open),
                        end: time(t),
                        text: text(&w.tokens[from..i])?,
                    });
                    start = None;
                }
            }
        }
        if let Some(open) = start {
            let rest = text(&w.tokens[from..])?;
            if !rest.trim().is_empty() {
                out.push(Segment {
                    start: time(open),
                    end: w.offset + span,
                    text: rest,
                });
            }
        }
        Ok(out)
    }
}
