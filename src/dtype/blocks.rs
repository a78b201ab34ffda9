//! Block-quantized formats (ggml's), as they are stored in a file and as they live on the GPU.
//!
//! A ggml block packs `elems` weights with their scales into one record; Q8_0's is 34 bytes,
//! so its fields are not 4-byte aligned and a shader could not read them as words. kiln
//! **repacks** each tensor (or each part of one) at load into two arrays in one buffer:
//!
//! ```text
//! [ quants: block 0 | block 1 | ... ][ meta: block 0 | block 1 | ... ]
//!   quant_bytes each (a multiple of 4)  meta_bytes each (2, or a multiple of 4)
//! ```
//!
//! Quants keep ggml's byte order within a block (low nibbles, high bits and so on), so a
//! reader finds element `j` of a block exactly where ggml's dequantizer does. Meta holds the
//! scales: a 2-byte meta (an f16 `d`) is packed two blocks to a word. Q4_K's and Q5_K's
//! eight 6-bit scales and mins, which ggml packs into 12 bytes, are unpacked to a byte each
//! (20 bytes of meta instead of 16), so a reader takes one byte instead of untangling bits.
//! The meta array starts at word [`Block::meta_word`]`(blocks)`, which kernels receive as a
//! parameter.
//!
//! [`dequantize`] is the CPU twin of the WGSL readers in `shaders/dtype/`: the same index
//! arithmetic, on the repacked bytes. [`repack`] turns ggml blocks into that layout.

use super::DType;

/// The shape of one format's blocks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Weights per block.
    pub elems: usize,
    /// Bytes of one block in a GGUF file.
    pub file_bytes: usize,
    /// Bytes of one block's quants on the GPU (a multiple of 4).
    pub quant_bytes: usize,
    /// Bytes of one block's scales on the GPU: 2 (one f16, two blocks per word) or a
    /// multiple of 4.
    pub meta_bytes: usize,
}

impl Block {
    /// Word at which the meta array starts, for `blocks` blocks.
    pub fn meta_word(&self, blocks: usize) -> usize {
        blocks * self.quant_bytes / 4
    }

    /// Resident bytes of `blocks` blocks (quants, then meta rounded up to a word).
    pub fn resident_bytes(&self, blocks: usize) -> usize {
        blocks * self.quant_bytes + (blocks * self.meta_bytes).next_multiple_of(4)
    }
}

const fn block(elems: usize, file_bytes: usize, quant_bytes: usize, meta_bytes: usize) -> Block {
    Block {
        elems,
        file_bytes,
        quant_bytes,
        meta_bytes,
    }
}

/// The block shape of a quantized dtype (`None` for F32, F16 and BF16).
pub fn of(dtype: DType) -> Option<Block> {
    Some(match dtype {
        DType::F32 | DType::F16 | DType::BF16 => return None,
        DType::Q8_0 => block(32, 34, 32, 2),
        DType::Q4_0 => block(32, 18, 16, 2),
        DType::Q4_1 => block(32, 20, 16, 4),
        DType::Q5_0 => block(32, 22, 20, 2),
        DType::Q5_1 => block(32, 24, 20, 4),
        DType::Q4K => block(256, 144, 128, 20),
        DType::Q5K => block(256, 176, 160, 20),
        DType::Q6K => block(256, 210, 192, 20),
    })
}

/// Where each field of a ggml block goes: (file offset, length, meta?) runs, in the order
/// they are written to the quants (meta = false) or meta (meta = true) array.
fn fields(dtype: DType) -> &'static [(usize, usize, bool)] {
    match dtype {
        // d, qs[32]
        DType::Q8_0 => &[(2, 32, false), (0, 2, true)],
        // d, qs[16]
        DType::Q4_0 => &[(2, 16, false), (0, 2, true)],
        // d, m, qs[16]
        DType::Q4_1 => &[(4, 16, false), (0, 4, true)],
        // d, qh[4], qs[16]: quants are qs then qh
        DType::Q5_0 => &[(6, 16, false), (2, 4, false), (0, 2, true)],
        // d, m, qh[4], qs[16]
        DType::Q5_1 => &[(8, 16, false), (4, 4, false), (0, 4, true)],
        // d, dmin, scales[12], qs[128]: meta is d, dmin, then the unpacked scales
        DType::Q4K => &[(16, 128, false), (0, 4, true)],
        // d, dmin, scales[12], qh[32], qs[128]: quants are qs then qh
        DType::Q5K => &[(48, 128, false), (16, 32, false), (0, 4, true)],
        // ql[128], qh[64], scales[16], d: quants are ql then qh; meta is scales, d, 2 zeros
        DType::Q6K => &[
            (0, 128, false),
            (128, 64, false),
            (192, 16, true),
            (208, 2, true),
        ],
        DType::F32 | DType::F16 | DType::BF16 => &[],
    }
}

/// Repack whole ggml blocks of `dtype` (as a GGUF file stores them) into the resident
/// layout. `file.len()` must be a multiple of the block's file size.
pub fn repack(dtype: DType, file: &[u8]) -> Vec<u8> {
    let Some(b) = of(dtype) else {
        return file.to_vec();
    };
    let n = file.len() / b.file_bytes;
    let mut out = vec![0u8; b.resident_bytes(n)];
    let meta0 = b.meta_word(n) * 4;
    for (i, src) in file.chunks_exact(b.file_bytes).enumerate() {
        let (mut q, mut m) = (i * b.quant_bytes, meta0 + i * b.meta_bytes);
        for &(off, len, meta) in fields(dtype) {
            let at = if meta { &mut m } else { &mut q };
            out[*at..*at + len].copy_from_slice(&src[off..off + len]);
            *at += len;
        }
        if matches!(dtype, DType::Q4K | DType::Q5K) {
            // The 12 packed bytes at 4..16 of the block: 8 scales, then 8 mins.
            for s in 0..8 {
                let (sc, mn) = scale_min_k4(s, &src[4..16]);
                out[m + s] = sc;
                out[m + 8 + s] = mn;
            }
        }
    }
    out
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_K / Q5_K: the 6-bit scale and min of sub-block `s` (0..8) from the 12 packed bytes
/// (ggml's `get_scale_min_k4`).
fn scale_min_k4(s: usize, sc: &[u8]) -> (u8, u8) {
    if s < 4 {
        (sc[s] & 63, sc[s + 4] & 63)
    } else {
        (
            (sc[s + 4] & 0xf) | ((sc[s - 4] >> 6) << 4),
            (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4),
        )
    }
}

/// Element `j` of block `i`, given that block's quants `q` and meta `m` (for 2-byte metas,
/// `m` is the block's f16 `d`).
fn element(dtype: DType, q: &[u8], m: &[u8], j: usize) -> f32 {
    let nib = |byte: u8, high: bool| if high { byte >> 4 } else { byte & 0xf };
    match dtype {
        DType::Q8_0 => f16_at(m, 0) * f32::from(q[j] as i8),
        DType::Q4_0 => f16_at(m, 0) * (f32::from(nib(q[j % 16], j >= 16)) - 8.0),
        DType::Q4_1 => f16_at(m, 0) * f32::from(nib(q[j % 16], j >= 16)) + f16_at(m, 2),
        DType::Q5_0 | DType::Q5_1 => {
            let qh = u32::from_le_bytes([q[16], q[17], q[18], q[19]]);
            let v = f32::from(nib(q[j % 16], j >= 16) | (((qh >> j) & 1) as u8) << 4);
            if dtype == DType::Q5_0 {
                f16_at(m, 0) * (v - 16.0)
            } else {
                f16_at(m, 0) * v + f16_at(m, 2)
            }
        }
        DType::Q4K | DType::Q5K => {
            let s = j / 32;
            let lo = nib(q[(j / 64) * 32 + j % 32], s % 2 == 1);
            let hi = if dtype == DType::Q5K {
                (q[128 + j % 32] >> s) & 1
            } else {
                0
            };
            let (sc, mn) = (f32::from(m[4 + s]), f32::from(m[12 + s]));
            f16_at(m, 0) * sc * f32::from(lo | hi << 4) - f16_at(m, 2) * mn
        }
        DType::Q6K => {
            let (n, r) = (j / 128, j % 128);
            let (quarter, l) = (r / 32, r % 32);
            let lo = nib(q[n * 64 + (quarter % 2) * 32 + l], quarter >= 2);
            let hi = (q[128 + n * 32 + l] >> (quarter * 2)) & 3;
            let sc = f32::from(m[n * 8 + quarter * 2 + l / 16] as i8);
            f16_at(m, 16) * sc * (f32::from(lo | hi << 4) - 32.0)
        }
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("not a block format"),
    }
}

/// Dequantize resident (repacked) bytes holding `blocks` blocks of `dtype` to f32: the CPU
/// twin of the shader readers. (For a float dtype, a block is one element.)
pub fn dequantize(dtype: DType, resident: &[u8], blocks: usize) -> Vec<f32> {
    let Some(b) = of(dtype) else {
        return dtype.to_f32(&resident[..blocks * dtype.size()]);
    };
    let meta0 = b.meta_word(blocks) * 4;
    let mut out = Vec::with_capacity(blocks * b.elems);
    for i in 0..blocks {
        let q = &resident[i * b.quant_bytes..(i + 1) * b.quant_bytes];
        let m = &resident[meta0 + i * b.meta_bytes..meta0 + (i + 1) * b.meta_bytes];
        out.extend((0..b.elems).map(|j| element(dtype, q, m, j)));
    }
    out
}

/// Dequantize ggml blocks as a GGUF file stores them.
pub fn dequantize_file(dtype: DType, file: &[u8]) -> Vec<f32> {
    match of(dtype) {
        None => dtype.to_f32(file),
        Some(b) => dequantize(dtype, &repack(dtype, file), file.len() / b.file_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_word_aligned_and_cover_every_byte() {
        for dtype in DType::QUANTIZED {
            let b = of(dtype).unwrap();
            assert_eq!(b.quant_bytes % 4, 0, "{dtype}");
            assert!(b.meta_bytes == 2 || b.meta_bytes % 4 == 0, "{dtype}");
            let (q, m): (usize, usize) = fields(dtype).iter().fold(
                (0, 0),
                |(q, m), &(_, l, meta)| {
                    if meta { (q, m + l) } else { (q + l, m) }
                },
            );
            assert_eq!(q, b.quant_bytes, "{dtype}");
            // Every file byte is copied exactly once (the K-quants' packed scales are
            // unpacked instead).
            let unpacked = matches!(dtype, DType::Q4K | DType::Q5K);
            let expect_meta = if unpacked {
                4
            } else {
                b.meta_bytes.min(b.file_bytes - q)
            };
            assert_eq!(m, expect_meta, "{dtype}");
            let mut seen = vec![0; b.file_bytes];
            for &(off, len, _) in fields(dtype) {
                seen[off..off + len].iter_mut().for_each(|s| *s += 1);
            }
            if unpacked {
                seen[4..16].iter_mut().for_each(|s| *s += 1);
            }
            assert!(seen.iter().all(|&s| s == 1), "{dtype}: {seen:?}");
        }
    }

    #[test]
    fn q4_0_block_by_hand() {
        // d = 0.5, qs[0] = 0x9f: element 0 is (0xf - 8) * 0.5, element 16 is (0x9 - 8) * 0.5.
        let mut file = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        file.extend([0x9f; 16]);
        let v = dequantize_file(DType::Q4_0, &file);
        assert_eq!(v.len(), 32);
        assert_eq!((v[0], v[15], v[16], v[31]), (3.5, 3.5, 0.5, 0.5));
    }
}
