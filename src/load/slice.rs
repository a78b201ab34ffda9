//! Slices of a weight matrix (N, K) as it is stored (safetensors' floats, GGUF's blocks):
//! rows are contiguous; columns are a range of every row, at block boundaries. A shard's
//! weights are cut from the file's bytes before they upload ([`super::Cut`]), so no adapter
//! holds more than its own.

use crate::dtype::DType;
use crate::error::{Error, Result};
use std::ops::Range;

/// Rows `rows` of an (N, K) matrix stored in `bytes`.
pub fn rows(bytes: &[u8], dtype: DType, shape: [usize; 2], rows: Range<usize>) -> Result<&[u8]> {
    let [n, k] = shape;
    check(bytes, dtype, shape)?;
    if rows.start > rows.end || rows.end > n {
        return Err(Error::Invalid(format!(
            "rows {rows:?} are outside a matrix of {n} rows"
        )));
    }
    let row = dtype.file_bytes(k);
    Ok(&bytes[rows.start * row..rows.end * row])
}

/// Columns `cols` of every row of an (N, K) matrix stored in `bytes`; for a block format
/// both ends must fall on block boundaries.
pub fn columns(
    bytes: &[u8],
    dtype: DType,
    shape: [usize; 2],
    cols: Range<usize>,
) -> Result<Vec<u8>> {
    let [_, k] = shape;
    check(bytes, dtype, shape)?;
    let b = dtype.block_elems();
    if cols.start > cols.end || cols.end > k {
        return Err(Error::Invalid(format!(
            "columns {cols:?} are outside a matrix of {k} columns"
        )));
    }
    if !cols.start.is_multiple_of(b) || !cols.end.is_multiple_of(b) {
        return Err(Error::Invalid(format!(
            "columns {cols:?} cut {dtype}'s {b}-weight blocks"
        )));
    }
    let row = dtype.file_bytes(k);
    let (from, to) = (dtype.file_bytes(cols.start), dtype.file_bytes(cols.end));
    let mut out = Vec::with_capacity((to - from) * shape[0]);
    for r in bytes.chunks_exact(row.max(1)) {
        out.extend_from_slice(&r[from..to]);
    }
    Ok(out)
}

fn check(bytes: &[u8], dtype: DType, [n, k]: [usize; 2]) -> Result<()> {
    if !k.is_multiple_of(dtype.block_elems()) {
        return Err(Error::Invalid(format!(
            "rows of {k} weights are not whole {dtype} blocks"
        )));
    }
    let want = n * dtype.file_bytes(k);
    if bytes.len() != want {
        return Err(Error::Invalid(format!(
            "a ({n}, {k}) {dtype} matrix is {want} bytes, not {}",
            bytes.len()
        )));
    }
    Ok(())
}
