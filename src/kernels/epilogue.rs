//! The fused elementwise tail of a kernel, as the shader sees it (`shaders/epilogue.wgsl`).

/// Elementwise activations. Codes match `activate` in epilogue.wgsl.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Act {
    /// `x` unchanged (code 0).
    #[default]
    Identity,
    /// `x * sigmoid(x)` (code 1).
    Silu,
    /// GELU, tanh approximation (code 2).
    GeluTanh,
    /// GELU with erf, to within 1.5e-7 (code 3).
    GeluErf,
    /// `max(x, 0)` (code 4).
    Relu,
}

impl Act {
    /// Every activation, in code order.
    pub const ALL: [Act; 5] = [
        Act::Identity,
        Act::Silu,
        Act::GeluTanh,
        Act::GeluErf,
        Act::Relu,
    ];
    /// The code `activate` in `shaders/activate.wgsl` takes for this activation.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// `y = act(acc + bias) * aux_act(aux) + residual`; `aux: Some(a)` multiplies by `a(aux)`.
/// Stages apply in field order.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Epilogue {
    /// Add the bias vector (`HAS_BIAS`).
    pub bias: bool,
    /// The activation applied to `acc + bias`.
    pub act: Act,
    /// Multiply by the activation of an aux input of the output's shape (a gate), if set.
    pub aux: Option<Act>,
    /// Add a residual input of the output's shape, last.
    pub residual: bool,
}

impl Epilogue {
    /// Add the epilogue's override constants to a kernel.
    pub fn apply(&self, k: super::Kernel) -> super::Kernel {
        k.constant("HAS_BIAS", self.bias)
            .constant("ACT", self.act.code())
            .constant("AUX_MUL", self.aux.is_some())
            .constant("AUX_ACT", self.aux.unwrap_or_default().code())
            .constant("RESIDUAL", self.residual)
    }

    /// Every epilogue the scheduler can fuse.
    pub fn all() -> Vec<Epilogue> {
        let mut out = Vec::new();
        for bias in [false, true] {
            for act in Act::ALL {
                for aux in std::iter::once(None).chain(Act::ALL.map(Some)) {
                    for residual in [false, true] {
                        out.push(Epilogue {
                            bias,
                            act,
                            aux,
                            residual,
                        });
                    }
                }
            }
        }
        out
    }
}
