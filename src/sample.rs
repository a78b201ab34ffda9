//! Sampling parameters, their per-step encoding for the GPU sampler (`shaders/sample.wgsl`,
//! `ops/sample.rs`, which also holds its CPU twin), and the random stream a generation draws
//! from. Sampling runs on the GPU: only the chosen token comes back.

/// How the next token is chosen. `temperature == 0` or `top_k == 1` is greedy (a negative
/// temperature is refused by [`Sampling::validate`]).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Logits are divided by it before sampling; 0 is greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: no limit).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: no limit).
    pub top_p: f32,
    /// Keep tokens at least this fraction as likely as the most likely one (0: no limit).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of tokens already seen (1: off).
    pub repetition_penalty: f32,
    /// Seed of the random stream: the same seed, prompt and options give the same text.
    pub seed: u64,
}

impl Default for Sampling {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05.
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl Sampling {
    /// Always the most likely token (no randomness).
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    /// Whether these options always pick the most likely token: `temperature <= 0` or
    /// `top_k == 1`.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }

    /// A clear error for values that make no sense.
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |m: String| Err(crate::error::Error::Invalid(m));
        if !self.temperature.is_finite() {
            return bad(format!("temperature {} is not a number", self.temperature));
        }
        if self.temperature < 0.0 {
            return bad(format!(
                "temperature {} must be 0 (greedy) or more",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p == 0.0 {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad(format!("min_p {} must be in [0, 1)", self.min_p));
        }
        if !(self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty {} must be positive",
                self.repetition_penalty
            ));
        }
        Ok(())
    }

    /// The parameters as the GPU sampler reads them, with the step's random bits.
    pub fn params(&self, rand: u32) -> SamplingParams {
        SamplingParams {
            rand,
            top_k: self.top_k.min(u32::MAX as usize) as u32,
            greedy: u32::from(self.is_greedy()),
            temperature: self.temperature.max(f32::MIN_POSITIVE),
            top_p: self.top_p,
            min_p: self.min_p,
            penalty: self.repetition_penalty,
            pad: 0,
        }
    }
}

/// SplitMix64: the random stream a generation draws one u32 per token from.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The stream from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 32 random bits (the high half of the next SplitMix64 output).
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

crate::kernels::gpu_struct! {
    /// One sequence's sampling parameters for a step, as `shaders/sample.wgsl` reads them.
    pub struct SamplingParams("Sampling") {
        /// Random bits for this step's draw.
        rand: u32,
        /// Keep the k most likely tokens (0: no limit).
        top_k: u32,
        /// 1: take the most likely token, ignoring the rest.
        greedy: u32,
        /// The temperature, at least `f32::MIN_POSITIVE`.
        temperature: f32,
        /// Top-p: the nucleus's probability mass (1: no limit).
        top_p: f32,
        /// Min-p: the fraction of the top probability a token needs (0: no limit).
        min_p: f32,
        /// The repetition penalty (1: off).
        penalty: f32,
        /// Padding to 32 bytes; always 0.
        pad: u32,
    }
}
