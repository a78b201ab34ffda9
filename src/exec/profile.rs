//! GPU time per kernel, from timestamp queries.
//!
//! A program that profiles records each dispatch in its own compute pass, with the pass's
//! start and end timestamps written to a query set, and resolves them after the step; the
//! read of the step adds each dispatch's time to a [`Profile`] under its phase ("prefill",
//! "decode") and its kernel (family and weight format, "matmul Q4_1"). Passes of their own
//! cost a little against the one-pass recording a step gets otherwise, so totals run slightly
//! above an unprofiled step's. Needs the adapter's TIMESTAMP_QUERY.

use crate::dtype::WeightFormat;
use crate::error::{Error, Result};
use crate::gpu::Buffer;
use crate::gpu::Gpu;
use crate::graph::Dispatch;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Time and calls per kernel, per phase, summed over the steps profiled.
#[derive(Debug, Default)]
pub struct Profile {
    phases: Mutex<BTreeMap<String, Phase>>,
}

#[derive(Clone, Debug, Default)]
struct Phase {
    steps: usize,
    kernels: BTreeMap<String, Entry>,
    /// From the first dispatch's start to the last one's end, summed over the steps.
    span: f64,
}

/// One kernel's share of a phase.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// Dispatches of the kernel, over all the steps profiled.
    pub calls: usize,
    /// GPU seconds the kernel took, summed over its dispatches.
    pub seconds: f64,
}

impl Profile {
    /// An empty profile, shared with the programs that record into it.
    pub fn new() -> Arc<Profile> {
        Arc::new(Profile::default())
    }

    /// Add one step's dispatch times, (kernel, seconds) pairs, and its span: seconds from
    /// its first dispatch's start to its last one's end.
    pub fn record(&self, phase: &str, times: impl IntoIterator<Item = (String, f64)>, span: f64) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        let p = phases.entry(phase.to_string()).or_default();
        p.steps += 1;
        p.span += span;
        for (kernel, seconds) in times {
            let e = p.kernels.entry(kernel).or_default();
            e.calls += 1;
            e.seconds += seconds;
        }
    }

    /// Each kernel of `phase` with its calls and seconds, the slowest first, and the steps
    /// the phase ran.
    pub fn phase(&self, phase: &str) -> Option<(usize, Vec<(String, Entry)>)> {
        let phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        let p = phases.get(phase)?;
        let mut rows: Vec<(String, Entry)> =
            p.kernels.iter().map(|(k, e)| (k.clone(), *e)).collect();
        rows.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
        Some((p.steps, rows))
    }

    /// Seconds from the first dispatch's start to the last one's end, summed over the
    /// steps of `phase`: the GPU's time for the steps, gaps between dispatches included,
    /// without the per-dispatch floor that summing each dispatch's own time counts.
    pub fn span(&self, phase: &str) -> Option<f64> {
        let phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.get(phase).map(|p| p.span)
    }

    /// The phases recorded so far, in name order.
    pub fn phases(&self) -> Vec<String> {
        let phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.keys().cloned().collect()
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in self.phases() {
            let Some((steps, rows)) = self.phase(&name) else {
                continue;
            };
            let total: f64 = rows.iter().map(|(_, e)| e.seconds).sum();
            writeln!(
                f,
                "{name}: {steps} step(s), {:.2} ms of GPU time per step",
                total * 1e3 / steps.max(1) as f64
            )?;
            writeln!(
                f,
                "  {:<24} {:>7} {:>11} {:>11} {:>6}",
                "kernel", "calls", "ms/step", "us/call", "share"
            )?;
            for (kernel, e) in rows {
                writeln!(
                    f,
                    "  {:<24} {:>7} {:>11.3} {:>11.1} {:>5.1}%",
                    kernel,
                    e.calls,
                    e.seconds * 1e3 / steps.max(1) as f64,
                    e.seconds * 1e6 / e.calls.max(1) as f64,
                    100.0 * e.seconds / total.max(f64::MIN_POSITIVE)
                )?;
            }
        }
        Ok(())
    }
}

/// The name a dispatch's time is filed under: its kernel family and the format of its
/// weight operand, if it reads one.
pub fn kernel_key(d: &Dispatch) -> String {
    match d.kernel.weights.iter().find(|(name, _)| *name == "w") {
        Some((_, format)) => {
            let dtype = match format {
                WeightFormat::F32 => "F32",
                WeightFormat::F16 | WeightFormat::F16Packed => "F16",
                WeightFormat::BF16Packed => "BF16",
                WeightFormat::Blocks(d) => d.name(),
            };
            format!("{} {dtype}", d.kernel.name())
        }
        None => d.kernel.name().to_string(),
    }
}

/// Most queries one query set may hold (wgpu's limit).
const SET_QUERIES: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// The query sets and buffers one staging set's timestamps go through.
struct Stamps {
    sets: Vec<wgpu::QuerySet>,
    resolve: Buffer,
    staging: Buffer,
}

/// A program's profiling state: where its times go, and two sets of query resources, one per
/// staging set of the program.
pub(super) struct Timestamps {
    sink: Arc<Profile>,
    phase: String,
    keys: Vec<String>,
    period_ns: f64,
    stamps: [Stamps; 2],
}

impl Timestamps {
    pub(super) async fn new(
        gpu: &Gpu,
        dispatches: &[Dispatch],
        sink: Arc<Profile>,
        phase: &str,
    ) -> Result<Timestamps> {
        if !gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Limit(format!(
                "profiling needs timestamp queries, and adapter '{}' has no TIMESTAMP_QUERY",
                gpu.info().name
            )));
        }
        let queries = 2 * dispatches.len().max(1) as u64;
        let bytes = queries * u64::from(wgpu::QUERY_SIZE);
        let mut stamps = Vec::new();
        for s in 0..2 {
            let mut sets = Vec::new();
            let mut left = queries;
            while left > 0 {
                let count = left.min(u64::from(SET_QUERIES)) as u32;
                sets.push(gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                }));
                left -= u64::from(count);
            }
            let resolve = gpu
                .create_buffer(
                    &format!("profile resolve {s}"),
                    bytes,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                )
                .await?;
            let staging = gpu
                .create_buffer(
                    &format!("profile staging {s}"),
                    bytes,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                )
                .await?;
            stamps.push(Stamps {
                sets,
                resolve,
                staging,
            });
        }
        let [a, b]: [Stamps; 2] = stamps
            .try_into()
            .map_err(|_| Error::Invalid("two staging sets expected".into()))?;
        Ok(Timestamps {
            sink,
            phase: phase.to_string(),
            keys: dispatches.iter().map(kernel_key).collect(),
            period_ns: f64::from(gpu.queue().get_timestamp_period()),
            stamps: [a, b],
        })
    }

    /// Where dispatch `i` of staging set `set` writes its start and end.
    pub(super) fn writes(&self, set: usize, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        let q = 2 * i as u32;
        wgpu::ComputePassTimestampWrites {
            query_set: &self.stamps[set].sets[(q / SET_QUERIES) as usize],
            beginning_of_pass_write_index: Some(q % SET_QUERIES),
            end_of_pass_write_index: Some(q % SET_QUERIES + 1),
        }
    }

    /// Resolve set `set`'s queries and copy them where [`Timestamps::read`] maps them.
    pub(super) fn resolve(&self, enc: &mut wgpu::CommandEncoder, set: usize) {
        let st = &self.stamps[set];
        let mut offset = 0u64;
        for qs in &st.sets {
            let count = qs.count();
            enc.resolve_query_set(qs, 0..count, &st.resolve, offset);
            offset += u64::from(count) * u64::from(wgpu::QUERY_SIZE);
        }
        enc.copy_buffer_to_buffer(&st.resolve, 0, &st.staging, 0, st.staging.size());
    }

    /// Read set `set`'s timestamps and add the dispatches that ran to the profile.
    pub(super) async fn read(&self, gpu: &Gpu, set: usize, ran: &[usize]) -> Result<()> {
        let st = &self.stamps[set];
        let bytes = gpu.map_read(&st.staging, st.staging.size()).await?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let seconds = |t: u64| t as f64 * self.period_ns * 1e-9;
        let stamps: Vec<(usize, u64, u64)> = ran
            .iter()
            .filter_map(|&i| Some((i, *ticks.get(2 * i)?, *ticks.get(2 * i + 1)?)))
            .collect();
        let first = stamps.iter().map(|s| s.1).min().unwrap_or(0);
        let last = stamps.iter().map(|s| s.2).max().unwrap_or(0);
        let times = stamps
            .iter()
            .map(|&(i, start, end)| (self.keys[i].clone(), seconds(end.saturating_sub(start))));
        self.sink
            .record(&self.phase, times, seconds(last.saturating_sub(first)));
        Ok(())
    }
}
