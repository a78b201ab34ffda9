//! A plan made ready to run: everything allocated and bound once, each step one submission.
//!
//! A step is written (inputs, the sequence table, sampling parameters), recorded with each
//! dispatch's grid sized to the rows the step really has, and submitted; outputs are copied
//! into one of two staging sets, so a caller may submit step n + 1 before reading step n.

use super::profile::{Profile, Timestamps};
use super::{Pacer, State};
use crate::error::{Error, Result};
use crate::gpu::Buffer;
use crate::gpu::Gpu;
use crate::graph::{Buf, Leaf, NodeKind, Rows, SeqParams, Step, Value, mask_padding};
use crate::kernels::PipelineCache;
use crate::sample::SamplingParams;
use crate::schedule::{OutputSpec, Plan};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Host data for one input of a step.
#[derive(Copy, Clone, Debug)]
pub enum Feed<'a> {
    /// Token ids, for an ids input.
    Ids(&'a [u32]),
    /// f32 values, for an activation input.
    F32(&'a [f32]),
}

/// The outputs of a step: activations (f32) and sampled tokens (u32), by name.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// f32 outputs, by name.
    pub values: HashMap<String, Vec<f32>>,
    /// Sampled-token outputs, by name.
    pub ids: HashMap<String, Vec<u32>>,
}

impl Outputs {
    /// The f32 output `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.values.get(name).map(Vec::as_slice)
    }
    /// The token-id output `name`, if there is one.
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

/// A submitted step whose outputs can be read with [`Program::read`].
#[derive(Debug)]
#[must_use = "a submitted step's outputs are read with Program::read"]
pub struct Ticket {
    set: usize,
    serial: u64,
    lens: Vec<usize>,
    /// The dispatches recorded with timestamps, when the program profiles.
    profiled: Vec<usize>,
}

struct Readback {
    spec: OutputSpec,
    source: Buffer,
    /// Two staging buffers: step n copies into set n % 2.
    staging: [Buffer; 2],
}

/// A [`Plan`] on one adapter: its pipelines, bind groups, inputs and readback buffers, made
/// once and run step after step.
pub struct Program {
    gpu: Gpu,
    plan: Plan,
    pipelines: Vec<wgpu::ComputePipeline>,
    bind_groups: Vec<wgpu::BindGroup>,
    inputs: HashMap<String, Buffer>,
    seqs: Buffer,
    sampling: Buffer,
    readbacks: Vec<Readback>,
    /// The buffer of each of the plan's exchanges, and a gather's destination.
    exchanges: Vec<(Buffer, Option<Buffer>)>,
    /// The serial of the next step, and which step each staging set holds.
    serials: Mutex<(u64, [u64; 2])>,
    /// Bytes this program allocated (activations, inputs, constants, params, staging).
    bytes: u64,
    /// Per-dispatch timestamps, when profiling ([`Program::profile_into`]).
    timestamps: Option<Timestamps>,
}

/// Every buffer a plan binds, by [`Buf`].
struct Buffers<'a> {
    plan: &'a Plan,
    state: Option<&'a State>,
    slots: Vec<Buffer>,
    inputs: HashMap<String, Buffer>,
    consts: HashMap<Value, Buffer>,
    seqs: Buffer,
    sampling: Buffer,
    dummy: Buffer,
}

impl Buffers<'_> {
    fn get(&self, buf: &Buf) -> Result<&Buffer> {
        let missing =
            |what: &str| Error::Invalid(format!("the plan binds {what} it does not have"));
        Ok(match buf {
            Buf::Params => return Err(Error::Invalid("params are bound per dispatch".into())),
            Buf::Seqs => &self.seqs,
            Buf::Sampling => &self.sampling,
            Buf::Slot(s) => self.slots.get(*s).ok_or_else(|| missing("an activation"))?,
            Buf::Weight { value, part } => match &self.plan.nodes[value.0].kind {
                NodeKind::Leaf(Leaf::Weight { tensor }) => {
                    &tensor
                        .parts()
                        .get(*part)
                        .ok_or_else(|| missing("a weight part"))?
                        .buffer
                }
                _ => return Err(missing("a weight")),
            },
            Buf::Const(v) => self.consts.get(v).ok_or_else(|| missing("a constant"))?,
            Buf::Input(name) => self.inputs.get(name).ok_or_else(|| missing("an input"))?,
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
            let size = spec.numel() as u64 * 4;
            let buf = gpu
                .storage_buffer(&format!("input {}", spec.name), size)
                .await?;
            inputs.insert(spec.name.clone(), buf);
            bytes += size;
        }
        let mut consts = HashMap::new();
        for v in &plan.consts {
            if let NodeKind::Leaf(Leaf::Const { name, data }) = &plan.nodes[v.0].kind {
                let buf = gpu.storage_buffer(name, data.len() as u64 * 4).await?;
                gpu.queue()
                    .write_buffer(&buf, 0, bytemuck::cast_slice(data));
                bytes += buf.size();
                consts.insert(*v, buf);
            }
        }
        let seqs = plan.seqs.max(1) as u64;
        let seq_buf = gpu.storage_buffer("sequences", seqs * 16).await?;
        let sampling = gpu.storage_buffer("sampling", seqs * 32).await?;
        let dummy = gpu.storage_buffer("unused binding", 16).await?;
        bytes += seqs * 48 + 16;
        let buffers = Buffers {
            plan: &plan,
            state,
            slots,
            inputs,
            consts,
            seqs: seq_buf,
            sampling,
            dummy,
        };

        // Every dispatch's parameters, in one uniform arena.
        let largest = plan
            .dispatches
            .iter()
            .map(|d| d.params.len())
            .max()
            .unwrap_or(0);
        let block = (largest as u64).next_multiple_of(16).max(16);
        let align = u64::from(gpu.limits().min_uniform_buffer_offset_alignment);
        let stride = block.next_multiple_of(align.max(1));
        let arena_bytes = stride * plan.dispatches.len().max(1) as u64;
        let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let arena = gpu.create_buffer("params", arena_bytes, uniform).await?;
        bytes += arena_bytes;
        let mut arena_data = vec![0u8; arena_bytes as usize];
        for (i, d) in plan.dispatches.iter().enumerate() {
            let at = i * stride as usize;
            arena_data[at..at + d.params.len()].copy_from_slice(&d.params);
        }
        gpu.queue().write_buffer(&arena, 0, &arena_data);

        let mut pipelines = Vec::new();
        let mut bind_groups = Vec::new();
        for (i, d) in plan.dispatches.iter().enumerate() {
            let compiled = PipelineCache::compiled(gpu, &d.kernel).await?;
            if d.kernel.bindings().len() != d.bindings.len() {
                return Err(Error::Invalid(format!(
                    "{}: {} bindings planned, kernel {} declares {}",
                    d.label,
                    d.bindings.len(),
                    d.kernel.name(),
                    d.kernel.bindings().len()
                )));
            }
            let mut entries = Vec::new();
            for (b, buf) in d.bindings.iter().enumerate() {
                let resource = match buf {
                    Buf::Params => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &arena,
                        offset: i as u64 * stride,
                        size: wgpu::BufferSize::new(
                            (d.params.len() as u64).next_multiple_of(16).max(16),
                        ),
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
            let a = gpu
                .create_buffer(&format!("readback {} a", o.name), size, usage)
                .await?;
            let b = gpu
                .create_buffer(&format!("readback {} b", o.name), size, usage)
                .await?;
            bytes += 2 * size;
            readbacks.push(Readback {
                spec: o.clone(),
                source: buffers.get(&o.buf)?.clone(),
                staging: [a, b],
            });
        }
        let exchanges = plan
            .exchanges
            .iter()
            .map(|x| {
                let into = match &x.gather {
                    Some((b, _)) if x.read => Some(buffers.get(b)?.clone()),
                    _ => None,
                };
                Ok((buffers.get(&x.buf)?.clone(), into))
            })
            .collect::<Result<Vec<_>>>()?;
        let Buffers {
            inputs,
            seqs,
            sampling,
            ..
        } = buffers;
        Ok(Program {
            gpu: gpu.clone(),
            plan,
            pipelines,
            bind_groups,
            inputs,
            seqs,
            sampling,
            readbacks,
            exchanges,
            serials: Mutex::new((0, [u64::MAX; 2])),
            bytes,
            timestamps: None,
        })
    }

    /// Time every dispatch of every later step and add the times to `sink` under `phase`
    /// (see [`Profile`]); `None` stops. Needs the adapter's TIMESTAMP_QUERY.
    pub async fn profile_into(&mut self, sink: Option<(Arc<Profile>, &str)>) -> Result<()> {
        self.timestamps = match sink {
            Some((sink, phase)) => {
                Some(Timestamps::new(&self.gpu, &self.plan.dispatches, sink, phase).await?)
            }
            None => None,
        };
        Ok(())
    }

    /// The plan this program runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// GPU bytes this program allocated, beyond the weights and states it uses.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Sequences per step (S).
    pub fn seqs(&self) -> usize {
        self.plan.seqs
    }

    /// The most tokens one sequence may bring to a step (T).
    pub fn tokens(&self) -> usize {
        self.plan.tokens
    }

    /// Check the step against the plan's bounds and write its inputs, sequences and sampling
    /// parameters.
    fn prepare(&self, step: &Step, feeds: &[(&str, Feed)]) -> Result<()> {
        let plan = &self.plan;
        plan.check_step(step)?;
        for spec in &plan.inputs {
            let feed = feeds
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, f)| *f)
                .ok_or_else(|| Error::Invalid(format!("input '{}' was not given", spec.name)))?;
            let (width, tokens) = (spec.width(), spec.shape[1]);
            let need = step.rows(tokens) * width;
            let bytes: &[u8] = match (feed, spec.ids) {
                (Feed::Ids(ids), true) if ids.len() >= need && ids.len() <= spec.numel() => {
                    plan.check_ids(&spec.name, ids)?;
                    bytemuck::cast_slice(ids)
                }
                (Feed::F32(x), false)
                    if x.len() >= need && x.len() <= spec.numel() && x.len() % width == 0 =>
                {
                    bytemuck::cast_slice(x)
                }
                _ => {
                    let kind = if spec.ids { "token ids" } else { "f32 values" };
                    return Err(Error::Invalid(format!(
                        "input '{}' needs {} {kind} (shape {:?}; at least {need} to cover this \
                         step's tokens), got {}",
                        spec.name,
                        spec.numel(),
                        spec.shape,
                        match feed {
                            Feed::Ids(x) => x.len(),
                            Feed::F32(x) => x.len(),
                        }
                    )));
                }
            };
            self.gpu
                .queue()
                .write_buffer(&self.inputs[&spec.name], 0, bytes);
        }
        let seqs: Vec<SeqParams> = step
            .seqs
            .iter()
            .map(|q| SeqParams {
                pos: q.pos as u32,
                len: q.len as u32,
                slot: q.slot as u32,
                pad: 0,
            })
            .collect();
        let sampling: Vec<SamplingParams> = step
            .seqs
            .iter()
            .map(|q| q.sampling.params(q.rand))
            .collect();
        let queue = self.gpu.queue();
        queue.write_buffer(&self.seqs, 0, bytemuck::cast_slice(&seqs));
        queue.write_buffer(&self.sampling, 0, bytemuck::cast_slice(&sampling));
        Ok(())
    }

    /// Write the step, record every dispatch it needs into one command buffer (with the
    /// copies of the outputs to a staging set), and submit it. Returns at once; read the
    /// outputs with [`Program::read`]. At most two steps may be awaiting their read.
    pub async fn submit(&self, step: &Step, feeds: &[(&str, Feed<'_>)]) -> Result<Ticket> {
        self.submit_paced(step, feeds, None).await
    }

    /// [`Program::submit`], sharing the queue with a UI: the step's passes are cut into
    /// `pacer.parts()` submissions of about equal numbers of dispatches, each after a permit
    /// from `pacer`. Without a pacer, one submission.
    pub async fn submit_paced(
        &self,
        step: &Step,
        feeds: &[(&str, Feed<'_>)],
        pacer: Option<&Pacer>,
    ) -> Result<Ticket> {
        if !self.plan.exchanges.is_empty() {
            return Err(Error::Invalid(
                "this program is one part of a model split tensor-parallel: it runs only \
                 together with the other parts"
                    .into(),
            ));
        }
        let mut ticket = self.begin(step, feeds)?;
        let passes = &self.plan.passes;
        let parts = match pacer {
            Some(p) => super::pace::part_ranges(passes, p.parts()),
            None => vec![0..passes.len()],
        };
        let n = parts.len();
        for (k, range) in parts.into_iter().enumerate() {
            if let Some(p) = pacer {
                p.permit().await;
            }
            self.record(&mut ticket, step, range, k + 1 == n).await?;
        }
        Ok(ticket)
    }

    /// Write the step and reserve a staging set for its outputs: the start of a step whose
    /// passes are then recorded with [`Program::record`].
    pub(crate) fn begin(&self, step: &Step, feeds: &[(&str, Feed<'_>)]) -> Result<Ticket> {
        self.prepare(step, feeds)?;
        let mut s = self.serials.lock().unwrap_or_else(|e| e.into_inner());
        let serial = s.0;
        s.0 += 1;
        let set = (serial % 2) as usize;
        s.1[set] = serial;
        Ok(Ticket {
            set,
            serial,
            lens: step.seqs.iter().map(|q| q.len).collect(),
            profiled: Vec::new(),
        })
    }

    /// Record passes `passes` of a begun step into one command buffer and submit it; the
    /// `last` recording also resolves the timestamps and copies the outputs to the ticket's
    /// staging set.
    pub(crate) async fn record(
        &self,
        ticket: &mut Ticket,
        step: &Step,
        passes: std::ops::Range<usize>,
        last: bool,
    ) -> Result<()> {
        let set = ticket.set;
        let device = self.gpu.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = device.create_command_encoder(&Default::default());
        for pass in &self.plan.passes[passes] {
            let grids: Vec<(usize, [u32; 3])> = pass
                .dispatches
                .clone()
                .filter_map(|i| self.plan.dispatches[i].grid.resolve(step).map(|g| (i, g)))
                .collect();
            if grids.is_empty() {
                continue;
            }
            if let Some(ts) = &self.timestamps {
                // Profiling: a pass of its own per dispatch, its start and end timestamped.
                for (i, grid) in grids {
                    let mut cp = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&self.plan.dispatches[i].label),
                        timestamp_writes: Some(ts.writes(set, i)),
                    });
                    self.dispatch(&mut cp, i, grid);
                    ticket.profiled.push(i);
                }
                continue;
            }
            let mut cp = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&pass.label),
                timestamp_writes: None,
            });
            for (i, grid) in grids {
                self.dispatch(&mut cp, i, grid);
            }
        }
        if last {
            if let Some(ts) = &self.timestamps {
                ts.resolve(&mut enc, set);
            }
            for r in &self.readbacks {
                let staging = &r.staging[set];
                enc.copy_buffer_to_buffer(&r.source, 0, staging, 0, staging.size());
            }
        }
        self.gpu.submit([enc.finish()]);
        match scope.pop().await {
            Some(e) => Err(self.gpu.failure(format!("recording the plan failed: {e}"))),
            None => Ok(()),
        }
    }

    /// The buffer whose partials exchange `k` of the plan sums (or gathers), and a
    /// gather's destination where this part reads it.
    pub(crate) fn exchange_buffer(&self, k: usize) -> Result<(&Buffer, Option<&Buffer>)> {
        self.exchanges
            .get(k)
            .map(|(b, into)| (b, into.as_ref()))
            .ok_or_else(|| Error::Invalid(format!("the plan has no exchange {k}")))
    }

    pub(crate) fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn dispatch(&self, cp: &mut wgpu::ComputePass<'_>, i: usize, [x, y, z]: [u32; 3]) {
        cp.set_pipeline(&self.pipelines[i]);
        cp.set_bind_group(0, &self.bind_groups[i], &[]);
        cp.dispatch_workgroups(x, y, z);
    }

    /// Read back the outputs of a submitted step. Padding rows of token-row outputs read as
    /// zeros.
    pub async fn read(&self, ticket: Ticket) -> Result<Outputs> {
        let holder = self.serials.lock().unwrap_or_else(|e| e.into_inner()).1[ticket.set];
        if holder != ticket.serial {
            return Err(Error::Invalid(
                "a later step overwrote this step's outputs: read each step before submitting \
                 two more"
                    .into(),
            ));
        }
        if let (Some(ts), false) = (&self.timestamps, ticket.profiled.is_empty()) {
            ts.read(&self.gpu, ticket.set, &ticket.profiled).await?;
        }
        let mut out = Outputs::default();
        for r in &self.readbacks {
            let n = r.spec.shape.iter().product::<usize>();
            let bytes = self
                .gpu
                .map_read(&r.staging[ticket.set], n as u64 * 4)
                .await?;
            if r.spec.ids {
                out.ids
                    .insert(r.spec.name.clone(), bytemuck::pod_collect_to_vec(&bytes));
            } else {
                let mut values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
                if let Rows::Ragged { tokens } = r.spec.rows {
                    mask_padding(&mut values, &r.spec.shape, tokens, &ticket.lens);
                }
                out.values.insert(r.spec.name.clone(), values);
            }
        }
        Ok(out)
    }

    /// Run one step and read its outputs back: one submission, one readback per output.
    pub async fn run(&self, step: &Step, feeds: &[(&str, Feed<'_>)]) -> Result<Outputs> {
        let ticket = self.submit(step, feeds).await?;
        self.read(ticket).await
    }

    /// Run one step of a one-sequence program at `pos`, every row a token.
    pub async fn run_at(&self, pos: usize, feeds: &[(&str, Feed<'_>)]) -> Result<Outputs> {
        self.run(&Step::single(pos, self.plan.tokens), feeds).await
    }
}
