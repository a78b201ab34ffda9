//! Writing host bytes into GPU buffers in bounded chunks.
//!
//! `Queue::write_buffer` copies into staging memory that is only released once the GPU has
//! consumed it. Writing a whole model before waiting would hold a second full copy of it in
//! RAM, so the uploader waits for the queue after every `budget` bytes.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// Bytes per `write_buffer` call.
const CHUNK: usize = 8 << 20;
/// Bytes written before waiting for the GPU to drain the staging memory.
const BUDGET: u64 = 64 << 20;

/// Writes tensors into new GPU buffers in bounded chunks, waiting for the queue every so often;
/// see the module docs.
pub struct Uploader<'a> {
    gpu: &'a Gpu,
    max_part_bytes: Option<u64>,
    pending: u64,
    /// Total bytes written so far.
    pub written: u64,
}

impl<'a> Uploader<'a> {
    /// An uploader to `gpu` that splits tensors into parts of at most `max_part_bytes` (never
    /// more than the device's binding size).
    pub fn new(gpu: &'a Gpu, max_part_bytes: Option<u64>) -> Self {
        Uploader {
            gpu,
            max_part_bytes,
            pending: 0,
            written: 0,
        }
    }

    /// Allocate a tensor (split into parts as the device requires) and upload `bytes`, as a
    /// file stores them (for a block format, ggml's blocks, which are repacked part by part).
    pub async fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        bytes: &[u8],
    ) -> Result<Tensor> {
        self.tensor_with(name, shape, dtype, bytes, |_| {}).await
    }

    /// As [`Uploader::tensor`], calling `progress(bytes_of_this_tensor_done)` after each chunk.
    pub async fn tensor_with(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        bytes: &[u8],
        mut progress: impl FnMut(u64),
    ) -> Result<Tensor> {
        let expected = dtype.file_bytes(shape.iter().product::<usize>());
        if bytes.len() != expected {
            return Err(Error::Shape(format!(
                "tensor '{name}' {shape:?} {dtype} needs {expected} bytes, got {}",
                bytes.len()
            )));
        }
        let tensor = Tensor::allocate(self.gpu, name, shape, dtype, self.max_part_bytes).await?;
        let row_bytes = dtype.file_bytes(tensor.row_len());
        // Progress counts file bytes, whatever the resident layout's size.
        let mut done = 0u64;
        for part in tensor.parts() {
            let file = &bytes[part.rows.start * row_bytes..part.rows.end * row_bytes];
            let before = done;
            let repacked;
            let src = if dtype.block().is_some() {
                repacked = crate::dtype::blocks::repack(dtype, file);
                &repacked[..]
            } else {
                file
            };
            let mut offset = 0usize;
            while offset < src.len() {
                let end = (offset + CHUNK).min(src.len());
                self.write(&part.buffer, offset as u64, &src[offset..end])
                    .await;
                done = before + (end * file.len() / src.len()) as u64;
                progress(done);
                offset = end;
            }
        }
        Ok(tensor)
    }

    /// Write `data` at `offset` (a multiple of 4) of `buffer`, padding the tail to 4 bytes.
    pub(crate) async fn write(&mut self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        let whole = data.len() & !3;
        if whole > 0 {
            self.gpu
                .queue()
                .write_buffer(buffer, offset, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.gpu
                .queue()
                .write_buffer(buffer, offset + whole as u64, &tail);
        }
        self.pending += data.len() as u64;
        self.written += data.len() as u64;
        if self.pending >= BUDGET {
            self.finish().await;
        }
    }

    /// Submit what was written and wait until the GPU holds it.
    pub async fn finish(&mut self) {
        if self.pending > 0 {
            self.gpu.submit([]);
            self.gpu.flush().await;
            self.pending = 0;
        }
    }
}

/// Upload little-endian `bytes` of `dtype` (block formats: ggml's blocks) as a new tensor.
pub async fn upload_bytes(
    gpu: &Gpu,
    name: &str,
    shape: &[usize],
    dtype: DType,
    bytes: &[u8],
) -> Result<Tensor> {
    let mut up = Uploader::new(gpu, None);
    let t = up.tensor(name, shape, dtype, bytes).await?;
    up.finish().await;
    Ok(t)
}

/// Convert f32 values to `dtype` (rounding to nearest) and upload them as a new tensor.
pub async fn upload_f32(
    gpu: &Gpu,
    name: &str,
    shape: &[usize],
    dtype: DType,
    values: &[f32],
) -> Result<Tensor> {
    let numel: usize = shape.iter().product();
    if values.len() != numel {
        return Err(Error::Shape(format!(
            "tensor '{name}' of shape {shape:?} needs {numel} values, got {}",
            values.len()
        )));
    }
    upload_bytes(gpu, name, shape, dtype, &dtype.from_f32(values)).await
}
