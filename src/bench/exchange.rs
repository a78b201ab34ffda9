//! The host exchange between adapters, timed alone: what one hop of a split model's hidden
//! state costs (`L` in `docs/tensor-parallel.md`), beside the step it is part of.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use std::time::Duration;
use web_time::Instant;

/// The median time, over `runs` after one warm-up, to carry `floats` f32 from a buffer on
/// `from` to a buffer on `to` through the host: `from` copies them into a mapped staging
/// buffer, the host reads them, `to` writes them and finishes the write. One hop of a hidden
/// state between adapters; an all-reduce through the host is a hop out of and back into
/// each adapter.
pub async fn exchange(from: &Gpu, to: &Gpu, floats: usize, runs: usize) -> Result<Duration> {
    if floats == 0 || runs == 0 {
        return Err(Error::Invalid(
            "an exchange benchmark needs at least one float and one run".into(),
        ));
    }
    let bytes = floats as u64 * 4;
    let src = from.storage_buffer("exchange source", bytes).await?;
    let dst = to.storage_buffer("exchange destination", bytes).await?;
    let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
    let staging = from.create_buffer("exchange staging", bytes, usage).await?;
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let t0 = Instant::now();
        let mut enc = from.device().create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&src, 0, &staging, 0, bytes);
        from.submit([enc.finish()]);
        let data = from.map_read(&staging, bytes).await?;
        to.queue().write_buffer(&dst, 0, &data);
        to.submit([]);
        to.flush().await;
        if run > 0 {
            times.push(t0.elapsed());
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// The median time, over `runs` after one warm-up, of one all-reduce of `floats` f32 across
/// `gpus` through the host ([`AllReduce`](crate::exec::AllReduce)): what a tensor-parallel
/// layer pays twice.
pub async fn all_reduce(gpus: &[Gpu], floats: usize, runs: usize) -> Result<Duration> {
    if runs == 0 {
        return Err(Error::Invalid(
            "an all-reduce benchmark needs at least one run".into(),
        ));
    }
    let reduce = crate::exec::AllReduce::new(gpus, floats).await?;
    let mut partials = Vec::with_capacity(gpus.len());
    for gpu in gpus {
        partials.push(
            gpu.storage_buffer("all-reduce partial", floats as u64 * 4)
                .await?,
        );
    }
    let refs: Vec<&crate::gpu::Buffer> = partials.iter().collect();
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let t0 = Instant::now();
        reduce.run(&refs, floats).await?;
        if run > 0 {
            times.push(t0.elapsed());
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}
