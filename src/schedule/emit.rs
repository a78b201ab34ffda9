//! Turning the ordered, fused ops into dispatches over planned buffers.

use super::memory::{self, Interval, MemoryReport};
use super::{Buf, Dispatch, InputSpec, OutputSpec, Pass, Plan, Target};
use crate::dtype::WeightFormat;
use crate::error::{Error, Result};
use crate::graph::{Node, Op, Tail, Value};
use crate::kernels::*;
use std::collections::HashMap;

struct Emitter<'a> {
    nodes: &'a [Node],
    target: Target,
    slot_of: HashMap<Value, usize>,
    out: Vec<Dispatch>,
}

/// Bytes of an f32 activation of this shape.
fn f32_bytes(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64 * 4
}

pub(super) fn emit(
    nodes: Vec<Node>,
    order: &[usize],
    outputs: &[(String, Value)],
    target: Target,
    fused_ops: usize,
) -> Result<Plan> {
    // Liveness of computed values over positions in `order`.
    let computed = |i: usize| !nodes[i].op.is_leaf() && nodes[i].op.updates().is_none();
    let mut first: HashMap<usize, usize> = HashMap::new();
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (pos, &i) in order.iter().enumerate() {
        if computed(i) {
            first.insert(i, pos);
            last.insert(i, pos);
        }
        for v in nodes[i].op.inputs() {
            if let Some(l) = last.get_mut(&v.0) {
                *l = (*l).max(pos);
            }
        }
    }
    let pinned: Vec<usize> = outputs
        .iter()
        .map(|(_, v)| v.0)
        .filter(|&i| computed(i))
        .collect();
    let values: Vec<usize> = order.iter().copied().filter(|&i| computed(i)).collect();
    let intervals: Vec<Interval> = values
        .iter()
        .map(|&i| Interval {
            bytes: f32_bytes(&nodes[i].shape).max(4),
            first: first[&i],
            last: if pinned.contains(&i) {
                order.len()
            } else {
                last[&i]
            },
            pinned: pinned.contains(&i),
        })
        .collect();
    let (slots_of_interval, slots) = memory::assign(&intervals);
    for &size in &slots {
        if size > target.max_binding {
            return Err(Error::Limit(format!(
                "an activation needs {size} bytes, more than one storage binding holds on this \
                 device ({}); use fewer tokens per step",
                target.max_binding
            )));
        }
    }
    let memory = MemoryReport {
        activation_bytes: slots.iter().sum(),
        unshared_bytes: intervals.iter().map(|iv| iv.bytes).sum(),
        live_peak_bytes: memory::live_peak(&intervals, order.len() + 1),
        buffers: slots.len(),
        values: intervals.len(),
        fused_ops,
    };
    let slot_of: HashMap<Value, usize> = values
        .iter()
        .zip(&slots_of_interval)
        .map(|(&i, &s)| (Value(i), s))
        .collect();

    let mut em = Emitter {
        nodes: &nodes,
        target,
        slot_of,
        out: Vec::new(),
    };
    let mut passes: Vec<Pass> = Vec::new();
    let mut inputs = Vec::new();
    let mut consts = Vec::new();
    let mut states = Vec::new();
    for &i in order {
        let node = &nodes[i];
        let start = em.out.len();
        match &node.op {
            Op::Ids { name } | Op::Input { name } => inputs.push(InputSpec {
                name: name.clone(),
                len: node.shape.iter().product(),
                ids: matches!(node.op, Op::Ids { .. }),
                vocab: None,
            }),
            Op::Const { .. } => consts.push(Value(i)),
            Op::State { name } => states.push((name.clone(), [node.shape[0], node.shape[1]])),
            Op::Weight { .. } => {}
            _ => em.op(Value(i))?,
        }
        let end = em.out.len();
        if end > start {
            match passes.last_mut() {
                Some(p) if p.label == node.scope && p.dispatches.end == start => {
                    p.dispatches.end = end
                }
                _ => passes.push(Pass {
                    label: node.scope.clone(),
                    dispatches: start..end,
                }),
            }
        }
    }
    // Bounds the executor checks before each run.
    let mut limits = Vec::new();
    let bound_ids = |inputs: &mut Vec<InputSpec>, ids: Value, size: usize| {
        if let Op::Ids { name } = &nodes[ids.0].op {
            if let Some(spec) = inputs.iter_mut().find(|s| &s.name == name) {
                spec.vocab = Some(spec.vocab.map_or(size, |v| v.min(size)));
            }
        }
    };
    for &i in order {
        match &nodes[i].op {
            // Token ids index a table or the sampler's flags: they must stay below its size.
            Op::Embedding { table, ids } => bound_ids(&mut inputs, *ids, nodes[table.0].shape[0]),
            Op::Sample {
                logits,
                ids: Some(ids),
                ..
            } => bound_ids(&mut inputs, *ids, nodes[logits.0].shape[1]),
            Op::KvWrite { src, cache } => {
                if let Buf::State(state) = em.buf(*cache) {
                    limits.push(super::PositionLimit {
                        what: format!("KV cache '{state}'"),
                        rows: nodes[src.0].shape[0],
                        capacity: nodes[cache.0].shape[0],
                    });
                }
            }
            Op::Rope { x, table, .. } => limits.push(super::PositionLimit {
                what: "the RoPE table".into(),
                rows: nodes[x.0].shape[0],
                capacity: nodes[table.0].shape[0],
            }),
            _ => {}
        }
    }
    let outputs = outputs
        .iter()
        .map(|(name, v)| OutputSpec {
            name: name.clone(),
            buf: em.buf(*v),
            shape: nodes[v.0].shape.clone(),
            ids: matches!(nodes[v.0].op, Op::Sample { .. }),
        })
        .collect();
    let dispatches = em.out;
    Ok(Plan {
        dispatches,
        passes,
        slots,
        inputs,
        consts,
        states,
        outputs,
        limits,
        memory,
        nodes,
    })
}

impl Emitter<'_> {
    fn node(&self, v: Value) -> &Node {
        &self.nodes[v.0]
    }

    fn label(&self, v: Value) -> String {
        let n = self.node(v);
        let kind = format!("{:?}", n.op);
        let kind = kind.split([' ', '{', '(']).next().unwrap_or("");
        format!("{} {kind} #{}", n.scope, v.0)
    }

    /// Where an operand lives (part 0 for weights).
    fn buf(&self, v: Value) -> Buf {
        match &self.node(v).op {
            Op::Ids { name } | Op::Input { name } => Buf::Input(name.clone()),
            Op::Weight { .. } => Buf::Weight { value: v, part: 0 },
            Op::Const { .. } => Buf::Const(v),
            Op::State { name } => Buf::State(name.clone()),
            Op::KvWrite { cache: s, .. } | Op::Sample { token: s, .. } => self.buf(*s),
            _ => Buf::Slot(self.slot_of[&v]),
        }
    }

    /// The format a weight operand is read with, checking it fits one binding when the
    /// kernel cannot split it.
    fn weight(&self, v: Value, splittable: bool) -> Result<(WeightFormat, usize)> {
        match &self.node(v).op {
            Op::Weight { tensor, name } => {
                let parts = tensor.parts().len();
                if parts > 1 && !splittable {
                    return Err(Error::Limit(format!(
                        "tensor '{name}' is split into {parts} parts but its op reads it whole"
                    )));
                }
                let format = tensor.dtype().weight_format(self.target.has_f16);
                if format == WeightFormat::F16Packed && !self.target.has_f16_unpack {
                    return Err(Error::Gpu(format!(
                        "tensor '{name}' is F16, but this adapter can neither read f16 natively \
                         (SHADER_F16) nor unpack it (unpack2x16float); store it as F32 or BF16"
                    )));
                }
                Ok((format, parts))
            }
            Op::Const { .. } => Ok((WeightFormat::F32, 1)),
            other => Err(Error::Invalid(format!(
                "expected a weight operand, got {:?}",
                std::mem::discriminant(other)
            ))),
        }
    }

    fn tail_bufs(&self, tail: &Tail) -> [Buf; 2] {
        [
            tail.aux.map_or(Buf::Dummy, |(v, _)| self.buf(v)),
            tail.residual.map_or(Buf::Dummy, |v| self.buf(v)),
        ]
    }

    fn epilogue(bias: bool, tail: &Tail) -> Epilogue {
        Epilogue {
            bias,
            act: tail.act,
            aux: tail.aux.map(|(_, a)| a),
            residual: tail.residual.is_some(),
        }
    }

    fn push(
        &mut self,
        v: Value,
        kernel: Kernel,
        bindings: Vec<Buf>,
        params: Params,
        grid: [u32; 3],
    ) {
        let label = self.label(v);
        self.out.push(Dispatch {
            kernel,
            bindings,
            params,
            grid,
            label,
        });
    }

    fn grid1(&self, groups: usize) -> [u32; 3] {
        grid(groups as u32, self.target.max_workgroups)
    }

    fn op(&mut self, v: Value) -> Result<()> {
        let node = self.node(v).clone();
        let shape = &node.shape;
        let out = Buf::Slot(self.slot_of.get(&v).copied().unwrap_or(usize::MAX));
        match &node.op {
            Op::Embedding { table, ids } => {
                let (fmt, _) = self.weight(*table, true)?;
                let Op::Weight { tensor, .. } = &self.node(*table).op else {
                    return Err(Error::Invalid("embedding table must be a weight".into()));
                };
                let (t, d) = (shape[0], shape[1]);
                for (pi, part) in tensor.parts().to_vec().iter().enumerate() {
                    let bindings = vec![
                        Buf::Params,
                        self.buf(*ids),
                        Buf::Weight {
                            value: *table,
                            part: pi,
                        },
                        out.clone(),
                    ];
                    let p = Params::new(&[
                        t as u32,
                        d as u32,
                        part.rows.start as u32,
                        part.rows.len() as u32,
                    ]);
                    let g = self.grid1((t * d).div_ceil(ELEMENTWISE_WG as usize));
                    self.push(v, Kernel::Embedding { table: fmt }, bindings, p, g);
                }
            }
            Op::MatMul { x, w, bias, tail } => {
                let (wf, _) = self.weight(*w, true)?;
                let bf = match bias {
                    Some(b) => self.weight(*b, false)?.0,
                    None => WeightFormat::F32,
                };
                let epi = Self::epilogue(bias.is_some(), tail);
                let Op::Weight { tensor, .. } = &self.node(*w).op else {
                    return Err(Error::Invalid(
                        "matmul weight must be a weight tensor".into(),
                    ));
                };
                let (m, n_total) = (shape[0], shape[1]);
                let k = self.node(*x).shape[1];
                let [aux, res] = self.tail_bufs(tail);
                for (pi, part) in tensor.parts().to_vec().iter().enumerate() {
                    let n = part.rows.len();
                    let bindings = vec![
                        Buf::Params,
                        self.buf(*x),
                        Buf::Weight {
                            value: *w,
                            part: pi,
                        },
                        bias.map_or(Buf::Dummy, |b| self.buf(b)),
                        aux.clone(),
                        res.clone(),
                        out.clone(),
                    ];
                    let p = Params::new(&[
                        m as u32,
                        n as u32,
                        k as u32,
                        part.rows.start as u32,
                        n_total as u32,
                    ]);
                    if m <= self.target.gemv_max_rows {
                        let kernel = Kernel::Gemv {
                            w: wf,
                            bias: bf,
                            epi,
                        };
                        let [x, y, _] = self.grid1(n.div_ceil(GEMV_ROWS as usize));
                        let g = [x, y, m.div_ceil(GEMV_MR as usize) as u32];
                        self.push(v, kernel, bindings, p, g);
                    } else {
                        let kernel = Kernel::Matmul {
                            w: wf,
                            bias: bf,
                            epi,
                        };
                        let g = [
                            n.div_ceil(GEMM_TILE_N as usize) as u32,
                            m.div_ceil(GEMM_TILE_M as usize) as u32,
                            1,
                        ];
                        if g[0] > self.target.max_workgroups || g[1] > self.target.max_workgroups {
                            return Err(Error::Limit(format!(
                                "matmul grid {g:?} exceeds the device's workgroup limit"
                            )));
                        }
                        self.push(v, kernel, bindings, p, g);
                    }
                }
            }
            Op::Elementwise { a, tail } => {
                let [aux, res] = self.tail_bufs(tail);
                let count = shape.iter().product::<usize>();
                let cols = *shape.last().unwrap_or(&1);
                let bindings = vec![Buf::Params, self.buf(*a), Buf::Dummy, aux, res, out];
                let kernel = Kernel::Elementwise {
                    bias: WeightFormat::F32,
                    epi: Self::epilogue(false, tail),
                };
                let g = self.grid1(count.div_ceil(ELEMENTWISE_WG as usize));
                self.push(
                    v,
                    kernel,
                    bindings,
                    Params::new(&[count as u32, cols.max(1) as u32]),
                    g,
                );
            }
            Op::Norm {
                x,
                w,
                b,
                eps,
                layer,
            } => {
                let (wf, _) = self.weight(*w, false)?;
                let bf = match b {
                    Some(b) => self.weight(*b, false)?.0,
                    None => WeightFormat::F32,
                };
                let (rows, d) = (shape[0], shape[1]);
                let kernel = Kernel::Norm {
                    w: wf,
                    b: bf,
                    layer: *layer,
                    bias: b.is_some(),
                };
                let bindings = vec![
                    Buf::Params,
                    self.buf(*x),
                    self.buf(*w),
                    b.map_or(Buf::Dummy, |b| self.buf(b)),
                    out,
                ];
                let p = Params::new(&[rows as u32, d as u32]).with_f32(2, *eps);
                let g = self.grid1(rows);
                self.push(v, kernel, bindings, p, g);
            }
            Op::Softmax { x } => {
                let (rows, d) = (shape[0], shape[1]);
                let g = self.grid1(rows);
                self.push(
                    v,
                    Kernel::Softmax,
                    vec![Buf::Params, self.buf(*x), out],
                    Params::new(&[rows as u32, d as u32]),
                    g,
                );
            }
            Op::Sample {
                logits,
                ids,
                seen,
                token,
            } => {
                let vocab = self.node(*logits).shape[1];
                let n_ids = ids.map_or(0, |i| self.node(i).shape.iter().product::<usize>());
                let bindings = vec![
                    Buf::Params,
                    Buf::Step,
                    self.buf(*logits),
                    ids.map_or(Buf::Dummy, |i| self.buf(i)),
                    self.buf(*seen),
                    self.buf(*token),
                ];
                let p = Params::new(&[vocab as u32, n_ids as u32]);
                self.push(v, Kernel::Sample, bindings, p, [1, 1, 1]);
            }
            Op::Rows { x, start, .. } => {
                let count = shape[0] * shape[1];
                let bindings = vec![Buf::Params, Buf::Step, self.buf(*x), out];
                let p = Params::new(&[count as u32, shape[1] as u32, 0, (start * shape[1]) as u32]);
                let g = self.grid1(count.div_ceil(ELEMENTWISE_WG as usize));
                self.push(v, Kernel::Copy, bindings, p, g);
            }
            Op::Rope {
                x,
                table,
                heads,
                head_dim,
            } => {
                let t = shape[0];
                let bindings = vec![Buf::Params, Buf::Step, self.buf(*table), self.buf(*x), out];
                let p = Params::new(&[t as u32, *heads as u32, *head_dim as u32]);
                let g = self.grid1((t * heads * head_dim / 2).div_ceil(ROPE_WG as usize));
                self.push(v, Kernel::Rope, bindings, p, g);
            }
            Op::KvWrite { src, cache } => {
                let s = &self.node(*src).shape;
                let (t, width) = (s[0], s[1]);
                let capacity = self.node(*cache).shape[0];
                let bindings = vec![Buf::Params, Buf::Step, self.buf(*src), self.buf(*cache)];
                let p = Params::new(&[(t * width) as u32, width as u32, capacity as u32]);
                let g = self.grid1((t * width).div_ceil(ELEMENTWISE_WG as usize));
                self.push(v, Kernel::KvWrite, bindings, p, g);
            }
            Op::Attention {
                q,
                k,
                v: vv,
                heads,
                kv_heads,
                head_dim,
                causal,
                scale,
                window,
            } => {
                let t = shape[0];
                let capacity = self.node(*k).shape[0];
                let bindings = vec![
                    Buf::Params,
                    Buf::Step,
                    self.buf(*q),
                    self.buf(*k),
                    self.buf(*vv),
                    out,
                ];
                let p = Params::new(&[
                    t as u32,
                    *heads as u32,
                    *kv_heads as u32,
                    *head_dim as u32,
                    capacity as u32,
                    u32::from(*causal),
                    0,
                    window.unwrap_or(0) as u32,
                ])
                .with_f32(6, *scale);
                let g = self.grid1(t * heads);
                self.push(v, Kernel::Attention, bindings, p, g);
            }
            Op::Ids { .. }
            | Op::Input { .. }
            | Op::Weight { .. }
            | Op::Const { .. }
            | Op::State { .. } => {}
        }
        Ok(())
    }
}
