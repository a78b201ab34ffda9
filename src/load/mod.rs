//! Loading weights: safetensors files (single or sharded) mapped from disk, validated, and
//! uploaded to the GPU in bounded chunks with progress reports.

pub mod ct2;
mod cursor;
pub mod gguf;
pub mod safetensors;
pub mod slice;
mod stream;
mod upload;

#[cfg(not(target_arch = "wasm32"))]
mod checkpoint;

#[cfg(not(target_arch = "wasm32"))]
pub use checkpoint::Checkpoint;
pub use safetensors::{FileDType, Header, TensorInfo};
pub use stream::StreamLoader;
pub use upload::{Uploader, upload_bytes, upload_f32};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Where a load stands, reported after every uploaded chunk.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// The tensor being uploaded.
    pub tensor: &'a str,
    /// Bytes of the source read so far, counted as the file stores them (skipped tensors count
    /// as read).
    pub bytes_done: u64,
    /// Bytes of tensor data in the source.
    pub bytes_total: u64,
    /// Tensors finished (uploaded or skipped), not counting the one in progress.
    pub tensors_done: usize,
    /// Tensors in the source.
    pub tensors_total: usize,
}

/// Options for uploading a checkpoint.
#[derive(Default)]
pub struct LoadOptions<'a> {
    /// Split tensors into parts of at most this many bytes (never more than the device's
    /// storage binding size). Mostly for tests; the default is the device's limit.
    pub max_part_bytes: Option<u64>,
    /// Called after each uploaded chunk.
    pub progress: Option<Box<dyn FnMut(&Progress) + 'a>>,
    /// Store weight matrices (2-D float tensors whose rows are whole blocks) in this dtype,
    /// quantizing (or converting to F16/BF16) as they upload. Tensors already in a block
    /// format, and vectors such as norms, keep their dtype.
    pub dtype: Option<DType>,
    /// Load only part of some tensors (an adapter's share of a model split across several,
    /// [`crate::split`]): given a tensor's name and shape, which [`Cut`] of it to upload, or
    /// `None` for all of it. The cut comes before any recoding.
    pub cut: Option<CutRule<'a>>,
    /// The most bytes of weights to place on one adapter: a tensor that would take the load
    /// past it fails, naming the budget (what a smaller adapter holds, for tests; or an
    /// adapter's share kept for others). A model split by layers applies it to each adapter.
    pub budget: Option<u64>,
}

/// Which part of each tensor to load: see [`LoadOptions::cut`].
pub type CutRule<'a> = Box<dyn Fn(&str, &[usize]) -> Option<Cut> + 'a>;

/// A tensor's shape and bytes after a cut.
type CutBytes<'b> = (Vec<usize>, std::borrow::Cow<'b, [u8]>);

/// The part of a tensor an adapter holds when a model is split across several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Rows of a matrix, or elements of a vector.
    Rows(std::ops::Range<usize>),
    /// Columns of a matrix, at block boundaries.
    Columns(std::ops::Range<usize>),
    /// None of it: the tensor is not uploaded, and asking for it says so.
    Skip,
}

/// `bytes` of a tensor of `shape` and `dtype` cut to `cut`: the new shape and bytes (`None`
/// for [`Cut::Skip`]).
fn apply_cut<'b>(
    cut: &Cut,
    shape: &[usize],
    dtype: DType,
    bytes: &'b [u8],
) -> Result<Option<CutBytes<'b>>> {
    let (n, k) = match shape {
        [n] => (*n, 1),
        [n, k] => (*n, *k),
        _ => {
            return Err(Error::Shape(format!(
                "only vectors and matrices can be cut, not a tensor of shape {shape:?}"
            )));
        }
    };
    let mut out = shape.to_vec();
    Ok(match cut {
        Cut::Skip => None,
        Cut::Rows(r) => {
            out[0] = r.len();
            let b = slice::rows(bytes, dtype, [n, k], r.clone())?;
            Some((out, std::borrow::Cow::Borrowed(b)))
        }
        Cut::Columns(c) if shape.len() == 2 => {
            out[1] = c.len();
            let b = slice::columns(bytes, dtype, [n, k], c.clone())?;
            Some((out, std::borrow::Cow::Owned(b)))
        }
        Cut::Columns(_) => {
            return Err(Error::Shape(format!(
                "a vector of shape {shape:?} has no columns to cut"
            )));
        }
    })
}

/// The bytes to upload for a tensor of `shape` stored as `from`, when `options` ask for
/// `to`: `None` keeps it as it is.
pub fn recode(
    to: Option<DType>,
    from: DType,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Option<(DType, Vec<u8>)>> {
    let Some(to) = to else { return Ok(None) };
    let row_len = shape.get(1..).map_or(0, |r| r.iter().product::<usize>());
    if to == from || from.block().is_some() || shape.len() != 2 || row_len % to.block_elems() != 0 {
        return Ok(None);
    }
    let values = from.to_f32(bytes);
    let out = match to.block() {
        Some(_) => crate::dtype::quantize::quantize(to, &values, row_len)?,
        None => to.from_f32(&values),
    };
    Ok(Some((to, out)))
}

/// Tensors resident on one GPU, by name.
#[derive(Default)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    /// Tensors present in the file but not uploaded, with the reason.
    skipped: HashMap<String, String>,
    /// Where the weights came from, for error messages.
    origin: String,
}

impl Weights {
    /// An empty set of weights from `origin` (named in errors).
    pub fn new(origin: impl Into<String>) -> Self {
        Weights {
            origin: origin.into(),
            ..Default::default()
        }
    }

    /// Add `tensor` under its name, replacing any tensor of that name.
    pub fn insert(&mut self, tensor: Tensor) {
        self.tensors.insert(tensor.name().to_string(), tensor);
    }

    /// Take every tensor of `other` (another shard of the same checkpoint).
    pub fn extend(&mut self, other: Weights) {
        self.tensors.extend(other.tensors);
        self.skipped.extend(other.skipped);
    }

    /// The named tensor; a missing one is an error naming it and the checkpoint.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        if let Some(t) = self.tensors.get(name) {
            return Ok(t);
        }
        let reason = match self.skipped.get(name) {
            Some(why) => why.clone(),
            None => "missing from the checkpoint".to_string(),
        };
        Err(Error::tensor(&self.origin, name, reason))
    }

    /// The named tensor, checked against the shape the model expects.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<&Tensor> {
        let t = self.get(name)?;
        if t.whole_shape() != shape {
            return Err(Error::tensor(
                &self.origin,
                name,
                format!(
                    "has shape {:?}, the model expects {shape:?}",
                    t.whole_shape()
                ),
            ));
        }
        Ok(t)
    }

    /// Where the weights came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Tensors held (skipped ones not counted).
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    /// Whether no tensor is held.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    /// The names of the tensors held, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
    /// The dtypes of the weight matrices (2-D tensors), each once: what GEMV is tuned for.
    pub fn matrix_dtypes(&self) -> Vec<DType> {
        let mut out: Vec<DType> = Vec::new();
        for t in self.tensors.values() {
            if t.shape().len() == 2 && !out.contains(&t.dtype()) {
                out.push(t.dtype());
            }
        }
        out.sort_by_key(|d| d.name());
        out
    }

    /// Bytes held on the GPU.
    pub fn bytes(&self) -> u64 {
        self.tensors.values().map(Tensor::bytes).sum()
    }
    /// Tensors of the file that were not uploaded, by name, with the reason.
    pub fn skipped(&self) -> &HashMap<String, String> {
        &self.skipped
    }
}

/// Upload `tensors`, whose bytes `bytes_of` provides, to `gpu`. Tensors of a dtype kiln does
/// not compute with are recorded as skipped, so asking for one later gives a clear error.
pub async fn upload_all<'b>(
    gpu: &crate::gpu::Gpu,
    origin: &str,
    tensors: &[&TensorInfo],
    mut bytes_of: impl FnMut(&TensorInfo) -> Result<&'b [u8]>,
    options: LoadOptions<'_>,
) -> Result<Weights> {
    let bytes_total: u64 = tensors.iter().map(|t| t.bytes()).sum();
    let mut load = Loading::new(gpu, origin, options, bytes_total, tensors.len());
    for info in tensors {
        let Some(dtype) = info.dtype.compute() else {
            let why = format!(
                "has dtype {:?}; kiln computes with F32, F16 and BF16, so it was not uploaded",
                info.dtype
            );
            load.skip(&info.name, why, info.bytes());
            continue;
        };
        load.add(&info.name, &info.shape, dtype, bytes_of(info)?)
            .await?;
    }
    Ok(load.finish().await)
}

/// Tensors uploaded one after another, whatever their source (a safetensors file, a GGUF, a
/// synthetic model), with [`LoadOptions`] applied the same way to each: recoding, part
/// sizes, and progress counted in the source's bytes.
pub(crate) struct Loading<'g, 'o> {
    up: Uploader<'g>,
    progress: Option<Box<dyn FnMut(&Progress) + 'o>>,
    recode_to: Option<DType>,
    cut: Option<CutRule<'o>>,
    budget: Option<u64>,
    weights: Weights,
    origin: String,
    /// Source bytes of the tensors done, and of all of them.
    base: u64,
    bytes_total: u64,
    done: usize,
    total: usize,
}

impl<'g, 'o> Loading<'g, 'o> {
    pub fn new(
        gpu: &'g crate::gpu::Gpu,
        origin: &str,
        options: LoadOptions<'o>,
        bytes_total: u64,
        total: usize,
    ) -> Self {
        Loading {
            up: Uploader::new(gpu, options.max_part_bytes),
            progress: options.progress,
            recode_to: options.dtype,
            cut: options.cut,
            budget: options.budget,
            weights: Weights::new(origin),
            origin: origin.to_string(),
            base: 0,
            bytes_total,
            done: 0,
            total,
        }
    }

    /// Upload one tensor whose source holds `bytes` of `dtype` (block formats: ggml's
    /// blocks), cut and recoded first where the options ask for it.
    pub async fn add(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        source: &[u8],
    ) -> Result<()> {
        let rule = self.cut.as_ref().and_then(|f| f(name, shape));
        let cut = match &rule {
            None => None,
            Some(c) => match apply_cut(c, shape, dtype, source)
                .map_err(|e| Error::tensor(&self.origin, name, format!("{c:?}: {e}")))?
            {
                None => {
                    self.pass(name, source.len() as u64);
                    return Ok(());
                }
                some => some,
            },
        };
        let whole = shape;
        let (shape, bytes): (&[usize], &[u8]) = match &cut {
            Some((s, b)) => (s, b),
            None => (shape, source),
        };
        let recoded = recode(self.recode_to, dtype, shape, bytes)?;
        let (dtype, data) = match &recoded {
            Some((d, b)) => (*d, &b[..]),
            None => (dtype, bytes),
        };
        if let Some(budget) = self.budget {
            let after = self.weights.bytes() + data.len() as u64;
            if after > budget {
                return Err(Error::Limit(format!(
                    "{}: '{name}' would bring this adapter's weights to {after} bytes, over \
                     the budget of {budget}: place the model on more adapters, or store it in \
                     a smaller dtype",
                    self.origin
                )));
            }
        }
        // Progress counts the source's bytes, whatever is stored.
        let scale = source.len() as f64 / data.len().max(1) as f64;
        let (base, bytes_total, done, total) = (self.base, self.bytes_total, self.done, self.total);
        let progress = &mut self.progress;
        let report = |n: u64| {
            if let Some(cb) = progress.as_mut() {
                cb(&Progress {
                    tensor: name,
                    bytes_done: base + (n as f64 * scale) as u64,
                    bytes_total,
                    tensors_done: done,
                    tensors_total: total,
                });
            }
        };
        let tensor = self
            .up
            .tensor_with(name, shape, dtype, data, report)
            .await
            .map_err(|e| match e {
                Error::Limit(m) | Error::Gpu(m) | Error::Shape(m) => {
                    Error::tensor(&self.origin, name, m)
                }
                other => other,
            })?;
        let tensor = match rule {
            Some(Cut::Rows(r)) => tensor.sliced(0, r, whole)?,
            Some(Cut::Columns(c)) => tensor.sliced(1, c, whole)?,
            _ => tensor,
        };
        self.weights.insert(tensor);
        self.base += source.len() as u64;
        self.done += 1;
        Ok(())
    }

    /// Whether the cut skips `name`: its source bytes need not even be produced (see
    /// [`Loading::pass`]).
    pub fn skips(&self, name: &str, shape: &[usize]) -> bool {
        self.cut
            .as_ref()
            .is_some_and(|f| f(name, shape) == Some(Cut::Skip))
    }

    /// Pass over a tensor the cut skips (not placed on this adapter): recorded, not warned
    /// about, and counted in the progress as read past.
    pub fn pass(&mut self, name: &str, source_bytes: u64) {
        let why = "not placed on this adapter (cut: skip)".to_string();
        self.weights.skipped.insert(name.to_string(), why);
        self.base += source_bytes;
        self.done += 1;
        if let Some(cb) = self.progress.as_mut() {
            cb(&Progress {
                tensor: name,
                bytes_done: self.base,
                bytes_total: self.bytes_total,
                tensors_done: self.done,
                tensors_total: self.total,
            });
        }
    }

    /// Record a tensor that is not uploaded, and why (asking for it later is an error that
    /// says so).
    pub fn skip(&mut self, name: &str, why: String, source_bytes: u64) {
        log::info!("{}: skipping '{name}': {why}", self.origin);
        self.weights.skipped.insert(name.to_string(), why);
        self.base += source_bytes;
        self.done += 1;
    }

    /// Wait until the GPU holds everything; the weights.
    pub async fn finish(mut self) -> Weights {
        self.up.finish().await;
        self.weights
    }
}
