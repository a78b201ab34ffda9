//! Storage dtypes, and the rule for computing with each.
//!
//! # The compute rule
//! kiln computes in **f32 on every adapter**. Weights keep the dtype they were stored in
//! (F32, F16 or BF16) and are widened to f32 as each kernel reads them, so a model costs the
//! same GPU memory as its file and reads the same bytes per token:
//!
//! | storage | adapter without SHADER_F16 | adapter with SHADER_F16 |
//! |---|---|---|
//! | F32  | `array<f32>` | `array<f32>` |
//! | F16  | `array<u32>`, two halves per word, `unpack2x16float` | `array<f16>`, native loads |
//! | BF16 | `array<u32>`, two halves per word, `bitcast<f32>(h << 16)` | same as without |
//!
//! Block-quantized weights (ggml's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) stay in
//! their blocks on the GPU, repacked to a word-aligned layout ([`blocks`]), and are read as
//! `array<u32>` on every adapter.
//!
//! Activations, the KV cache and every accumulator are f32, except that GEMV on block weights
//! quantizes its activations to 8 bits (`shaders/gemv_q8.wgsl`, where tuning keeps it). The
//! choice of reader is a [`WeightFormat`], a closed enum that selects a small WGSL snippet;
//! the kernels themselves are written once.

pub mod blocks;
pub mod quantize;

use std::fmt;

/// The dtype of a tensor kiln can compute with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16: the top 16 bits of an f32.
    BF16,
    /// ggml's Q8_0: blocks of 32 8-bit weights with one f16 scale.
    Q8_0,
    /// ggml's Q4_0: blocks of 32 4-bit weights with one f16 scale.
    Q4_0,
    /// ggml's Q4_1: blocks of 32 4-bit weights with an f16 scale and minimum.
    Q4_1,
    /// ggml's Q5_0: blocks of 32 5-bit weights with one f16 scale.
    Q5_0,
    /// ggml's Q5_1: blocks of 32 5-bit weights with an f16 scale and minimum.
    Q5_1,
    /// ggml's Q4_K: super-blocks of 256 4-bit weights, with 6-bit scales and minimums per 32.
    Q4K,
    /// ggml's Q5_K: super-blocks of 256 5-bit weights, with 6-bit scales and minimums per 32.
    Q5K,
    /// ggml's Q6_K: super-blocks of 256 6-bit weights, with 8-bit scales per 16.
    Q6K,
}

impl DType {
    /// Every dtype kiln computes with: the float ones, then the block formats.
    pub const ALL: [DType; 11] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
    ];

    /// The block formats, in the order of [`DType::ALL`].
    pub const QUANTIZED: [DType; 8] = [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
    ];

    /// Bytes per element of a float dtype; for a block format, bytes per block divided by
    /// its weights, rounded up (use [`DType::bytes`] for sizes).
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            _ => 1,
        }
    }

    /// The block shape of a quantized dtype; `None` for F32, F16 and BF16.
    pub fn block(self) -> Option<blocks::Block> {
        blocks::of(self)
    }

    /// Weights per block (1 for float dtypes): rows must be a whole number of blocks.
    pub fn block_elems(self) -> usize {
        self.block().map_or(1, |b| b.elems)
    }

    /// Bytes that `numel` elements occupy on the GPU (a whole number of blocks).
    pub fn bytes(self, numel: usize) -> usize {
        match self.block() {
            None => numel * self.size(),
            Some(b) => b.resident_bytes(numel / b.elems),
        }
    }

    /// Bytes that `numel` elements occupy in a file (safetensors, or GGUF's blocks).
    pub fn file_bytes(self, numel: usize) -> usize {
        match self.block() {
            None => numel * self.size(),
            Some(b) => numel / b.elems * b.file_bytes,
        }
    }

    /// The dtype named `name` (any case: `q4_k`, `Q8_0`, `f16`).
    pub fn parse(name: &str) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    /// The name GGUF and safetensors files use for this dtype.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q4K => "Q4_K",
            DType::Q5K => "Q5_K",
            DType::Q6K => "Q6_K",
        }
    }

    /// Decode little-endian bytes of this dtype into f32 values (for a block format: its
    /// resident, repacked bytes).
    pub fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
        if let Some(b) = self.block() {
            let mut n = bytes.len() / (b.quant_bytes + b.meta_bytes);
            while b.resident_bytes(n + 1) <= bytes.len() {
                n += 1;
            }
            return blocks::dequantize(self, bytes, n);
        }
        match self {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => unreachable!("block formats return above"),
        }
    }

    /// Encode f32 values as little-endian bytes of a float dtype (rounding to nearest).
    /// Block formats are not encoded here: they come from files as blocks.
    pub fn from_f32(self, values: &[f32]) -> Vec<u8> {
        match self {
            DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            other => panic!("from_f32 encodes float dtypes only, not {other}"),
        }
    }

    /// How a kernel on a device with (or without) SHADER_F16 reads this dtype.
    pub fn weight_format(self, has_f16: bool) -> WeightFormat {
        match (self, has_f16) {
            (DType::F32, _) => WeightFormat::F32,
            (DType::F16, true) => WeightFormat::F16,
            (DType::F16, false) => WeightFormat::F16Packed,
            (DType::BF16, _) => WeightFormat::BF16Packed,
            (block, _) => WeightFormat::Blocks(block),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a shader reads a weight tensor: the closed set of WGSL reader snippets.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// `array<f32>`
    F32,
    /// `array<f16>` with `enable f16;` (adapters with SHADER_F16)
    F16,
    /// `array<u32>` holding two f16 each (every adapter)
    F16Packed,
    /// `array<u32>` holding two bf16 each (every adapter)
    BF16Packed,
    /// `array<u32>` of repacked blocks of a block format (every adapter with
    /// `unpack2x16float`): quants, then scales from word `p.NAME_meta` of the kernel's params.
    Blocks(DType),
}

impl WeightFormat {
    /// Float formats: what biases and every non-matmul weight are read in.
    pub const FLOAT: [WeightFormat; 4] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::F16Packed,
        WeightFormat::BF16Packed,
    ];
    /// Every format: the float ones, then each block format.
    pub fn all() -> Vec<WeightFormat> {
        let blocks = DType::QUANTIZED.into_iter().map(WeightFormat::Blocks);
        Self::FLOAT.into_iter().chain(blocks).collect()
    }

    /// Whether this reads repacked blocks (and so needs a `NAME_meta` param).
    pub fn is_block(self) -> bool {
        matches!(self, WeightFormat::Blocks(_))
    }

    /// Whether the reader needs `unpack2x16float`.
    pub fn needs_f16_unpack(self) -> bool {
        self == WeightFormat::F16Packed || self.is_block()
    }

    /// The WGSL element type of the storage array.
    pub fn wgsl_word(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            _ => "u32",
        }
    }

    /// The reader functions `load_ARR(i)` and `load4_ARR(i)` (block formats: `i` a multiple
    /// of 4), written for a placeholder array name `ARR`: the format's file after the
    /// pieces it builds on.
    pub(crate) fn snippet(self) -> &'static [&'static str] {
        macro_rules! wgsl {
            ($($f:literal),*) => { &[$(include_str!(concat!("../../shaders/dtype/", $f, ".wgsl"))),*] };
        }
        match self {
            WeightFormat::F32 => wgsl!("f32"),
            WeightFormat::F16 => wgsl!("f16"),
            WeightFormat::F16Packed => wgsl!("f16_packed"),
            WeightFormat::BF16Packed => wgsl!("bf16_packed"),
            WeightFormat::Blocks(d) => match d {
                DType::Q8_0 => wgsl!("qblock", "half_meta", "q8_0"),
                DType::Q4_0 => wgsl!("qblock", "half_meta", "nibbles", "q4_0"),
                DType::Q4_1 => wgsl!("qblock", "pair_meta", "nibbles", "q4_1"),
                DType::Q5_0 => wgsl!("qblock", "half_meta", "nibbles", "q5_bits", "q5_0"),
                DType::Q5_1 => wgsl!("qblock", "pair_meta", "nibbles", "q5_bits", "q5_1"),
                DType::Q4K => wgsl!("qblock", "k_scales", "q4_k"),
                DType::Q5K => wgsl!("qblock", "k_scales", "q5_k"),
                DType::Q6K => wgsl!("qblock", "q6_k"),
                DType::F32 | DType::F16 | DType::BF16 => {
                    unreachable!("Blocks holds block formats only")
                }
            },
        }
    }

    /// Whether the reader needs native f16 (`enable f16;`, adapters with SHADER_F16).
    pub fn needs_f16(self) -> bool {
        self == WeightFormat::F16
    }
}
