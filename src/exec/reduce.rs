//! All-reduce through the host, for shards of one model on several adapters (WebGPU has no
//! memory shared between adapters and no copy from one to another): each adapter copies its
//! partial sum into a mapped staging buffer, the host adds the partials in adapter order (so
//! the result never depends on which adapter finished first), and writes the sum back into
//! every adapter's buffer. Staging is allocated once, two sets that alternate by call, so
//! no buffer is created per step.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct AllReduce {
    gpus: Vec<Gpu>,
    /// Per adapter, two staging buffers; call n uses set n % 2.
    staging: Vec<[wgpu::Buffer; 2]>,
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
    pub async fn run(&self, partials: &[&wgpu::Buffer], floats: usize) -> Result<()> {
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
        let set = self.calls.fetch_add(1, Ordering::Relaxed) % 2;
        // Every copy submitted first, so the adapters' copies overlap.
        for ((gpu, staging), partial) in self.gpus.iter().zip(&self.staging).zip(partials) {
            let mut enc = gpu.device().create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(partial, 0, &staging[set], 0, bytes);
            gpu.queue().submit([enc.finish()]);
        }
        let mut sum = vec![0f32; floats];
        for (gpu, staging) in self.gpus.iter().zip(&self.staging) {
            let part = gpu.map_read(&staging[set], bytes).await?;
            // (The bytes of a Vec<u8> need not be aligned for f32: read them as bytes.)
            for (s, p) in sum.iter_mut().zip(part.chunks_exact(4)) {
                *s += f32::from_le_bytes([p[0], p[1], p[2], p[3]]);
            }
        }
        for (gpu, partial) in self.gpus.iter().zip(partials) {
            gpu.queue()
                .write_buffer(partial, 0, bytemuck::cast_slice(&sum));
            gpu.queue().submit([]);
        }
        for gpu in &self.gpus {
            gpu.flush().await;
        }
        Ok(())
    }
}
