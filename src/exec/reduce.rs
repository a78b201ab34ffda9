//! All-reduce through the host, for shards of one model on several adapters (WebGPU has no
//! memory shared between adapters and no copy from one to another): each adapter copies its
//! partial sum into a mapped staging buffer, the host adds the partials in adapter order (so
//! the result never depends on which adapter finished first), and writes the sum back into
//! every adapter's buffer. Staging is allocated once, two sets that alternate by call, so
//! no buffer is created per step.

use crate::error::{Error, Result};
use crate::gpu::Buffer;
use crate::gpu::Gpu;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A sum of f32 partials across adapters, through the host; see the module docs.
pub struct AllReduce {
    gpus: Vec<Gpu>,
    /// Per adapter, two staging buffers; call n uses set n % 2.
    staging: Vec<[Buffer; 2]>,
    floats: usize,
    calls: AtomicUsize,
}

impl AllReduce {
    /// Staging for sums of up to `floats` f32 across `gpus` (in the order their partials
    /// come).
    pub async fn new(gpus: &[Gpu], floats: usize) -> Result<AllReduce> {
        if gpus.is_empty() || floats == 0 {
            return Err(Error::Invalid(format!(
                "an all-reduce needs adapters and values (got {} adapters, {floats} values)",
                gpus.len()
            )));
        }
        let bytes = floats as u64 * 4;
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let mut staging = Vec::with_capacity(gpus.len());
        for gpu in gpus {
            let a = gpu
                .create_buffer("all-reduce staging a", bytes, usage)
                .await?;
            let b = gpu
                .create_buffer("all-reduce staging b", bytes, usage)
                .await?;
            staging.push([a, b]);
        }
        Ok(AllReduce {
            gpus: gpus.to_vec(),
            staging,
            floats,
            calls: AtomicUsize::new(0),
        })
    }

    /// The most values one sum may have.
    pub fn floats(&self) -> usize {
        self.floats
    }

    /// Replace the first `floats` f32 of each adapter's `partials[i]` by the sum of all of
    /// them, added in adapter order. The sums are written with `write_buffer`, so the next
    /// submission on each adapter sees them; resolves once every adapter holds its sum.
    pub async fn run(&self, partials: &[&Buffer], floats: usize) -> Result<()> {
        if floats > self.floats {
            return Err(Error::Invalid(format!(
                "an all-reduce of {floats} values through staging for {}",
                self.floats
            )));
        }
        if floats == 0 {
            return Ok(());
        }
        let bytes = floats as u64 * 4;
        if partials.len() != self.gpus.len() {
            return Err(Error::Invalid(format!(
                "{} partials for an all-reduce over {} adapters",
                partials.len(),
                self.gpus.len()
            )));
        }
        if let Some(small) = partials.iter().find(|b| b.size() < bytes) {
            return Err(Error::Invalid(format!(
                "a partial of {} bytes is smaller than the all-reduce's {bytes}",
                small.size()
            )));
        }
        let counts = vec![floats; partials.len()];
        let mut sum = vec![0f32; floats];
        for part in self.collect(partials, &counts).await? {
            // (The bytes of a Vec<u8> need not be aligned for f32: read them as bytes.)
            for (s, p) in sum.iter_mut().zip(part.chunks_exact(4)) {
                *s += f32::from_le_bytes([p[0], p[1], p[2], p[3]]);
            }
        }
        let every: Vec<_> = partials.iter().map(|b| Some(*b)).collect();
        self.write(&every, bytemuck::cast_slice(&sum)).await
    }

    /// Gather the first `rows` rows of each adapter's `parts[i]` (rows of `widths[i]` 32-bit
    /// words, copied as bits) side by side, adapter after adapter, into rows of the widths'
    /// sum, written into each adapter's `into[i]` where it has one (where it reads the
    /// result). Resolves once every such adapter holds it.
    pub async fn gather(
        &self,
        parts: &[&Buffer],
        widths: &[usize],
        rows: usize,
        into: &[Option<&Buffer>],
    ) -> Result<()> {
        let width: usize = widths.iter().sum();
        if parts.len() != self.gpus.len()
            || widths.len() != parts.len()
            || into.len() != parts.len()
        {
            return Err(Error::Invalid(format!(
                "a gather over {} adapters given {} parts, {} widths and {} destinations",
                self.gpus.len(),
                parts.len(),
                widths.len(),
                into.len()
            )));
        }
        if let Some(small) = into
            .iter()
            .flatten()
            .find(|b| b.size() < (rows * width * 4) as u64)
        {
            return Err(Error::Invalid(format!(
                "a gather's destination of {} bytes is smaller than its {rows} x {width} words",
                small.size()
            )));
        }
        let counts: Vec<usize> = widths.iter().map(|w| rows * w).collect();
        let mut all = vec![0u8; rows * width * 4];
        let mut at = 0;
        for (part, w) in self.collect(parts, &counts).await?.iter().zip(widths) {
            for r in 0..rows {
                let row = &part[r * w * 4..(r + 1) * w * 4];
                all[(r * width + at) * 4..][..w * 4].copy_from_slice(row);
            }
            at += w;
        }
        self.write(into, &all).await
    }

    /// Copy `counts[i]` words of each adapter's `buffers[i]` to the host: every copy is
    /// submitted first, so the adapters' copies overlap; the bytes come in adapter order.
    async fn collect(&self, buffers: &[&Buffer], counts: &[usize]) -> Result<Vec<Vec<u8>>> {
        if let Some((n, b)) = counts
            .iter()
            .zip(buffers)
            .find(|(n, b)| **n > self.floats || b.size() < **n as u64 * 4)
        {
            return Err(Error::Invalid(format!(
                "an exchange of {n} values from a buffer of {} bytes through staging for {}",
                b.size(),
                self.floats
            )));
        }
        let set = self.calls.fetch_add(1, Ordering::Relaxed) % 2;
        for (((gpu, staging), buffer), n) in
            self.gpus.iter().zip(&self.staging).zip(buffers).zip(counts)
        {
            let mut enc = gpu.device().create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(buffer, 0, &staging[set], 0, *n as u64 * 4);
            gpu.submit([enc.finish()]);
        }
        let mut out = Vec::with_capacity(buffers.len());
        for ((gpu, staging), n) in self.gpus.iter().zip(&self.staging).zip(counts) {
            out.push(gpu.map_read(&staging[set], *n as u64 * 4).await?);
        }
        Ok(out)
    }

    /// Write `bytes` at the start of each adapter's buffer, where it has one, and wait
    /// until every such adapter has it.
    async fn write(&self, buffers: &[Option<&Buffer>], bytes: &[u8]) -> Result<()> {
        for (gpu, buffer) in self.gpus.iter().zip(buffers) {
            if let Some(buffer) = buffer {
                gpu.queue().write_buffer(buffer, 0, bytes);
                gpu.submit([]);
            }
        }
        for (gpu, _) in self.gpus.iter().zip(buffers).filter(|(_, b)| b.is_some()) {
            gpu.flush().await;
        }
        Ok(())
    }
}
