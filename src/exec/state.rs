//! Persistent buffers that outlive a run: KV caches, the sampler's seen-token flags, the last
//! sampled token. Several programs (prefill and decode) share one `State`.

use crate::error::{Error, Result};
use crate::gpu::Buffer;
use crate::gpu::Gpu;
use crate::schedule::Plan;
use std::collections::HashMap;

/// The persistent buffers (KV caches, sampler state) of one model's programs, by name.
pub struct State {
    pub(crate) buffers: HashMap<String, (Buffer, Vec<usize>)>,
}

impl State {
    /// Allocate (zeroed) every state the plans read or write.
    pub async fn new(gpu: &Gpu, plans: &[&Plan]) -> Result<State> {
        let mut buffers = HashMap::new();
        for plan in plans {
            for (name, shape) in &plan.states {
                match buffers.get(name) {
                    Some((_, s)) if s != shape => {
                        return Err(Error::Shape(format!(
                            "state '{name}' is {s:?} in one plan and {shape:?} in another"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        let bytes = shape.iter().product::<usize>() as u64 * 4;
                        if bytes > gpu.max_binding() {
                            return Err(Error::Limit(format!(
                                "state '{name}' {shape:?} needs {bytes} bytes, more than one \
                                 binding holds on {} ({}); use a shorter context",
                                gpu.describe(),
                                gpu.max_binding()
                            )));
                        }
                        let buf = gpu.storage_buffer(name, bytes).await?;
                        buffers.insert(name.clone(), (buf, shape.clone()));
                    }
                }
            }
        }
        Ok(State { buffers })
    }

    pub(crate) fn buffer(&self, name: &str) -> Result<&Buffer> {
        self.buffers
            .get(name)
            .map(|(b, _)| b)
            .ok_or_else(|| Error::Invalid(format!("the State has no buffer named '{name}'")))
    }

    /// Overwrite the start of a state with `bytes` (f32 values, or u32 token ids).
    pub fn write(&self, gpu: &Gpu, name: &str, bytes: &[u8]) -> Result<()> {
        let (buf, shape) = self
            .buffers
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("no state named '{name}'")))?;
        let size = shape.iter().product::<usize>() * 4;
        if bytes.len() > size || !bytes.len().is_multiple_of(4) {
            return Err(Error::Invalid(format!(
                "{} bytes do not fit state '{name}' of {size} bytes",
                bytes.len()
            )));
        }
        gpu.queue().write_buffer(buf, 0, bytes);
        Ok(())
    }

    /// Read a state back as f32 values (for tests and debugging).
    pub async fn read(&self, gpu: &Gpu, name: &str) -> Result<Vec<f32>> {
        let (buf, shape) = self
            .buffers
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("no state named '{name}'")))?;
        gpu.read_f32(buf, shape.iter().product()).await
    }

    /// Bytes held by all states.
    pub fn bytes(&self) -> u64 {
        self.buffers
            .values()
            .map(|(_, shape)| shape.iter().product::<usize>() as u64 * 4)
            .sum()
    }
}
