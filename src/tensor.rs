//! A tensor on the GPU: shape, dtype and the buffers that hold it. No math lives here.
//!
//! A tensor larger than one storage binding (128 MiB on lavapipe) is split by rows of its
//! first dimension into parts, each its own buffer no larger than one binding. Kernels that
//! read weights (matmul, embedding) run once per part; everything else sees one part.
//!
//! A block-quantized tensor's rows are whole blocks, so parts split at block boundaries;
//! each part is laid out on its own (quants, then scales: see [`crate::dtype::blocks`]).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use std::ops::Range;

/// Rows `rows` of a tensor, in their own buffer starting at byte 0.
#[derive(Clone, Debug)]
pub struct Part {
    /// The part's own buffer, holding only its rows.
    pub buffer: crate::gpu::Buffer,
    /// The rows of the tensor's first dimension it holds.
    pub rows: Range<usize>,
}

/// Where a tensor cut for one adapter of a split model sits in the whole tensor: `range`
/// of the whole's `axis` (0: rows, 1: columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The axis cut (0: rows, 1: columns).
    pub axis: usize,
    /// The indices of `axis` of the whole that this tensor holds.
    pub range: Range<usize>,
    /// The whole tensor's shape.
    pub whole: Vec<usize>,
}

/// A named tensor on the GPU: shape, dtype, and its parts (one buffer each; see the module docs).
#[derive(Clone, Debug)]
pub struct Tensor {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    parts: Vec<Part>,
    slice: Option<Slice>,
}

impl Tensor {
    /// Its name, by which [`Weights`](crate::load::Weights) holds it.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its shape, outermost dimension first (this adapter's share, for a cut tensor).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The dtype it is stored and read in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Its parts, in row order; one unless it is larger than a binding.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
    /// Where this tensor sits in the whole, if it was cut for one adapter of a split model.
    pub fn slice(&self) -> Option<&Slice> {
        self.slice.as_ref()
    }
    /// The whole tensor's shape: this one's, unless it was cut.
    pub fn whole_shape(&self) -> &[usize] {
        self.slice.as_ref().map_or(&self.shape, |s| &s.whole)
    }
    /// This tensor as `range` of axis `axis` of a whole tensor of shape `whole`; errors
    /// unless the shapes agree.
    pub fn sliced(mut self, axis: usize, range: Range<usize>, whole: &[usize]) -> Result<Tensor> {
        let mut expect = whole.to_vec();
        let fits = axis < whole.len() && range.end <= whole[axis] && {
            expect[axis] = range.len();
            expect == self.shape
        };
        if !fits {
            return Err(Error::Shape(format!(
                "tensor '{}' {:?} is not {range:?} of axis {axis} of a tensor {whole:?}",
                self.name, self.shape
            )));
        }
        self.slice = Some(Slice {
            axis,
            range,
            whole: whole.to_vec(),
        });
        Ok(self)
    }
    /// Elements in this tensor (the product of its shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes held on the GPU.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| self.part_bytes(p)).sum()
    }
    /// Bytes of one part on the GPU.
    pub fn part_bytes(&self, part: &Part) -> u64 {
        self.dtype.bytes(part.rows.len() * self.row_len()) as u64
    }
    /// For a block format, the word of `part`'s buffer where its scales start (0 otherwise).
    pub fn meta_word(&self, part: &Part) -> u32 {
        self.dtype.block().map_or(0, |b| {
            b.meta_word(part.rows.len() * self.row_len() / b.elems) as u32
        })
    }
    /// Length of the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    /// Elements per row of the first dimension.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Split `shape` by rows so that no part exceeds `max_part_bytes`.
    pub fn plan_parts(
        name: &str,
        shape: &[usize],
        dtype: DType,
        max_part_bytes: u64,
    ) -> Result<Vec<Range<usize>>> {
        let rows = shape.first().copied().unwrap_or(1);
        let row_len = shape.iter().skip(1).product::<usize>();
        if dtype.block().is_some() && (shape.len() < 2 || row_len % dtype.block_elems() != 0) {
            return Err(Error::Shape(format!(
                "tensor '{name}' {shape:?} is {dtype}, whose blocks hold {} weights, so its rows \
                 must be a whole number of blocks",
                dtype.block_elems()
            )));
        }
        let part_bytes = |rows: u64| dtype.bytes(rows as usize * row_len) as u64;
        let row_bytes = part_bytes(1);
        if row_bytes == 0 || rows == 0 {
            return Ok(vec![0..rows]);
        }
        if row_bytes.next_multiple_of(4) > max_part_bytes {
            return Err(Error::Limit(format!(
                "one row of tensor '{name}' {shape:?} takes {row_bytes} bytes, more than one \
                 storage binding holds on this device ({max_part_bytes} bytes)"
            )));
        }
        // As many rows as fit, once the part is rounded up to whole 4-byte words.
        let mut per_part = (max_part_bytes / row_bytes).max(1);
        while per_part > 1 && part_bytes(per_part).next_multiple_of(4) > max_part_bytes {
            per_part -= 1;
        }
        let per_part = per_part as usize;
        Ok((0..rows)
            .step_by(per_part)
            .map(|s| s..(s + per_part).min(rows))
            .collect())
    }

    /// Allocate the buffers for a tensor, split to fit `max_part_bytes` (at most the
    /// device's binding size).
    pub async fn allocate(
        gpu: &Gpu,
        name: &str,
        shape: &[usize],
        dtype: DType,
        max_part_bytes: Option<u64>,
    ) -> Result<Tensor> {
        let limit = max_part_bytes.unwrap_or(u64::MAX).min(gpu.max_binding());
        let row_len = shape.iter().skip(1).product::<usize>();
        let mut parts = Vec::new();
        for rows in Self::plan_parts(name, shape, dtype, limit)? {
            let bytes = dtype.bytes(rows.len() * row_len) as u64;
            let label = format!("{name}[{}..{}]", rows.start, rows.end);
            let buffer = gpu.storage_buffer(&label, bytes).await?;
            parts.push(Part { buffer, rows });
        }
        Ok(Tensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            parts,
            slice: None,
        })
    }

    /// Read the whole tensor back as f32 values (for tests and debugging).
    pub async fn to_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.numel());
        for part in &self.parts {
            let raw = gpu
                .read_bytes(&part.buffer, 0, self.part_bytes(part))
                .await?;
            let numel = part.rows.len() * self.row_len();
            out.extend(crate::dtype::blocks::dequantize(
                self.dtype,
                &raw,
                numel / self.dtype.block_elems(),
            ));
        }
        out.truncate(self.numel());
        Ok(out)
    }
}
