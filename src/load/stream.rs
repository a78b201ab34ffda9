//! Uploading a safetensors file that arrives as a stream of chunks (a network response, a
//! file read piece by piece in the browser), straight into GPU buffers. The header is parsed
//! and validated as soon as it is complete; after that each byte is routed to its tensor's
//! buffer, so the file is never held whole in memory.

use super::safetensors::{Header, TensorInfo, header_len, parse_header};
use super::{LoadOptions, Progress, Uploader, Weights};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// Bytes gathered for one part before they are written (a multiple of 4).
const STAGE: usize = 1 << 20;

/// Where the stream is inside the tensor being filled.
struct Filling {
    /// Index into the header's tensors.
    index: usize,
    /// None for a tensor of a dtype kiln does not compute with (its bytes are skipped).
    tensor: Option<Tensor>,
    /// The part being filled, and bytes of it written so far.
    part: usize,
    part_done: u64,
    /// Bytes received for this part but not yet written (written in 4-byte multiples).
    staged: Vec<u8>,
}

/// Uploads a safetensors file as it arrives in chunks; see the module docs.
pub struct StreamLoader<'g, 'o> {
    gpu: &'g Gpu,
    origin: String,
    file_len: u64,
    prefix: Vec<u8>,
    header: Option<Header>,
    /// Absolute offset of the next byte.
    pos: u64,
    filling: Option<Filling>,
    uploader: Uploader<'g>,
    weights: Weights,
    options: LoadOptions<'o>,
    data_total: u64,
}

impl<'g, 'o> StreamLoader<'g, 'o> {
    /// Expect a safetensors file of `file_len` bytes (from Content-Length or the file's size).
    pub fn new(gpu: &'g Gpu, origin: &str, file_len: u64, options: LoadOptions<'o>) -> Self {
        StreamLoader {
            gpu,
            origin: origin.to_string(),
            file_len,
            prefix: Vec::new(),
            header: None,
            pos: 0,
            filling: None,
            uploader: Uploader::new(gpu, options.max_part_bytes),
            weights: Weights::new(origin),
            options,
            data_total: 0,
        }
    }

    /// The header, once it has arrived.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Take the next chunk of the file.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if let Some(d) = self.options.dtype {
            return Err(Error::load(
                &self.origin,
                format!(
                    "a streamed load stores tensors as the file does; storing them as {d} is not supported"
                ),
            ));
        }
        if self.pos + chunk.len() as u64 > self.file_len {
            return Err(Error::load(
                &self.origin,
                format!("more than the announced {} bytes arrived", self.file_len),
            ));
        }
        let mut data = chunk;
        if self.header.is_none() {
            self.prefix.extend_from_slice(chunk);
            self.pos += chunk.len() as u64;
            if self.prefix.len() < 8 {
                return Ok(());
            }
            let n = header_len(&self.origin, &self.prefix, self.file_len)? as usize;
            if self.prefix.len() < 8 + n {
                return Ok(());
            }
            let mut header = parse_header(&self.origin, &self.prefix[8..8 + n], self.file_len)?;
            header.tensors.sort_by_key(|t| t.start);
            self.data_total = header.tensors.iter().map(TensorInfo::bytes).sum();
            self.header = Some(header);
            let rest = std::mem::take(&mut self.prefix).split_off(8 + n);
            self.pos = 8 + n as u64;
            return Box::pin(self.push(&rest)).await;
        }
        while !data.is_empty() {
            self.start_tensor().await?;
            let Some(f) = self.filling.as_mut() else {
                return Err(Error::load(&self.origin, "bytes after the last tensor"));
            };
            let info = &self.header.as_ref().expect("header parsed").tensors[f.index];
            let left_in_tensor = (info.end - self.pos) as usize;
            let take = left_in_tensor.min(data.len());
            let (now, later) = data.split_at(take);
            data = later;
            self.pos += take as u64;
            match &f.tensor {
                None => {}
                Some(t) => {
                    let mut bytes = now;
                    while !bytes.is_empty() {
                        let part_len = t.part_bytes(&t.parts()[f.part]);
                        let n =
                            ((part_len - f.part_done) as usize - f.staged.len()).min(bytes.len());
                        f.staged.extend_from_slice(&bytes[..n]);
                        bytes = &bytes[n..];
                        let complete = f.part_done + f.staged.len() as u64 == part_len;
                        if complete || f.staged.len() >= STAGE {
                            let whole = if complete {
                                f.staged.len()
                            } else {
                                f.staged.len() & !3
                            };
                            let buffer = &t.parts()[f.part].buffer;
                            self.uploader
                                .write(buffer, f.part_done, &f.staged[..whole])
                                .await;
                            f.staged.drain(..whole);
                            f.part_done += whole as u64;
                        }
                        if complete {
                            f.part += 1;
                            f.part_done = 0;
                        }
                    }
                }
            }
            let done = self.pos - self.header.as_ref().map_or(0, |h| h.data_start);
            if let Some(cb) = self.options.progress.as_mut() {
                let h = self.header.as_ref().expect("header parsed");
                cb(&Progress {
                    tensor: &h.tensors[f.index].name,
                    bytes_done: done,
                    bytes_total: self.data_total,
                    tensors_done: f.index,
                    tensors_total: h.tensors.len(),
                });
            }
            if self.pos == info_end(&self.header, f.index) {
                let f = self.filling.take().expect("filling");
                if let Some(t) = f.tensor {
                    self.weights.insert(t);
                }
            }
        }
        Ok(())
    }

    /// Allocate the tensor the next byte belongs to, if none is being filled.
    async fn start_tensor(&mut self) -> Result<()> {
        if self.filling.is_some() {
            return Ok(());
        }
        let h = self.header.as_ref().expect("header parsed");
        let Some(index) = h
            .tensors
            .iter()
            .position(|t| t.start <= self.pos && self.pos < t.end)
        else {
            return Ok(());
        };
        let info = &h.tensors[index];
        let tensor = match info.dtype.compute() {
            Some(dtype) => Some(
                Tensor::allocate(
                    self.gpu,
                    &info.name,
                    &info.shape,
                    dtype,
                    self.options.max_part_bytes,
                )
                .await
                .map_err(|e| Error::tensor(&self.origin, &info.name, e.to_string()))?,
            ),
            None => {
                let why = format!(
                    "has dtype {:?}; kiln computes with F32, F16 and BF16, so it was not uploaded",
                    info.dtype
                );
                self.weights.skipped.insert(info.name.clone(), why);
                None
            }
        };
        self.filling = Some(Filling {
            index,
            tensor,
            part: 0,
            part_done: 0,
            staged: Vec::new(),
        });
        Ok(())
    }

    /// All bytes have arrived: the weights, or an error naming what is missing.
    pub async fn finish(mut self) -> Result<Weights> {
        if self.pos < self.file_len || self.header.is_none() {
            let what = match (&self.header, &self.filling) {
                (None, _) => "the header".to_string(),
                (Some(h), Some(f)) => format!("tensor '{}'", h.tensors[f.index].name),
                (Some(_), None) => "its data".to_string(),
            };
            return Err(Error::load(
                &self.origin,
                format!(
                    "the stream ended after {} of {} bytes, in {what} (truncated download?)",
                    self.pos, self.file_len
                ),
            ));
        }
        // Zero-sized tensors never receive a byte.
        let empty: Vec<TensorInfo> = self
            .header
            .as_ref()
            .map(|h| {
                h.tensors
                    .iter()
                    .filter(|t| t.bytes() == 0)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for info in empty {
            if let Some(dtype) = info.dtype.compute() {
                let t = Tensor::allocate(self.gpu, &info.name, &info.shape, dtype, None).await?;
                self.weights.insert(t);
            }
        }
        self.uploader.finish().await;
        Ok(self.weights)
    }
}

fn info_end(header: &Option<Header>, index: usize) -> u64 {
    header.as_ref().map_or(0, |h| h.tensors[index].end)
}
