//! The executor: instantiates a [`Plan`] on a device once (buffers, pipelines, bind groups,
//! the uniform arena), then records each forward step into one command buffer with one
//! submission. Nothing is allocated or compiled per step.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Op, Value};
use crate::kernels::{PARAMS_BYTES, Slot};
use crate::schedule::{Buf, Plan};
use std::collections::HashMap;

/// Persistent buffers that outlive a run, such as KV caches: (capacity, width) f32 each.
/// Several programs (prefill and decode) can share one `State`.
pub struct State {
    buffers: HashMap<String, (wgpu::Buffer, [usize; 2])>,
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
                        let bytes = (shape[0] * shape[1] * 4) as u64;
                        if bytes > gpu.max_binding() {
                            return Err(Error::Limit(format!(
                                "state '{name}' {shape:?} needs {bytes} bytes, more than one \
                                 binding holds on {} ({}); use a shorter context",
                                gpu.describe(),
                                gpu.max_binding()
                            )));
                        }
                        let buf = gpu.storage_buffer(name, bytes).await?;
                        buffers.insert(name.clone(), (buf, *shape));
                    }
                }
            }
        }
        Ok(State { buffers })
    }

    /// Read a state back (for tests and debugging).
    pub async fn read(&self, gpu: &Gpu, name: &str) -> Result<Vec<f32>> {
        let (buf, [c, w]) = self
            .buffers
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("no state named '{name}'")))?;
        gpu.read_f32(buf, c * w).await
    }

    /// Bytes held by all states.
    pub fn bytes(&self) -> u64 {
        self.buffers
            .values()
            .map(|(_, [c, w])| (c * w * 4) as u64)
            .sum()
    }
}

/// Host data for one input of a run.
#[derive(Copy, Clone, Debug)]
pub enum Feed<'a> {
    Ids(&'a [u32]),
    F32(&'a [f32]),
}

/// A plan made ready to run on one device.
pub struct Program {
    gpu: Gpu,
    plan: Plan,
    pipelines: Vec<wgpu::ComputePipeline>,
    bind_groups: Vec<wgpu::BindGroup>,
    inputs: HashMap<String, wgpu::Buffer>,
    step: wgpu::Buffer,
    slots: Vec<wgpu::Buffer>,
    staging: Vec<wgpu::Buffer>,
}

impl Program {
    /// Allocate the plan's buffers, compile its pipelines and build its bind groups.
    /// `state` supplies the persistent buffers the plan names (see [`State::new`]).
    pub async fn new(gpu: &Gpu, plan: Plan, state: Option<&State>) -> Result<Program> {
        let mut slots = Vec::new();
        for (i, &bytes) in plan.slots.iter().enumerate() {
            slots.push(
                gpu.storage_buffer(&format!("activation {i}"), bytes)
                    .await?,
            );
        }
        let mut inputs = HashMap::new();
        for spec in &plan.inputs {
            let buf = gpu
                .storage_buffer(&format!("input {}", spec.name), spec.len as u64 * 4)
                .await?;
            inputs.insert(spec.name.clone(), buf);
        }
        let mut consts: HashMap<Value, wgpu::Buffer> = HashMap::new();
        for v in &plan.consts {
            if let Op::Const { name, data } = &plan.nodes[v.0].op {
                let buf = gpu.storage_buffer(name, data.len() as u64 * 4).await?;
                gpu.queue()
                    .write_buffer(&buf, 0, bytemuck::cast_slice(data));
                consts.insert(*v, buf);
            }
        }
        let mut staging = Vec::new();
        for o in &plan.outputs {
            let bytes = (plan.slots[o.slot]).next_multiple_of(4);
            let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            staging.push(
                gpu.create_buffer(&format!("readback {}", o.name), bytes, usage)
                    .await?,
            );
        }
        let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let step = gpu.create_buffer("step", 16, uniform).await?;
        let dummy = gpu.storage_buffer("unused binding", 16).await?;
        let stride = u64::from(gpu.limits().min_uniform_buffer_offset_alignment).max(PARAMS_BYTES);
        let arena_bytes = stride * plan.dispatches.len().max(1) as u64;
        let arena = gpu.create_buffer("params", arena_bytes, uniform).await?;
        let mut arena_data = vec![0u8; arena_bytes as usize];
        for (i, d) in plan.dispatches.iter().enumerate() {
            let at = i * stride as usize;
            arena_data[at..at + PARAMS_BYTES as usize].copy_from_slice(d.params.bytes());
        }
        gpu.queue().write_buffer(&arena, 0, &arena_data);

        let mut pipelines = Vec::new();
        let mut bind_groups = Vec::new();
        for (i, d) in plan.dispatches.iter().enumerate() {
            let compiled = gpu.pipelines().get(gpu, d.kernel).await?;
            let slots_kinds = d.kernel.bindings();
            if slots_kinds.len() != d.bindings.len() {
                return Err(Error::Invalid(format!(
                    "{}: {} bindings planned, kernel declares {}",
                    d.label,
                    d.bindings.len(),
                    slots_kinds.len()
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
                    Buf::Step => step.as_entire_binding(),
                    Buf::Slot(s) => slots[*s].as_entire_binding(),
                    Buf::Weight { value, part } => match &plan.nodes[value.0].op {
                        Op::Weight { tensor, .. } => {
                            tensor.parts()[*part].buffer.as_entire_binding()
                        }
                        _ => {
                            return Err(Error::Invalid(format!(
                                "{}: weight binding is not a weight",
                                d.label
                            )));
                        }
                    },
                    Buf::Const(v) => consts[v].as_entire_binding(),
                    Buf::Input(name) => inputs[name].as_entire_binding(),
                    Buf::State(name) => {
                        let st = state.ok_or_else(|| {
                            Error::Invalid(format!(
                                "the plan uses state '{name}' but no State was given"
                            ))
                        })?;
                        let (buf, _) = st.buffers.get(name).ok_or_else(|| {
                            Error::Invalid(format!("the State has no buffer named '{name}'"))
                        })?;
                        buf.as_entire_binding()
                    }
                    Buf::Dummy => dummy.as_entire_binding(),
                };
                debug_assert!(
                    matches!(buf, Buf::Params | Buf::Step) == (slots_kinds[b] == Slot::Uniform)
                );
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
        Ok(Program {
            gpu: gpu.clone(),
            plan,
            pipelines,
            bind_groups,
            inputs,
            step,
            slots,
            staging,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Check and write the inputs and the position for one run.
    fn prepare(&self, pos: usize, feeds: &[(&str, Feed)]) -> Result<()> {
        for l in &self.plan.limits {
            if pos + l.rows > l.capacity {
                return Err(Error::Limit(format!(
                    "{} tokens at position {pos} run past {}, which holds {} positions (the \
                     context length)",
                    l.rows, l.what, l.capacity
                )));
            }
        }
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
                    return Err(Error::Invalid(format!(
                        "input '{}' needs {} {}",
                        spec.name,
                        spec.len,
                        if spec.ids { "token ids" } else { "f32 values" }
                    )));
                }
            };
            self.gpu
                .queue()
                .write_buffer(&self.inputs[&spec.name], 0, bytes);
        }
        let pos = u32::try_from(pos).map_err(|_| Error::Invalid("position beyond u32".into()))?;
        self.gpu
            .queue()
            .write_buffer(&self.step, 0, bytemuck::cast_slice(&[pos, 0, 0, 0]));
        Ok(())
    }

    /// Write the inputs, record every pass (and, with `readback`, the copies of the outputs
    /// to their staging buffers) into one command buffer, and submit it.
    async fn step(&self, pos: usize, feeds: &[(&str, Feed<'_>)], readback: bool) -> Result<()> {
        self.prepare(pos, feeds)?;
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
            for (o, staging) in self.plan.outputs.iter().zip(&self.staging) {
                enc.copy_buffer_to_buffer(&self.slots[o.slot], 0, staging, 0, staging.size());
            }
        }
        self.gpu.queue().submit([enc.finish()]);
        match scope.pop().await {
            Some(e) => Err(Error::Gpu(format!("recording the plan failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Run one step at position `pos` without reading anything back; resolves once submitted.
    pub async fn submit(&self, pos: usize, feeds: &[(&str, Feed<'_>)]) -> Result<()> {
        self.step(pos, feeds, false).await
    }

    /// Run one step at position `pos` and read every output back: one submission.
    pub async fn run(
        &self,
        pos: usize,
        feeds: &[(&str, Feed<'_>)],
    ) -> Result<HashMap<String, Vec<f32>>> {
        self.step(pos, feeds, true).await?;
        let mut out = HashMap::new();
        for (o, staging) in self.plan.outputs.iter().zip(&self.staging) {
            let n = o.shape.iter().product::<usize>();
            let bytes = self.gpu.map_read(staging, n as u64 * 4).await?;
            out.insert(o.name.clone(), bytemuck::pod_collect_to_vec(&bytes));
        }
        Ok(out)
    }
}
