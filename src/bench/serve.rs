//! Continuous batching as a server runs it (`kiln bench --serve`): for each number of
//! concurrent streams, that many requests of random prompts arrive together at a
//! [`Batcher`] with as many slots, and decode greedily past any end-of-sequence token.
//! Aggregate decode tokens/s count the steps that only decode (tokens over their wall
//! time); time to first token is each request's, from its admission, so it includes the
//! prompt chunks of the others that arrived with it.

use crate::error::{Error, Result};
use crate::generate::{Batcher, GenerateOptions, Request, TextModel, Update};
use crate::sample::{Rng, Sampling};
use std::sync::{Arc, Mutex};

/// What to run.
#[derive(Clone, Debug)]
pub struct ServeBench {
    /// Prompt tokens per request.
    pub prompt: usize,
    /// Tokens generated per request.
    pub generate: usize,
    /// The numbers of concurrent streams, each run in turn.
    pub streams: Vec<usize>,
    /// Measured runs per number of streams, after one warm-up.
    pub runs: usize,
    /// Prompt tokens computed per request and step.
    pub chunk: usize,
}

/// One number of streams: per measured run, the aggregate decode tokens/s and the median
/// time to first token.
#[derive(Clone, Debug)]
pub struct ServeRow {
    /// Concurrent streams, each with its own request.
    pub streams: usize,
    /// Aggregate decode tokens per second of all streams, one per measured run.
    pub decode: Vec<f64>,
    /// Median seconds to first token over the streams, one per measured run.
    pub first_token_secs: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

impl ServeRow {
    /// Median of `decode`, tokens per second (NaN with no runs).
    pub fn decode_median(&self) -> f64 {
        median(&self.decode)
    }
    /// Median of `first_token_secs`, in seconds (NaN with no runs).
    pub fn first_token_median(&self) -> f64 {
        median(&self.first_token_secs)
    }
}

/// Run `bench` on `model`, one row per number of streams.
pub async fn serve(
    model: &Arc<TextModel>,
    bench: &ServeBench,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ServeRow>> {
    let (p, n) = (bench.prompt, bench.generate);
    if p == 0 || n < 2 || bench.runs == 0 || bench.streams.contains(&0) {
        return Err(Error::Invalid(format!(
            "a serving benchmark needs at least 1 prompt token, 2 generated tokens, 1 run and \
             1 stream (got {p}, {n}, {} and {:?})",
            bench.runs, bench.streams
        )));
    }
    let vocab = model.decoder().vocab() as u32;
    let mut rows = Vec::new();
    for &streams in &bench.streams {
        let session = model.batch_session(p + n + 1, streams).await?;
        let mut batcher = Batcher::new(session, bench.chunk)?;
        let mut row = ServeRow {
            streams,
            decode: Vec::new(),
            first_token_secs: Vec::new(),
        };
        for run in 0..=bench.runs {
            let mut rng = Rng::new(0x7365727665 + run as u64);
            let firsts = Arc::new(Mutex::new(Vec::new()));
            for _ in 0..streams {
                let prompt: Vec<u32> = (0..p).map(|_| rng.next_u32() % vocab).collect();
                let into = firsts.clone();
                let sink = Box::new(move |u: Update| {
                    if let Update::Done(_, stats) = u
                        && let Ok(mut f) = into.lock()
                    {
                        f.push((stats.first_token_secs, stats.generated_tokens));
                    }
                    true
                });
                let request = Request {
                    prompt,
                    options: GenerateOptions {
                        max_tokens: n,
                        sampling: Sampling::greedy(),
                        ignore_eos: true,
                        ..GenerateOptions::default()
                    },
                    sink,
                };
                batcher.admit(request).map_err(|(_, e)| e)?;
            }
            let (mut tokens, mut secs, mut steps) = (0usize, 0.0f64, 0usize);
            while batcher.running() > 0 {
                let r = batcher.step().await?;
                if r.prefilling == 0 && r.decoding > 0 {
                    tokens += r.generated_tokens;
                    secs += r.secs;
                }
                steps += 1;
                if steps > (p + n) * streams + 16 {
                    return Err(Error::Invalid("the batcher did not finish".into()));
                }
            }
            let firsts = firsts.lock().map(|f| f.clone()).unwrap_or_default();
            if firsts.len() != streams || firsts.iter().any(|&(_, g)| g != n) {
                return Err(Error::Invalid(format!(
                    "{streams} streams of {n} tokens ended as {firsts:?}"
                )));
            }
            let tps = tokens as f64 / secs.max(1e-9);
            let ttft = median(&firsts.iter().map(|&(t, _)| t).collect::<Vec<_>>());
            let what = if run == 0 {
                "warm-up".to_string()
            } else {
                format!("run {run}")
            };
            log(&format!(
                "{streams} streams, {what}: decode {tps:.2} tok/s in all, first token {:.0} ms",
                ttft * 1e3
            ));
            if run > 0 {
                row.decode.push(tps);
                row.first_token_secs.push(ttft);
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The rows as a markdown table, each number of streams against one stream.
pub fn serve_markdown(model: &str, adapter: &str, bench: &ServeBench, rows: &[ServeRow]) -> String {
    let mut out = format!(
        "### {model} on {adapter}: continuous batching, prompts of {} tokens, {} generated\n\n\
         | streams | decode tok/s, all streams (median) | per stream | against 1 stream | \
         first token, median |\n|---:|---:|---:|---:|---:|\n",
        bench.prompt, bench.generate
    );
    let one = rows
        .iter()
        .find(|r| r.streams == 1)
        .map(ServeRow::decode_median);
    for r in rows {
        let d = r.decode_median();
        let ratio = one.map_or("".to_string(), |o| format!("{:.2}x", d / o));
        out.push_str(&format!(
            "| {} | {d:.2} | {:.2} | {ratio} | {:.0} ms |\n",
            r.streams,
            d / r.streams as f64,
            r.first_token_median() * 1e3
        ));
    }
    out
}
