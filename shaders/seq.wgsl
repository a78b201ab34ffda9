// One sequence of the step, as the host writes it for every step (graph/step.rs): tokens
// already in its KV cache (pos), rows of the step that hold its tokens (len; the rest of its
// T rows is padding), and its KV-cache slot. Kernels that need it bind `array<Seq>`.
struct Seq {
    pos: u32,
    len: u32,
    slot: u32,
    pad: u32,
}
