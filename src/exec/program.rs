//! A plan made ready to run: everything allocated and bound once, each step one submission.

use super::State;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Op, Value};
use crate::kernels::PARAMS_BYTES;
use crate::sample::Sampling;
use crate::schedule::{Buf, OutputSpec, Plan};
use std::collections::HashMap;

/// Host data for one input of a run.
#[derive(Copy, Clone, Debug)]
pub enum Feed<'a> {
    Ids(&'a [u32]),
    F32(&'a [f32]),
}

/// What changes from one run of a program to the next, besides its inputs: the position of
/// the first token, and the sampler's parameters and random bits.
#[derive(Copy, Clone, Debug)]
pub struct Step {
    pub pos: usize,
    pub sampling: Sampling,
    /// Random bits for this step's draw.
    pub rand: u32,
}

impl Step {
    pub fn at(pos: usize) -> Step {
        Step {
            pos,
            sampling: Sampling::greedy(),
            rand: 0,
        }
    }

    fn words(&self) -> Result<[u32; 8]> {
        let pos =
            u32::try_from(self.pos).map_err(|_| Error::Invalid("position beyond u32".into()))?;
        let [a, b, c, d, e, f] = self.sampling.words();
        Ok([pos, self.rand, a, b, c, d, e, f])
    }
}

/// The outputs of a run: activations (f32) and sampled tokens (u32), by name.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    pub values: HashMap<String, Vec<f32>>,
    pub ids: HashMap<String, Vec<u32>>,
}

impl Outputs {
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.values.get(name).map(Vec::as_slice)
    }
    pub fn ids(&self, name: &str) -> Option<&[u32]> {
        self.ids.get(name).map(Vec::as_slice)
    }
}

impl std::ops::Index<&str> for Outputs {
    type Output = Vec<f32>;
    /// The f32 output `name`; panics if there is none (for tests; use [`Outputs::get`]).
    fn index(&self, name: &str) -> &Vec<f32> {
        match self.values.get(name) {
            Some(v) => v,
            None => panic!("no f32 output named '{name}'"),
        }
    }
}

struct Readback {
    spec: OutputSpec,
    source: wgpu::Buffer,
    staging: wgpu::Buffer,
}

pub struct Program {
    gpu: Gpu,
    plan: Plan,
    pipelines: Vec<wgpu::ComputePipeline>,
    bind_groups: Vec<wgpu::BindGroup>,
    inputs: HashMap<String, wgpu::Buffer>,
    step: wgpu::Buffer,
    readbacks: Vec<Readback>,
    /// Bytes this program allocated (activations, inputs, constants, params, staging).
    bytes: u64,
}

/// Every buffer a plan binds, by [`Buf`].
struct Buffers<'a> {
    plan: &'a Plan,
    state: Option<&'a State>,
    slots: Vec<wgpu::Buffer>,
    inputs: HashMap<String, wgpu::Buffer>,
    consts: HashMap<Value, wgpu::Buffer>,
    step: wgpu::Buffer,
    dummy: wgpu::Buffer,
}

impl Buffers<'_> {
    fn get(&self, buf: &Buf) -> Result<&wgpu::Buffer> {
        Ok(match buf {
            Buf::Params => return Err(Error::Invalid("params are bound per dispatch".into())),
            Buf::Step => &self.step,
            Buf::Slot(s) => &self.slots[*s],
            Buf::Weight { value, part } => match &self.plan.nodes[value.0].op {
                Op::Weight { tensor, .. } => &tensor.parts()[*part].buffer,
                _ => return Err(Error::Invalid("a weight binding is not a weight".into())),
            },
            Buf::Const(v) => &self.consts[v],
            Buf::Input(name) => &self.inputs[name],
            Buf::State(name) => self
                .state
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "the plan uses state '{name}' but no State was given"
                    ))
                })?
                .buffer(name)?,
            Buf::Dummy => &self.dummy,
        })
    }
}

impl Program {
    /// Allocate the plan's buffers, compile its pipelines and build its bind groups.
    /// `state` supplies the persistent buffers the plan names (see [`State::new`]).
    pub async fn new(gpu: &Gpu, plan: Plan, state: Option<&State>) -> Result<Program> {
        let mut bytes = 0u64;
        let mut slots = Vec::new();
        for (i, &size) in plan.slots.iter().enumerate() {
            slots.push(gpu.storage_buffer(&format!("activation {i}"), size).await?);
            bytes += size;
        }
        let mut inputs = HashMap::new();
        for spec in &plan.inputs {
            let size = spec.len as u64 * 4;
            inputs.insert(
                spec.name.clone(),
                gpu.storage_buffer(&format!("input {}", spec.name), size)
                    .await?,
            );
            bytes += size;
        }
        let mut consts = HashMap::new();
        for v in &plan.consts {
            if let Op::Const { name, data } = &plan.nodes[v.0].op {
                let buf = gpu.storage_buffer(name, data.len() as u64 * 4).await?;
                gpu.queue()
                    .write_buffer(&buf, 0, bytemuck::cast_slice(data));
                bytes += buf.size();
                consts.insert(*v, buf);
            }
        }
        let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let step = gpu.create_buffer("step", PARAMS_BYTES, uniform).await?;
        let dummy = gpu.storage_buffer("unused binding", 16).await?;
        let buffers = Buffers {
            plan: &plan,
            state,
            slots,
            inputs,
            consts,
            step,
            dummy,
        };

        // Every dispatch's parameters, in one uniform arena.
        let stride = u64::from(gpu.limits().min_uniform_buffer_offset_alignment).max(PARAMS_BYTES);
        let arena_bytes = stride * plan.dispatches.len().max(1) as u64;
        let arena = gpu.create_buffer("params", arena_bytes, uniform).await?;
        bytes += arena_bytes;
        let mut arena_data = vec![0u8; arena_bytes as usize];
        for (i, d) in plan.dispatches.iter().enumerate() {
            let at = i * stride as usize;
            arena_data[at..at + PARAMS_BYTES as usize].copy_from_slice(d.params.bytes());
        }
        gpu.queue().write_buffer(&arena, 0, &arena_data);

        let mut pipelines = Vec::new();
        let mut bind_groups = Vec::new();
        for (i, d) in plan.dispatches.iter().enumerate() {
            let compiled = crate::kernels::PipelineCache::compiled(gpu, d.kernel).await?;
            if d.kernel.bindings().len() != d.bindings.len() {
                return Err(Error::Invalid(format!(
                    "{}: {} bindings planned, kernel declares {}",
                    d.label,
                    d.bindings.len(),
                    d.kernel.bindings().len()
                )));
            }
            let mut entries = Vec::new();
            for (b, buf) in d.bindings.iter().enumerate() {
                let resource = match buf {
                    Buf::Params => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &arena,
                        offset: i as u64 * stride,
                        size: wgpu::BufferSize::new(PARAMS_BYTES),
                    }),
                    other => buffers.get(other)?.as_entire_binding(),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: b as u32,
                    resource,
                });
            }
            let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
            let bg = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&d.label),
                layout: &compiled.layout,
                entries: &entries,
            });
            if let Some(e) = scope.pop().await {
                return Err(Error::Gpu(format!("binding {}: {e}", d.label)));
            }
            pipelines.push(compiled.pipeline);
            bind_groups.push(bg);
        }

        let mut readbacks = Vec::new();
        for o in &plan.outputs {
            let size = (o.shape.iter().product::<usize>() as u64 * 4).max(4);
            let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            let staging = gpu
                .create_buffer(&format!("readback {}", o.name), size, usage)
                .await?;
            bytes += size;
            readbacks.push(Readback {
                spec: o.clone(),
                source: buffers.get(&o.buf)?.clone(),
                staging,
            });
        }
        let Buffers { inputs, step, .. } = buffers;
        Ok(Program {
            gpu: gpu.clone(),
            plan,
            pipelines,
            bind_groups,
            inputs,
            step,
            readbacks,
            bytes,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// GPU bytes this program allocated, beyond the weights and states it uses.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Check and write the inputs and the step parameters for one run.
    fn prepare(&self, step: &Step, feeds: &[(&str, Feed)]) -> Result<()> {
        let pos = step.pos;
        for l in &self.plan.limits {
            if pos + l.rows > l.capacity {
                return Err(Error::Limit(format!(
                    "{} tokens at position {pos} run past {}, which holds {} positions (the \
                     context length)",
                    l.rows, l.what, l.capacity
                )));
            }
        }
        step.sampling.validate()?;
        for spec in &self.plan.inputs {
            let feed = feeds
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, f)| *f)
                .ok_or_else(|| Error::Invalid(format!("input '{}' was not given", spec.name)))?;
            let bytes: &[u8] = match (feed, spec.ids) {
                (Feed::Ids(ids), true) if ids.len() == spec.len => {
                    if let Some(vocab) = spec.vocab {
                        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                            return Err(Error::Invalid(format!(
                                "token id {bad} is outside the vocabulary of {vocab}"
                            )));
                        }
                    }
                    bytemuck::cast_slice(ids)
                }
                (Feed::F32(x), false) if x.len() == spec.len => bytemuck::cast_slice(x),
                _ => {
                    let kind = if spec.ids { "token ids" } else { "f32 values" };
                    return Err(Error::Invalid(format!(
                        "input '{}' needs {} {kind}",
                        spec.name, spec.len
                    )));
                }
            };
            self.gpu
                .queue()
                .write_buffer(&self.inputs[&spec.name], 0, bytes);
        }
        self.gpu
            .queue()
            .write_buffer(&self.step, 0, bytemuck::cast_slice(&step.words()?));
        Ok(())
    }

    /// Write the inputs, record every pass (and, with `readback`, the copies of the outputs
    /// to their staging buffers) into one command buffer, and submit it.
    async fn record(&self, step: &Step, feeds: &[(&str, Feed<'_>)], readback: bool) -> Result<()> {
        self.prepare(step, feeds)?;
        let device = self.gpu.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = device.create_command_encoder(&Default::default());
        for pass in &self.plan.passes {
            let mut cp = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&pass.label),
                timestamp_writes: None,
            });
            for i in pass.dispatches.clone() {
                let [x, y, z] = self.plan.dispatches[i].grid;
                cp.set_pipeline(&self.pipelines[i]);
                cp.set_bind_group(0, &self.bind_groups[i], &[]);
                cp.dispatch_workgroups(x, y, z);
            }
        }
        if readback {
            for r in &self.readbacks {
                enc.copy_buffer_to_buffer(&r.source, 0, &r.staging, 0, r.staging.size());
            }
        }
        self.gpu.queue().submit([enc.finish()]);
        match scope.pop().await {
            Some(e) => Err(Error::Gpu(format!("recording the plan failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Run one step without reading anything back; resolves once submitted.
    pub async fn submit(&self, pos: usize, feeds: &[(&str, Feed<'_>)]) -> Result<()> {
        self.record(&Step::at(pos), feeds, false).await
    }

    /// Run one step at `pos` with greedy sampling and read every output back.
    pub async fn run(&self, pos: usize, feeds: &[(&str, Feed<'_>)]) -> Result<Outputs> {
        self.run_step(&Step::at(pos), feeds).await
    }

    /// Run one step and read every output back: one submission, one readback per output.
    pub async fn run_step(&self, step: &Step, feeds: &[(&str, Feed<'_>)]) -> Result<Outputs> {
        self.record(step, feeds, true).await?;
        let mut out = Outputs::default();
        for r in &self.readbacks {
            let n = r.spec.shape.iter().product::<usize>();
            let bytes = self.gpu.map_read(&r.staging, n as u64 * 4).await?;
            if r.spec.ids {
                out.ids
                    .insert(r.spec.name.clone(), bytemuck::pod_collect_to_vec(&bytes));
            } else {
                out.values
                    .insert(r.spec.name.clone(), bytemuck::pod_collect_to_vec(&bytes));
            }
        }
        Ok(out)
    }
}
