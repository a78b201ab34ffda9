//! Whole-model benchmarks, measured as llama-bench measures them: a prompt of random tokens
//! prefilled in one step, then tokens decoded greedily past any end-of-sequence token,
//! several runs after a warm-up run
//! that builds the programs. Decode's bandwidth counts the bytes each step reads (weights
//! and KV cache, at the mean position of the run) and is set against the adapter's copy
//! roofline, measured in the same run.

use super::record::{self, Stats};
use super::{Figure, Size, bandwidth_figures, roofline};
use crate::error::{Error, Result};
use crate::exec::Profile;
use crate::generate::{GenerateOptions, Session};
use crate::sample::{Rng, Sampling};

/// What to run.
#[derive(Clone, Debug)]
pub struct ModelBench {
    /// Prompt tokens prefilled per run.
    pub prompt: usize,
    /// Tokens generated per run.
    pub generate: usize,
    /// Measured runs, after one warm-up.
    pub runs: usize,
    /// After the measured runs, one more with each dispatch timed on the GPU (timestamp
    /// queries): GPU time by kernel for prefill and decode steps. Apart from the measured
    /// runs, which profiling would slow.
    pub profile: bool,
}

/// Tokens per second of each run, prefill and decode apart, and what decode reads.
#[derive(Clone, Debug)]
pub struct ModelReport {
    /// Each adapter it ran on.
    pub adapters: Vec<String>,
    /// The model's folder or file, or `synthetic:NAME`.
    pub model: String,
    /// The settings it was measured with.
    pub bench: ModelBench,
    /// Bytes of weights on the GPU(s), all adapters together.
    pub weight_bytes: u64,
    /// Prefill tokens per second, one per measured run.
    pub prefill: Vec<f64>,
    /// Decode tokens per second, one per measured run.
    pub decode: Vec<f64>,
    /// Bytes one decode step reads at the runs' mean decode position.
    pub decode_bytes: u64,
    /// The copy kernels, measured in the same run.
    pub copy: Vec<Figure>,
    /// A model split across adapters: each hop a decode step makes through the host (the
    /// hidden state to each next adapter, the token back to the first), timed alone.
    pub exchange: Vec<(String, std::time::Duration)>,
    /// A split model: one all-reduce of the hidden state across its adapters (adapters,
    /// floats, median time), what tensor-parallel mode pays twice per layer.
    pub all_reduce: Option<(usize, usize, std::time::Duration)>,
    /// How the model is divided across its adapters.
    pub split: crate::split::Split,
    /// Split tensor-parallel: the seconds each measured decode step spent in all-reduces.
    pub exchanged: Vec<f64>,
    /// The model's layers.
    pub layers: usize,
    /// GPU time by kernel, from the profiled run.
    pub profile: Option<std::sync::Arc<Profile>>,
}

impl ModelReport {
    /// Median decode bandwidth in GB/s, counting [`ModelReport::decode_bytes`] per token.
    pub fn decode_gbps(&self) -> f64 {
        Stats::of(&self.decode).median * self.decode_bytes as f64 / 1e9
    }
    /// The bandwidth roofline (the best of the copies and the read-only pass), GB/s.
    pub fn roofline_gbps(&self) -> Option<f64> {
        roofline(&self.copy)
    }

    /// As data, with `dtype` (what `--dtype` asked for) and, where profiled, GPU time by
    /// kernel for each phase.
    pub fn record(&self, dtype: Option<&str>) -> record::Model {
        let gbps = self.decode_gbps();
        record::Model {
            model: self.model.clone(),
            dtype: dtype.map(str::to_string),
            adapters: self.adapters.clone(),
            split: match (self.adapters.len(), self.split) {
                (1, _) => "none",
                (_, crate::split::Split::Tensor) => "tensor",
                _ => "layers",
            }
            .to_string(),
            prompt: self.bench.prompt,
            generate: self.bench.generate,
            runs: self.bench.runs,
            weight_bytes: self.weight_bytes,
            decode_bytes: self.decode_bytes,
            prefill: Stats::of(&self.prefill),
            decode: Stats::of(&self.decode),
            decode_gbps: gbps,
            decode_percent_of_bandwidth: self.roofline_gbps().map(|r| 100.0 * gbps / r),
            exchange: (!self.exchanged.is_empty()).then(|| Stats::of(&self.exchanged)),
            profile: self.profile.as_deref().map(profile_rows),
        }
    }
}

/// GPU time per kernel of each profiled phase, per step and as a share of the step's span
/// (its first dispatch's start to its last one's end).
fn profile_rows(p: &Profile) -> Vec<record::ProfileRow> {
    let mut rows = Vec::new();
    for phase in p.phases() {
        let (Some((steps, kernels)), Some(span)) = (p.phase(&phase), p.span(&phase)) else {
            continue;
        };
        // A step too short for the clock has no shares to give.
        if span <= 0.0 {
            continue;
        }
        let steps = steps.max(1) as f64;
        let busy: f64 = kernels.iter().map(|(_, e)| e.seconds).sum();
        for (kernel, e) in kernels {
            rows.push(record::ProfileRow {
                phase: phase.clone(),
                kernel,
                calls_per_step: e.calls as f64 / steps,
                seconds_per_step: e.seconds / steps,
                percent_of_step: 100.0 * e.seconds / span,
            });
        }
        // The span's time no dispatch accounts for: barriers and gaps between passes.
        if span > busy {
            rows.push(record::ProfileRow {
                phase: phase.clone(),
                kernel: "(between dispatches)".into(),
                calls_per_step: 0.0,
                seconds_per_step: (span - busy) / steps,
                percent_of_step: 100.0 * (span - busy) / span,
            });
        }
    }
    rows
}

/// What the tables leave out of a split model: each host hop and one all-reduce timed
/// alone, and the decode steps' own exchanges.
impl std::fmt::Display for ModelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = 1.0 / Stats::of(&self.decode).median;
        if !self.exchange.is_empty() {
            for (hop, t) in &self.exchange {
                writeln!(f, "  exchange {hop:<40} {:>8.1} us", t.as_secs_f64() * 1e6)?;
            }
            let per_step: f64 = self.exchange.iter().map(|(_, t)| t.as_secs_f64()).sum();
            writeln!(
                f,
                "  exchange per decode step {:.1} us = {:.2}% of the median step",
                per_step * 1e6,
                100.0 * per_step / step
            )?;
        }
        if let Some((n, floats, t)) = self.all_reduce {
            let us = t.as_secs_f64() * 1e6;
            let per_step = 2.0 * self.layers as f64 * t.as_secs_f64();
            let runs = 2 * self.layers + 1;
            write!(
                f,
                "  all-reduce of {floats} floats over {n} adapters {us:.1} us, {runs} a step: \
                 {:.2} ms",
                per_step * 1e3
            )?;
            match self.split {
                crate::split::Split::Tensor => writeln!(f, " alone")?,
                _ => writeln!(f, " were it split tensor-parallel")?,
            }
        }
        if !self.exchanged.is_empty() {
            // Measured inside the decode steps themselves.
            let median = Stats::of(&self.exchanged).median;
            writeln!(
                f,
                "  exchanges (all-reduces and the candidates' gather) per decode step {:.2} ms \
                 (median of {} steps) = {:.1}% of the median step",
                median * 1e3,
                self.exchanged.len(),
                100.0 * median / step
            )?;
        }
        Ok(())
    }
}

/// Run `bench` on `session`'s model (its first slot), greedily, on random token ids.
/// `log` hears of each run.
pub async fn model(
    session: &mut Session,
    bench: &ModelBench,
    log: &mut dyn FnMut(&str),
) -> Result<ModelReport> {
    let (p, n) = (bench.prompt, bench.generate);
    // Decode is timed from the first token read to the last, and pipelined decode has the
    // next step in flight by then: a handful of tokens would time too little.
    if p == 0 || n < 16 || bench.runs == 0 {
        return Err(Error::Invalid(format!(
            "a model benchmark needs at least 1 prompt token, 16 generated tokens and 1 run \
             (got {p}, {n} and {})",
            bench.runs
        )));
    }
    if p + n > session.capacity() {
        return Err(Error::Limit(format!(
            "{p} prompt and {n} generated tokens do not fit the session's context of {}",
            session.capacity()
        )));
    }
    let model = session.model().clone();
    let gpu = model.gpu().clone();
    let vocab = model.decoder().vocab() as u32;
    let mut rng = Rng::new(0x6b696c6e);
    let prompt: Vec<u32> = (0..p).map(|_| rng.next_u32() % vocab).collect();
    let options = GenerateOptions {
        max_tokens: n,
        sampling: Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    session.record_exchanges(true);
    let mut exchanged = Vec::new();
    for run in 0..=bench.runs {
        session.reset();
        let mut generation = session.generate(&prompt, options.clone()).await?;
        while let Some(delta) = generation.next().await {
            delta?;
        }
        let stats = generation.stats();
        if stats.generated_tokens != n {
            return Err(Error::Invalid(format!(
                "run {run} generated {} tokens, not {n}",
                stats.generated_tokens
            )));
        }
        let (pp, tg) = (
            stats.prefill_tokens_per_sec(),
            stats.decode_tokens_per_sec(),
        );
        let steps = session.take_exchanges();
        if run > 0 {
            exchanged.extend(steps);
        }
        if run == 0 {
            log(&format!(
                "warm-up: pp{p} {pp:.2} tok/s, tg{n} {tg:.2} tok/s"
            ));
        } else {
            log(&format!(
                "run {run}: pp{p} {pp:.2} tok/s, tg{n} {tg:.2} tok/s"
            ));
            prefill.push(pp);
            decode.push(tg);
        }
    }
    session.record_exchanges(false);
    let profile = match bench.profile {
        true => {
            let sink = Profile::new();
            session.set_profile(Some(sink.clone())).await?;
            session.reset();
            let mut generation = session.generate(&prompt, options.clone()).await?;
            while let Some(delta) = generation.next().await {
                delta?;
            }
            session.set_profile(None).await?;
            log("profiled run: done");
            Some(sink)
        }
        false => None,
    };
    let mib = Size::for_gpu(&gpu).copy_mib();
    // A model split across adapters has no one roofline to compare with.
    let copy = match model.stages() {
        [_] => bandwidth_figures(&gpu, mib, 7).await?,
        _ => Vec::new(),
    };
    let adapters: Vec<String> = model.stages().iter().map(|s| s.gpu.describe()).collect();
    let mut exchange = Vec::new();
    let mut all_reduce = None;
    let stages = model.stages();
    if let (Some(first), Some(last), true) = (stages.first(), stages.last(), stages.len() > 1) {
        let hidden = model.decoder().hidden();
        let n = stages.len();
        match model.split() {
            crate::split::Split::Layers | crate::split::Split::Auto => {
                for (i, pair) in stages.windows(2).enumerate() {
                    let t = super::exchange(&pair[0].gpu, &pair[1].gpu, hidden, 50).await?;
                    exchange.push((format!("hidden {i} -> {} ({hidden} floats)", i + 1), t));
                }
                let t = super::exchange(&last.gpu, &first.gpu, 1, 50).await?;
                exchange.push((format!("token {} -> 0 (1 id)", n - 1), t));
            }
            crate::split::Split::Tensor => {
                // The sampled token goes from the last adapter to every other.
                for (i, stage) in stages[..n - 1].iter().enumerate() {
                    let t = super::exchange(&last.gpu, &stage.gpu, 1, 50).await?;
                    exchange.push((format!("token {} -> {i} (1 id)", n - 1), t));
                }
            }
        }
        let gpus: Vec<crate::gpu::Gpu> = stages.iter().map(|s| s.gpu.clone()).collect();
        let t = super::all_reduce(&gpus, hidden, 50).await?;
        all_reduce = Some((gpus.len(), hidden, t));
    }
    Ok(ModelReport {
        adapters,
        model: model.origin().to_string(),
        bench: bench.clone(),
        weight_bytes: model.weight_bytes(),
        prefill,
        decode,
        decode_bytes: model.decode_bytes(p + n / 2),
        copy,
        exchange,
        all_reduce,
        split: model.split(),
        exchanged,
        layers: model.decoder().layers(),
        profile,
    })
}
