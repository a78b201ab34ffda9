//! Running an encoder ([`Encoder`]: embedding models, speech encoders): a batch of inputs
//! through one non-causal pass, padding masked by each input's length, with no KV cache.
//! Programs are kept per batch size and grow by powers of two of tokens, as prefill's do;
//! a shorter batch reuses them and computes only the rows it has.

use crate::error::{Error, Result};
use crate::exec::{Feed, Program};
use crate::gpu::Gpu;
use crate::graph::{Graph, Seq, Step};
use crate::models::Encoder;
use crate::schedule::{Plan, Target};
use std::sync::Arc;

/// An [`Encoder`] on one adapter, with its compiled programs kept per batch size.
pub struct EncoderSession {
    gpu: Gpu,
    model: Arc<dyn Encoder>,
    /// Programs by sequences per step.
    programs: Vec<(usize, Program)>,
}

impl EncoderSession {
    /// A session for `model` on `gpu`; programs are compiled on first use.
    pub fn new(gpu: &Gpu, model: Arc<dyn Encoder>) -> EncoderSession {
        EncoderSession {
            gpu: gpu.clone(),
            model,
            programs: Vec::new(),
        }
    }

    /// The program for `seqs` inputs of up to `tokens` tokens each.
    async fn program(&mut self, seqs: usize, tokens: usize) -> Result<&Program> {
        let fits = |p: &Program| p.tokens() >= tokens;
        if !self.programs.iter().any(|(s, p)| *s == seqs && fits(p)) {
            let max = self.model.max_positions();
            let bucket = crate::exec::bucket(tokens, max);
            let g = Graph::batch(seqs);
            let ids = g.ids("ids", bucket);
            g.output("out", self.model.forward(&g, ids));
            let plan = Plan::new(&g, Target::of(&self.gpu))?;
            let program = Program::new(&self.gpu, plan, None).await?;
            self.programs.retain(|(s, _)| *s != seqs);
            self.programs.push((seqs, program));
        }
        self.programs
            .iter()
            .find(|(s, _)| *s == seqs)
            .map(|(_, p)| p)
            .ok_or_else(|| Error::Invalid("no encoder program".into()))
    }

    /// Encode each input (token ids) in one pass. Returns, per input, its output rows: one
    /// row of the model's width for pooled models, one per token otherwise.
    pub async fn encode(&mut self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let max = self.model.max_positions();
        if inputs.is_empty() {
            return Err(Error::Invalid("nothing to encode".into()));
        }
        for (i, x) in inputs.iter().enumerate() {
            if x.is_empty() || x.len() > max {
                return Err(Error::Limit(format!(
                    "input {i} has {} tokens; the model takes 1 to {max}",
                    x.len()
                )));
            }
        }
        let seqs = inputs.len();
        let tokens = inputs.iter().map(Vec::len).max().unwrap_or(1);
        let program = self.program(seqs, tokens).await?;
        let t = program.tokens();
        let mut ids = vec![0u32; if seqs == 1 { tokens } else { seqs * t }];
        for (i, x) in inputs.iter().enumerate() {
            ids[i * t..i * t + x.len()].copy_from_slice(x);
        }
        let step = Step {
            seqs: inputs.iter().map(|x| Seq::new(0, x.len())).collect(),
        };
        let out = program.run(&step, &[("ids", Feed::Ids(&ids))]).await?;
        let shape = &program.plan().outputs[0].shape;
        let (rows, width) = match shape.as_slice() {
            [_, rows, width] => (*rows, *width),
            other => {
                return Err(Error::Shape(format!(
                    "the encoder returned shape {other:?}, not (S, T or 1, width)"
                )));
            }
        };
        let values = out
            .get("out")
            .ok_or_else(|| Error::Gpu("no output came back".into()))?;
        Ok(inputs
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let n = if rows == 1 { 1 } else { x.len() };
                values[i * rows * width..(i * rows + n) * width].to_vec()
            })
            .collect())
    }
}
