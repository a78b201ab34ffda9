//! Each adapter's rooflines, measured: what its memory moves and its ALUs compute at best,
//! and the fixed costs every step pays. A bound is the best of several kernels, so that
//! the kernels measured against it fall under it (the report flags any that does not).
//!
//! - Bandwidth: copies (read + write) of 4 and 16 bytes a thread at two workgroup sizes,
//!   and a read-only reduction (`shaders/read.wgsl`), whose bytes are reads alone.
//! - Multiply-add throughput: `shaders/fma.wgsl` in f32, and in f16 where the adapter has
//!   SHADER_F16.
//! - Dispatch overhead (an empty dispatch, many in one pass; a submission and the wait for
//!   it) and readback latency (4 bytes, 1 MiB, through a mapped staging buffer).

use super::{Clock, Figure, Group, Size, measure};
use crate::error::{Error, Result};
use crate::gpu::Buffer;
use crate::gpu::Gpu;
use crate::kernels::{Kernel, PipelineCache, grid};
use crate::ops::{copy, roofline as kernels};
use std::time::Duration;
use web_time::Instant;

/// A ready dispatch of one kernel over its buffers (uniform parameters first).
pub(super) struct Job {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: [u32; 3],
}

impl Job {
    /// `kernel` with `params` at binding 0 and `buffers` after it, over `groups`
    /// workgroups.
    async fn new(
        gpu: &Gpu,
        kernel: &Kernel,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: u64,
    ) -> Result<Job> {
        let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let p = gpu.create_buffer("roofline params", 16, uniform).await?;
        gpu.queue().write_buffer(&p, 0, params);
        let compiled = PipelineCache::compiled(gpu, kernel).await?;
        let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(&*p)
            .chain(buffers.iter().copied())
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        // A binding the adapter refuses is an error, never a figure.
        let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.family.name),
            layout: &compiled.layout,
            entries: &entries,
        });
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("{}: {e}", kernel.family.name)));
        }
        let max = gpu.limits().max_compute_workgroups_per_dimension;
        Ok(Job {
            pipeline: compiled.pipeline,
            bind_group,
            grid: grid(groups, max),
        })
    }

    /// Record `times` dispatches of the job in one pass and submit them.
    fn submit_times(&self, gpu: &Gpu, times: usize) {
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            let [x, y, z] = self.grid;
            for _ in 0..times {
                pass.dispatch_workgroups(x, y, z);
            }
        }
        gpu.submit([enc.finish()]);
    }

    pub(super) fn submit(&self, gpu: &Gpu) {
        self.submit_times(gpu, 1)
    }

    /// The median of `samples` runs of one dispatch on the GPU's clock: a pass of its own
    /// with timestamps at its start and end, resolved and read back after each.
    async fn gpu_time(&self, gpu: &Gpu, samples: usize) -> Result<Duration> {
        let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("roofline time"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let bytes = 2 * u64::from(wgpu::QUERY_SIZE);
        let resolve = wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC;
        let resolve = gpu
            .create_buffer("roofline resolve", bytes, resolve)
            .await?;
        let read = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let staging = gpu.create_buffer("roofline stamps", bytes, read).await?;
        let period = f64::from(gpu.queue().get_timestamp_period()) * 1e-9;
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples.max(1) + 1 {
            let mut enc = gpu.device().create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("roofline"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &set,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }),
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &self.bind_group, &[]);
                let [x, y, z] = self.grid;
                pass.dispatch_workgroups(x, y, z);
            }
            enc.resolve_query_set(&set, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            gpu.submit([enc.finish()]);
            let stamps: Vec<u64> =
                bytemuck::pod_collect_to_vec(&gpu.map_read(&staging, bytes).await?);
            if let [start, end] = stamps[..] {
                times.push(end.saturating_sub(start) as f64 * period);
            }
        }
        // The first run warms up.
        times.remove(0);
        times.sort_by(f64::total_cmp);
        Ok(Duration::from_secs_f64(
            times.get(times.len() / 2).copied().unwrap_or(0.0),
        ))
    }

    /// Time the job as [`super::clock_of`] says: wall-clock of back-to-back submissions,
    /// or on the GPU's clock with wall time beside.
    async fn timed(&self, gpu: &Gpu, group: Group, name: String, samples: usize) -> Result<Figure> {
        let wall = measure(gpu, samples, async || {
            self.submit(gpu);
            Ok(())
        })
        .await?;
        let mut f = Figure::new(group, name, wall);
        if super::clock_of(gpu) == Clock::Gpu {
            f.median = self.gpu_time(gpu, samples).await?;
            f.clock = Clock::Gpu;
            f.wall = Some(wall);
        }
        Ok(f)
    }
}

/// Two buffers of `n` f32 and a copy between them, 4 or 16 (`vec4`) bytes per thread, in
/// workgroups of `wg` threads.
pub(super) async fn copy_job(
    gpu: &Gpu,
    n: usize,
    vec4: bool,
    wg: u32,
) -> Result<(Buffer, Buffer, Job)> {
    let items = if vec4 { n / 4 } else { n };
    let src = gpu.storage_buffer("copy src", n as u64 * 4).await?;
    let dst = gpu.storage_buffer("copy dst", n as u64 * 4).await?;
    let p = copy::Params {
        count: items as u32,
        offset: 0,
    };
    let kernel = copy::kernel(vec4).constant("WG", wg);
    let groups = (items as u64).div_ceil(u64::from(wg));
    let job = Job::new(gpu, &kernel, bytemuck::bytes_of(&p), &[&src, &dst], groups).await?;
    Ok((src, dst, job))
}

/// Workgroups of the read-only reduction over `vec4s`: each thread reads about 8 of them,
/// in one row of workgroups.
fn read_groups(gpu: &Gpu, vec4s: usize) -> u64 {
    let per_group = kernels::WG as usize * 8;
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    vec4s.div_ceil(per_group).clamp(1, max) as u64
}

/// The read-only reduction over `src` (`vec4s` of them): the job, and its output buffer
/// (one float per workgroup) and how many workgroups it has.
pub(super) async fn read_job(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    vec4s: usize,
) -> Result<(Buffer, usize, Job)> {
    let groups = read_groups(gpu, vec4s);
    let dst = gpu.storage_buffer("read sums", groups * 4).await?;
    let stride = (groups * u64::from(kernels::WG)) as u32;
    let p = kernels::ReadParams {
        count: vec4s as u32,
        stride,
    };
    let job = Job::new(
        gpu,
        &kernels::read_kernel(),
        bytemuck::bytes_of(&p),
        &[src, &dst],
        groups,
    )
    .await?;
    Ok((dst, groups as usize, job))
}

/// The multiply-add kernel over `threads` threads of `iterations` each: the job and its
/// output (one float per thread).
pub(super) async fn fma_job(
    gpu: &Gpu,
    threads: usize,
    iterations: u32,
    f16: bool,
) -> Result<(Buffer, Job)> {
    let dst = gpu.storage_buffer("fma out", threads as u64 * 4).await?;
    let p = kernels::FmaParams {
        count: threads as u32,
        iterations,
    };
    let groups = (threads as u64).div_ceil(u64::from(kernels::WG));
    let job = Job::new(
        gpu,
        &kernels::fma_kernel(f16),
        bytemuck::bytes_of(&p),
        &[&dst],
        groups,
    )
    .await?;
    Ok((dst, job))
}

/// The bandwidth candidates over buffers of `mib` MiB (fewer where the adapter's binding
/// limit is lower): both copies at workgroups of 64 and 256, and the read-only reduction.
/// The bandwidth roofline is the fastest ([`super::roofline`]).
pub async fn bandwidth_figures(gpu: &Gpu, mib: usize, samples: usize) -> Result<Vec<Figure>> {
    let l = gpu.limits();
    let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
    let mib = mib.min((limit >> 20) as usize).max(1);
    let n = (mib << 20) / 4;
    let bytes = (n * 4) as f64;
    let mut out = Vec::new();
    for (vec4, wg) in [(false, 64), (false, 256), (true, 64), (true, 256)] {
        let (_src, _dst, job) = copy_job(gpu, n, vec4, wg).await?;
        let kind = if vec4 { "copy vec4" } else { "copy" };
        let name = format!("{kind} wg{wg} {mib} MiB");
        out.push(
            job.timed(gpu, Group::Bandwidth, name, samples)
                .await?
                .bytes(2.0 * bytes),
        );
    }
    let src = gpu.storage_buffer("read src", (n * 4) as u64).await?;
    let (_dst, _, job) = read_job(gpu, &src, n / 4).await?;
    let name = format!("read vec4 {mib} MiB");
    out.push(
        job.timed(gpu, Group::Bandwidth, name, samples)
            .await?
            .bytes(bytes),
    );
    Ok(out)
}

/// Peak multiply-add throughput in f32, and in f16 where the adapter has SHADER_F16.
pub async fn fma_figures(gpu: &Gpu, size: Size, samples: usize) -> Result<Vec<Figure>> {
    let (threads, iterations) = match size {
        Size::Small => (1 << 16, 256u32),
        Size::Large => (1 << 20, 4096),
    };
    let f16 = gpu.device().features().contains(wgpu::Features::SHADER_F16);
    let mut out = Vec::new();
    for half in [false, true] {
        if half && !f16 {
            continue;
        }
        let (_dst, job) = fma_job(gpu, threads, iterations, half).await?;
        let flops = threads as f64 * f64::from(iterations) * kernels::FLOPS_PER_ITERATION as f64;
        let name = format!("fma {}", if half { "f16" } else { "f32" });
        out.push(
            job.timed(gpu, Group::Compute, name, samples)
                .await?
                .flops(flops),
        );
    }
    Ok(out)
}

/// The fixed costs: one empty dispatch (the mean of 1000 in one pass), one empty
/// submission and the wait for it, and reading back 4 bytes and 1 MiB through a mapped
/// staging buffer (a copy, a submission, the map). Medians of `samples` x 10.
pub async fn latency_figures(gpu: &Gpu, samples: usize) -> Result<Vec<Figure>> {
    let runs = samples * 10;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut out = Vec::new();
    // The copy kernel over 4 floats: one workgroup, next to nothing to do.
    let (_src, _dst, empty) = copy_job(gpu, 4, false, copy::WG).await?;
    let dispatches = 1000;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        empty.submit_times(gpu, dispatches);
        gpu.flush().await;
        times.push(t.elapsed() / dispatches as u32);
    }
    out.push(Figure::latency("empty dispatch", median(times)));
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        gpu.submit([]);
        gpu.flush().await;
        times.push(t.elapsed());
    }
    out.push(Figure::latency("submit and wait", median(times)));
    for (name, bytes) in [("readback 4 B", 4u64), ("readback 1 MiB", 1 << 20)] {
        let src = gpu.storage_buffer("readback src", bytes).await?;
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let staging = gpu.create_buffer("readback staging", bytes, usage).await?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let mut enc = gpu.device().create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&src, 0, &staging, 0, bytes);
            gpu.submit([enc.finish()]);
            gpu.map_read(&staging, bytes).await?;
            times.push(t.elapsed());
        }
        out.push(Figure::latency(name, median(times)));
    }
    Ok(out)
}

/// Every roofline of one adapter: bandwidth candidates, peak multiply-adds, fixed costs.
pub async fn figures(gpu: &Gpu, size: Size, samples: usize) -> Result<Vec<Figure>> {
    let mut out = bandwidth_figures(gpu, size.copy_mib(), samples).await?;
    out.extend(fma_figures(gpu, size, samples).await?);
    out.extend(latency_figures(gpu, samples).await?);
    Ok(out)
}
