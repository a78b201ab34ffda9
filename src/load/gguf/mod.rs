//! Reading GGUF files (llama.cpp's format) for import: metadata, tensor directory, and
//! data of F32, F16, BF16 and the block formats of [`crate::dtype::blocks`].
//!
//! Layout (v2/v3): magic `GGUF`, version, tensor count, metadata count, the metadata
//! key/values, the tensor infos (name, dims innermost first, type, offset), padding to
//! `general.alignment` (default 32), then the tensor data. Every count, length and offset is
//! checked against the file before it is used.

use super::cursor::Cursor;
use crate::dtype::{DType, blocks};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The most tensors a file may list (the largest real models list a few thousand).
pub const MAX_TENSORS: usize = 1 << 16;
/// The most metadata keys a file may hold.
pub const MAX_METADATA: usize = 1 << 16;
/// The most elements of one metadata array (vocabularies and merges: kiln's vocabulary
/// limit).
pub const MAX_ARRAY: usize = 1 << 22;
/// The longest metadata string (a chat template is a few KiB).
pub const MAX_STRING: usize = 16 << 20;
/// The longest key or tensor name.
pub const MAX_NAME: usize = 1 << 16;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Meta {
    /// Any unsigned integer (u8, u16, u32, u64), widened.
    U64(u64),
    /// Any signed integer (i8, i16, i32, i64), widened.
    I64(i64),
    /// A float (f32 or f64), widened.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// An array of values of one type (not nested).
    Array(Vec<Meta>),
}

impl Meta {
    /// The value as a u64, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Meta::U64(v) => Some(*v),
            Meta::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
    /// The value as an f64, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Meta::F64(v) => Some(*v),
            Meta::U64(v) => Some(*v as f64),
            Meta::I64(v) => Some(*v as f64),
            _ => None,
        }
    }
    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Meta::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[Meta]> {
        match self {
            Meta::Array(a) => Some(a),
            _ => None,
        }
    }
    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Meta::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// The dtype of ggml type id `id`, or the type's name when kiln does not read it.
fn ggml_type(id: u32) -> std::result::Result<DType, String> {
    Ok(match id {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::Q4_0,
        3 => DType::Q4_1,
        6 => DType::Q5_0,
        7 => DType::Q5_1,
        8 => DType::Q8_0,
        12 => DType::Q4K,
        13 => DType::Q5K,
        14 => DType::Q6K,
        30 => DType::BF16,
        other => {
            const NAMES: [&str; 40] = [
                "F32",
                "F16",
                "Q4_0",
                "Q4_1",
                "Q4_2",
                "Q4_3",
                "Q5_0",
                "Q5_1",
                "Q8_0",
                "Q8_1",
                "Q2_K",
                "Q3_K",
                "Q4_K",
                "Q5_K",
                "Q6_K",
                "Q8_K",
                "IQ2_XXS",
                "IQ2_XS",
                "IQ3_XXS",
                "IQ1_S",
                "IQ4_NL",
                "IQ3_S",
                "IQ2_S",
                "IQ4_XS",
                "I8",
                "I16",
                "I32",
                "I64",
                "F64",
                "IQ1_M",
                "BF16",
                "Q4_0_4_4",
                "Q4_0_4_8",
                "Q4_0_8_8",
                "TQ1_0",
                "TQ2_0",
                "IQ4_NL_4_4",
                "IQ4_NL_4_8",
                "IQ4_NL_8_8",
                "MXFP4",
            ];
            return Err(NAMES
                .get(other as usize)
                .map_or(format!("unknown ggml type {other}"), |n| n.to_string()));
        }
    })
}

/// One tensor's directory entry.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    /// The tensor's name in the file (llama.cpp's names, `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions as ggml lists them, innermost (contiguous) first.
    pub dims: Vec<usize>,
    /// Its storage format.
    pub kind: DType,
    /// Absolute byte range in the file.
    pub start: usize,
    /// The end of the byte range (exclusive).
    pub end: usize,
}

impl GgufTensor {
    /// The row-major shape, outermost first (HF order): ggml's dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
    /// Elements in the tensor.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file over its bytes.
pub struct Gguf<'a> {
    /// The format version (2 or 3).
    pub version: u32,
    /// The metadata, by key (`general.architecture`, `llama.context_length`).
    pub meta: BTreeMap<String, Meta>,
    /// The tensor directory, in file order.
    pub tensors: Vec<GgufTensor>,
    bytes: &'a [u8],
    path: String,
}

impl<'a> Cursor<'a> {
    /// A count of at most `max` that must fit in what remains of the file, at `min_size`
    /// bytes per item: checked before anything is allocated for it.
    fn count(&mut self, what: &str, min_size: usize, max: usize) -> Result<usize> {
        let n = self.u64(what)?;
        if n > max as u64 {
            return Err(Error::load(
                self.path,
                format!("{what} {n} is over kiln's limit of {max}"),
            ));
        }
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_size as u64) > left {
            return Err(Error::load(
                self.path,
                format!(
                    "{what} {n} is more than the rest of the file can hold (truncated, or not GGUF)"
                ),
            ));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str, max: usize) -> Result<String> {
        let n = self.count(what, 1, max)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::load(self.path, format!("{what} is not UTF-8")))
    }
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Meta> {
        let scalar = |c: &mut Self, n: usize| c.take(n, key).map(|b| b.to_vec());
        Ok(match ty {
            0 => Meta::U64(u64::from(scalar(self, 1)?[0])),
            1 => Meta::I64(i64::from(scalar(self, 1)?[0] as i8)),
            2 => Meta::U64(u64::from(u16::from_le_bytes(
                scalar(self, 2)?.try_into().expect("2"),
            ))),
            3 => Meta::I64(i64::from(i16::from_le_bytes(
                scalar(self, 2)?.try_into().expect("2"),
            ))),
            4 => Meta::U64(u64::from(self.u32(key)?)),
            5 => Meta::I64(i64::from(self.u32(key)? as i32)),
            6 => Meta::F64(f64::from(f32::from_bits(self.u32(key)?))),
            7 => Meta::Bool(scalar(self, 1)?[0] != 0),
            8 => Meta::Str(self.string(key, MAX_STRING)?),
            9 if depth == 0 => {
                let inner = self.u32(key)?;
                let n = self.count(&format!("array '{key}' length"), 1, MAX_ARRAY)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(inner, key, depth + 1)?);
                }
                Meta::Array(items)
            }
            10 => Meta::U64(self.u64(key)?),
            11 => Meta::I64(self.u64(key)? as i64),
            12 => Meta::F64(f64::from_bits(self.u64(key)?)),
            9 => {
                return Err(Error::load(
                    self.path,
                    format!(
                        "metadata '{key}' is an array of arrays, which no model metadata kiln \
                         reads uses (not supported)"
                    ),
                ));
            }
            _ => {
                return Err(Error::load(
                    self.path,
                    format!("metadata '{key}' has unknown type {ty}"),
                ));
            }
        })
    }
}

impl<'a> Gguf<'a> {
    /// Parse and check a GGUF file held in `bytes` (typically a memory map).
    pub fn parse(path: &str, bytes: &'a [u8]) -> Result<Gguf<'a>> {
        let mut c = Cursor::new(bytes, path);
        if c.take(4, "magic").ok() != Some(b"GGUF".as_slice()) {
            return Err(Error::load(path, "not a GGUF file (no GGUF magic)"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::load(
                path,
                format!("GGUF version {version} is not supported (2 or 3)"),
            ));
        }
        let n_tensors = c.count("tensor count", 24, MAX_TENSORS)?;
        let n_meta = c.count("metadata count", 12, MAX_METADATA)?;
        let mut meta = BTreeMap::new();
        for _ in 0..n_meta {
            let key = c.string("metadata key", MAX_NAME)?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, &key, 0)?;
            if meta.contains_key(&key) {
                return Err(Error::load(path, format!("metadata '{key}' appears twice")));
            }
            meta.insert(key, v);
        }
        let mut infos: Vec<(String, Vec<usize>, u32, usize)> = Vec::with_capacity(n_tensors);
        let mut names = std::collections::HashSet::with_capacity(n_tensors);
        let to_usize = |v: u64, name: &str, what: &str| {
            usize::try_from(v).map_err(|_| {
                Error::tensor(path, name, format!("{what} {v} does not fit this platform"))
            })
        };
        for _ in 0..n_tensors {
            let name = c.string("tensor name", MAX_NAME)?;
            if !names.insert(name.clone()) {
                return Err(Error::tensor(
                    path,
                    &name,
                    "appears twice in the tensor list",
                ));
            }
            let n_dims = c.u32(&name)? as usize;
            if n_dims > 4 {
                return Err(Error::tensor(
                    path,
                    &name,
                    format!("has {n_dims} dimensions (at most 4)"),
                ));
            }
            let dims = (0..n_dims)
                .map(|_| to_usize(c.u64(&name)?, &name, "dimension"))
                .collect::<Result<Vec<_>>>()?;
            let ty = c.u32(&name)?;
            let offset = to_usize(c.u64(&name)?, &name, "offset")?;
            infos.push((name, dims, ty, offset));
        }
        let align = meta
            .get("general.alignment")
            .and_then(Meta::as_u64)
            .unwrap_or(32);
        if align == 0 || !align.is_power_of_two() || align > 1 << 16 {
            return Err(Error::load(
                path,
                format!("general.alignment {align} is not a power of two up to 65536"),
            ));
        }
        let data_start = c.pos.next_multiple_of(align as usize);
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, ty, offset) in infos {
            let kind = ggml_type(ty).map_err(|t| {
                Error::tensor(path, &name, format!("has type {t}, which kiln does not read (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K)"))
            })?;
            let numel = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let block = kind.block_elems();
            let bytes_len = numel
                .filter(|n| n % block == 0 && dims.first().is_none_or(|d| d % block == 0))
                .and_then(|n| (n / block).checked_mul(kind.file_bytes(block)))
                .ok_or_else(|| {
                    Error::tensor(
                        path,
                        &name,
                        format!("dims {dims:?} do not fit {kind} blocks of {block}"),
                    )
                })?;
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(bytes_len));
            match (start, end) {
                (Some(s), Some(e)) if e <= bytes.len() => tensors.push(GgufTensor {
                    name,
                    dims,
                    kind,
                    start: s,
                    end: e,
                }),
                _ => {
                    return Err(Error::tensor(
                        path,
                        &name,
                        format!(
                            "data at offset {offset} ({bytes_len} bytes) runs past the end of the file (truncated?)"
                        ),
                    ));
                }
            }
        }
        Ok(Gguf {
            version,
            meta,
            tensors,
            bytes,
            path: path.to_string(),
        })
    }

    /// The file's path, as errors name it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A metadata value, or an error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&Meta> {
        self.meta
            .get(key)
            .ok_or_else(|| Error::load(&self.path, format!("metadata '{key}' is missing")))
    }

    /// Metadata `key` as a non-negative integer; an error if missing or of another type.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key)?
            .as_u64()
            .ok_or_else(|| Error::load(&self.path, format!("metadata '{key}' is not an integer")))
    }

    /// Metadata `key` as a number; an error if missing or of another type.
    pub fn f64(&self, key: &str) -> Result<f64> {
        self.get(key)?
            .as_f64()
            .ok_or_else(|| Error::load(&self.path, format!("metadata '{key}' is not a number")))
    }

    /// Metadata `key` as a string; an error if missing or of another type.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| Error::load(&self.path, format!("metadata '{key}' is not a string")))
    }

    /// Metadata `key` as an array of strings; an error if missing or of another type.
    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let bad = || {
            Error::load(
                &self.path,
                format!("metadata '{key}' is not an array of strings"),
            )
        };
        self.get(key)?
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|m| m.as_str().ok_or_else(bad))
            .collect()
    }

    /// The directory entry of tensor `name`, if the file has one.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor's bytes as the file stores them (ggml blocks for block formats).
    pub fn data(&self, t: &GgufTensor) -> &'a [u8] {
        &self.bytes[t.start..t.end]
    }

    /// The tensor's values as f32, in row-major (HF) order.
    pub fn dequantize(&self, t: &GgufTensor) -> Vec<f32> {
        blocks::dequantize_file(t.kind, self.data(t))
    }
}

#[cfg(test)]
mod tests;
