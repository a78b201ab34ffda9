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
//! Activations, the KV cache and every accumulator are f32. The choice of reader is a
//! [`WeightFormat`], a closed enum that selects a small WGSL snippet; the kernels themselves
//! are written once.

use std::fmt;

/// The dtype of a tensor kiln can compute with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The safetensors name of this dtype.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    /// Decode little-endian bytes of this dtype into f32 values.
    pub fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
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
        }
    }

    /// Encode f32 values as little-endian bytes of this dtype (rounding to nearest).
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
        }
    }

    /// How a kernel on a device with (or without) SHADER_F16 reads this dtype.
    pub fn weight_format(self, has_f16: bool) -> WeightFormat {
        match (self, has_f16) {
            (DType::F32, _) => WeightFormat::F32,
            (DType::F16, true) => WeightFormat::F16,
            (DType::F16, false) => WeightFormat::F16Packed,
            (DType::BF16, _) => WeightFormat::BF16Packed,
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
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 4] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::F16Packed,
        WeightFormat::BF16Packed,
    ];

    /// The WGSL element type of the storage array.
    pub fn wgsl_word(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            WeightFormat::F16Packed | WeightFormat::BF16Packed => "u32",
        }
    }

    /// The reader functions, written for a placeholder array name `ARR`.
    pub(crate) fn snippet(self) -> &'static str {
        match self {
            WeightFormat::F32 => include_str!("../shaders/dtype/f32.wgsl"),
            WeightFormat::F16 => include_str!("../shaders/dtype/f16.wgsl"),
            WeightFormat::F16Packed => include_str!("../shaders/dtype/f16_packed.wgsl"),
            WeightFormat::BF16Packed => include_str!("../shaders/dtype/bf16_packed.wgsl"),
        }
    }

    pub fn needs_f16(self) -> bool {
        self == WeightFormat::F16
    }
}
