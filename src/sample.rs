//! Sampling parameters, their per-step encoding, and the CPU twin of the GPU sampler
//! (`shaders/sample.wgsl`). Sampling runs on the GPU: only the chosen token comes back.

/// How the next token is chosen. `temperature <= 0` or `top_k == 1` is greedy.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Sampling {
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
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }

    /// A clear error for values that make no sense.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Invalid(m));
        if !self.temperature.is_finite() {
            return bad(format!("temperature {} is not a number", self.temperature));
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

    /// The words of the per-step uniform that the sampler reads after `pos` and `rand`.
    pub(crate) fn words(&self) -> [u32; 6] {
        [
            self.top_k.min(u32::MAX as usize) as u32,
            u32::from(self.is_greedy()),
            self.temperature.max(f32::MIN_POSITIVE).to_bits(),
            self.top_p.to_bits(),
            self.min_p.to_bits(),
            self.repetition_penalty.to_bits(),
        ]
    }
}

/// SplitMix64: the random stream a generation draws one u32 per token from.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

/// The order-preserving u32 key of an f32, as the shader computes it.
fn key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The CPU twin of the GPU sampler: the token chosen from `logits` given the tokens
/// already `seen`, the parameters and the step's random bits.
pub fn sample_reference(logits: &[f32], seen: &[bool], s: &Sampling, rand: u32) -> u32 {
    let pen: Vec<f32> = logits
        .iter()
        .zip(seen)
        .map(|(&l, &was)| {
            if s.repetition_penalty != 1.0 && was {
                if l > 0.0 {
                    l / s.repetition_penalty
                } else {
                    l * s.repetition_penalty
                }
            } else {
                l
            }
        })
        .collect();
    let mut best = 0;
    for (i, &l) in pen.iter().enumerate() {
        if l > pen[best] {
            best = i;
        }
    }
    if s.is_greedy() {
        return best as u32;
    }
    let t = s.temperature;
    let scaled: Vec<f32> = pen.iter().map(|l| l / t).collect();
    let m = pen[best] / t;
    let mut sorted: Vec<f32> = scaled.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut thr = 0u32;
    if s.top_k > 0 && s.top_k < scaled.len() {
        thr = key(sorted[s.top_k - 1]);
    }
    if s.top_p < 1.0 {
        let w = |l: f32| f64::from((l - m).exp());
        let kept: Vec<f32> = sorted.iter().copied().filter(|&l| key(l) >= thr).collect();
        let total: f64 = kept.iter().map(|&l| w(l)).sum();
        let need = f64::from(s.top_p) * total;
        let mut acc = 0.0;
        for &l in &kept {
            // All tokens equal to the boundary value stay in.
            acc += w(l);
            if acc >= need {
                thr = thr.max(key(l));
                break;
            }
        }
    }
    if s.min_p > 0.0 {
        thr = thr.max(key(m + s.min_p.ln()));
    }
    let weights: Vec<f64> = scaled
        .iter()
        .map(|&l| {
            if key(l) >= thr {
                f64::from((l - m).exp())
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let target = f64::from(rand >> 8) / 16_777_216.0 * total;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if *w > 0.0 && acc > target {
            return i as u32;
        }
    }
    best as u32
}
