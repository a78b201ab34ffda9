//! Parsing and completely validating a safetensors header before any byte is trusted.
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON, then the data.
//! The JSON maps each tensor name to `{dtype, shape, data_offsets: [begin, end]}`, offsets
//! relative to the start of the data, plus an optional `__metadata__` string map.
//!
//! Checked here, each failure naming the file and the tensor: the file holds the 8-byte
//! prefix and the whole header; the header size is sane; the JSON is an object with no
//! duplicate names; every dtype is known; every shape's bytes equal its offsets' span; every
//! span lies inside the file; spans neither overlap nor leave gaps (as the format requires).

use crate::dtype::DType;
use crate::error::{Error, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use std::collections::{BTreeMap, HashSet};

/// Headers beyond this are refused as implausible (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A dtype that may appear in a safetensors file.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FileDType {
    /// 1-byte boolean.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, 5 exponent and 2 mantissa bits.
    F8E5M2,
    /// 8-bit float, 4 exponent and 3 mantissa bits.
    F8E4M3,
    /// 8-bit exponent-only scale (microscaling formats).
    F8E8M0,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

impl FileDType {
    /// The dtype of a header's `dtype` string ("BF16", "F8_E4M3"), if it is one of these.
    pub fn parse(s: &str) -> Option<FileDType> {
        use FileDType::*;
        Some(match s {
            "BOOL" => Bool,
            "U8" => U8,
            "I8" => I8,
            "F8_E5M2" => F8E5M2,
            "F8_E4M3" => F8E4M3,
            "F8_E8M0" => F8E8M0,
            "I16" => I16,
            "U16" => U16,
            "F16" => F16,
            "BF16" => BF16,
            "I32" => I32,
            "U32" => U32,
            "F32" => F32,
            "F64" => F64,
            "I64" => I64,
            "U64" => U64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        use FileDType::*;
        match self {
            Bool | U8 | I8 | F8E5M2 | F8E4M3 | F8E8M0 => 1,
            I16 | U16 | F16 | BF16 => 2,
            I32 | U32 | F32 => 4,
            F64 | I64 | U64 => 8,
        }
    }

    /// The compute dtype this stores, if kiln computes with it.
    pub fn compute(self) -> Option<DType> {
        match self {
            FileDType::F32 => Some(DType::F32),
            FileDType::F16 => Some(DType::F16),
            FileDType::BF16 => Some(DType::BF16),
            _ => None,
        }
    }
}

/// One tensor's entry, with offsets made absolute within the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name in the file.
    pub name: String,
    /// Its element type.
    pub dtype: FileDType,
    /// Its shape, row-major; empty for a scalar.
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    /// The end of the byte range (exclusive).
    pub end: u64,
}

impl TensorInfo {
    /// Bytes of the tensor's data.
    pub fn bytes(&self) -> u64 {
        self.end - self.start
    }
}

/// A parsed and checked safetensors header.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
    /// The header's `__metadata__` strings, if any.
    pub metadata: BTreeMap<String, String>,
    /// Where the data section starts (8 + header length).
    pub data_start: u64,
}

/// Read the header length from the first 8 bytes, checked against the file's size.
pub fn header_len(path: &str, prefix: &[u8], file_len: u64) -> Result<u64> {
    if file_len < 8 || prefix.len() < 8 {
        return Err(Error::load(
            path,
            format!(
                "file is {file_len} bytes, too short to hold a safetensors header (truncated?)"
            ),
        ));
    }
    let n = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(Error::load(
            path,
            format!(
                "header length {n} is beyond the {MAX_HEADER_BYTES}-byte limit; this is not a \
                 safetensors file, or it is corrupt"
            ),
        ));
    }
    if n < 2 {
        return Err(Error::load(
            path,
            format!("header length {n} is too short for JSON"),
        ));
    }
    if n > file_len - 8 {
        return Err(Error::load(
            path,
            format!(
                "header length {n} runs past the end of the {file_len}-byte file (truncated, or \
                 not a safetensors file)"
            ),
        ));
    }
    Ok(n)
}

/// Parse and validate the JSON header (`json` is the `n` bytes after the length prefix).
pub fn parse_header(path: &str, json: &[u8], file_len: u64) -> Result<Header> {
    let data_start = 8 + json.len() as u64;
    let data_len = file_len
        .checked_sub(data_start)
        .ok_or_else(|| Error::load(path, "header runs past the end of the file (truncated?)"))?;
    let text = std::str::from_utf8(json)
        .map_err(|e| Error::load(path, format!("header is not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let entries = de
        .deserialize_map(EntriesVisitor)
        .and_then(|e| de.end().map(|_| e))
        .map_err(|e| Error::load(path, format!("header is not a valid JSON object: {e}")))?;

    let mut seen = HashSet::new();
    let mut header = Header {
        data_start,
        ..Default::default()
    };
    for (name, value) in entries {
        if !seen.insert(name.clone()) {
            return Err(Error::tensor(path, name, "appears twice in the header"));
        }
        if name == "__metadata__" {
            header.metadata = parse_metadata(path, value)?;
            continue;
        }
        header
            .tensors
            .push(parse_entry(path, &name, &value, data_start, data_len)?);
    }
    check_layout(path, &mut header.tensors, data_start, file_len)?;
    Ok(header)
}

fn parse_metadata(path: &str, value: serde_json::Value) -> Result<BTreeMap<String, String>> {
    let bad = || Error::load(path, "__metadata__ must map strings to strings");
    let obj = value.as_object().ok_or_else(bad)?;
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(bad)?.to_string())))
        .collect()
}

fn parse_entry(
    path: &str,
    name: &str,
    value: &serde_json::Value,
    data_start: u64,
    data_len: u64,
) -> Result<TensorInfo> {
    let err = |reason: String| Error::tensor(path, name, reason);
    let obj = value
        .as_object()
        .ok_or_else(|| err("entry is not a JSON object".into()))?;
    let dtype_str = obj
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| err("missing or non-string 'dtype'".into()))?;
    let dtype =
        FileDType::parse(dtype_str).ok_or_else(|| err(format!("unknown dtype '{dtype_str}'")))?;
    let shape = obj
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| err("missing or non-array 'shape'".into()))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| err("shape holds a value that is not a non-negative integer".into()))?;
    let offsets = obj
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .filter(|o| o.len() == 2)
        .and_then(|o| Some([o[0].as_u64()?, o[1].as_u64()?]))
        .ok_or_else(|| err("'data_offsets' must be two non-negative integers".into()))?;
    let [begin, end] = offsets;
    if begin > end {
        return Err(err(format!("data offsets [{begin}, {end}) run backwards")));
    }
    if end > data_len {
        return Err(err(format!(
            "data offsets [{begin}, {end}) run past the end of the data section ({data_len} \
             bytes); the file is truncated or its header lies"
        )));
    }
    let numel = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let need = numel.and_then(|n| n.checked_mul(dtype.size()));
    match need {
        Some(need) if need == end - begin => {}
        Some(need) => {
            return Err(err(format!(
                "shape {shape:?} of {dtype_str} needs {need} bytes but its data offsets span {}",
                end - begin
            )));
        }
        None => return Err(err(format!("shape {shape:?} overflows"))),
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        start: data_start + begin,
        end: data_start + end,
    })
}

/// Spans must tile the data section exactly: no overlap, no gap, nothing after the end.
fn check_layout(
    path: &str,
    tensors: &mut [TensorInfo],
    data_start: u64,
    file_len: u64,
) -> Result<()> {
    tensors.sort_by_key(|t| (t.start, t.end));
    let mut cursor = data_start;
    let mut prev: Option<&TensorInfo> = None;
    for t in tensors.iter() {
        if t.start < cursor {
            let other = prev.map_or("?", |p| p.name.as_str());
            return Err(Error::tensor(
                path,
                &t.name,
                format!("its data overlaps tensor '{other}'"),
            ));
        }
        if t.start > cursor {
            return Err(Error::tensor(
                path,
                &t.name,
                format!(
                    "{} unclaimed bytes lie before its data; the header does not describe the file",
                    t.start - cursor
                ),
            ));
        }
        cursor = t.end;
        prev = Some(t);
    }
    if cursor != file_len {
        return Err(Error::load(
            path,
            format!(
                "{} bytes follow the last tensor's data; the header does not describe the file",
                file_len - cursor
            ),
        ));
    }
    Ok(())
}

/// Collects a JSON object's entries in order, keeping duplicates so they can be reported.
struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Vec<(String, serde_json::Value)>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}
