//! The scheduler and executor end to end: a small multi-layer Llama-style transformer with
//! random weights, planned (ordered, fused, buffers shared) and run as one submission per step
//! on every adapter, against the CPU reference evaluating the same graph unfused. Prefill
//! writes the KV cache; decode steps read it.

mod common;

use common::*;
use kiln::graph::Layout;
use kiln::ops::attention::{Heads, Mask};
use kiln::ops::rope::{rope_inv_freq, rope_table};
use kiln::reference::graph::Host;
use kiln::{Act, DType, Feed, Gpu, Graph, Plan, Program, Seq, State, Step, Target, Value};

// Glossary: T tokens in the step, D model width, H query heads, KV key/value heads,
// Dh head dim, F feed-forward width, V vocab, L layers, C cache capacity.
const V: usize = 61;
const D: usize = 48;
const H: usize = 6;
const KV: usize = 2;
const DH: usize = 8;
const F: usize = 100;
const L: usize = 3;
const C: usize = 40;
const EPS: f32 = 1e-5;

struct Weights {
    host: Host,
    tensors: Vec<kiln::Tensor>,
}

impl Weights {
    fn new(gpu: &Gpu) -> Weights {
        let mut rng = Rng::new(2024);
        let mut host = Host::default();
        let mut tensors = Vec::new();
        let mut add = |name: String, shape: &[usize], dtype: DType, scale: f32, offset: f32| {
            let n = shape.iter().product();
            let values: Vec<f32> = rng.uniform(n, scale).iter().map(|v| v + offset).collect();
            let values = rounded(&values, dtype);
            let t = pollster::block_on(kiln::load::upload_f32(gpu, &name, shape, dtype, &values))
                .expect("upload");
            host.weights.insert(name, values);
            tensors.push(t);
        };
        add("embed".into(), &[V, D], DType::F32, 1.0, 0.0);
        for l in 0..L {
            let p = |n: &str| format!("layers.{l}.{n}");
            add(p("attn_norm"), &[D], DType::F32, 0.2, 1.0);
            add(p("q"), &[H * DH, D], DType::F16, 0.3, 0.0);
            add(p("k"), &[KV * DH, D], DType::F16, 0.3, 0.0);
            add(p("v"), &[KV * DH, D], DType::F16, 0.3, 0.0);
            add(p("o"), &[D, H * DH], DType::F16, 0.3, 0.0);
            add(p("mlp_norm"), &[D], DType::BF16, 0.2, 1.0);
            add(p("gate"), &[F, D], DType::BF16, 0.3, 0.0);
            add(p("up"), &[F, D], DType::BF16, 0.3, 0.0);
            add(p("down"), &[D, F], DType::BF16, 0.2, 0.0);
        }
        add("norm".into(), &[D], DType::F32, 0.2, 1.0);
        add("lm_head".into(), &[V, D], DType::F32, 0.5, 0.0);
        for l in 0..L {
            host.states.insert(format!("k.{l}"), vec![0.0; C * KV * DH]);
            host.states.insert(format!("v.{l}"), vec![0.0; C * KV * DH]);
        }
        Weights { host, tensors }
    }

    fn tensor(&self, name: &str) -> &kiln::Tensor {
        self.tensors
            .iter()
            .find(|t| t.name() == name)
            .expect("weight")
    }

    fn get(&self, g: &Graph, name: &str) -> Value {
        g.weight(self.tensor(name))
    }

    /// `name` as the first half of `axis` of a tensor twice as long there: one part's cut
    /// of a model split tensor-parallel in two.
    fn half(&self, g: &Graph, name: &str, axis: usize) -> Value {
        let t = self.tensor(name).clone();
        let mut whole = t.shape().to_vec();
        whole[axis] *= 2;
        let n = t.shape()[axis];
        g.weight(&t.sliced(axis, 0..n, &whole).expect("a slice"))
    }
}

/// One forward step over T tokens, written like the equations.
fn forward(w: &Weights, t: usize) -> Graph {
    let g = Graph::new();
    let rope = g.constant(
        "rope",
        &[C, DH],
        rope_table(&rope_inv_freq(DH, 10_000.0), C),
    );
    let mut x = g.embedding(w.get(&g, "embed"), g.ids("ids", t)); // (T, D)
    for l in 0..L {
        g.set_scope(format!("layer.{l}"));
        let p = |n: &str| w.get(&g, &format!("layers.{l}.{n}"));
        // Attention: x = x + Wo · attn(rope(Wq h), rope(Wk h), Wv h), h = rmsnorm(x)
        let h = g.rms_norm(x, p("attn_norm"), EPS);
        let q = g.rope(g.matmul(h, p("q")), rope, H, DH); // (T, H*Dh)
        let k = g.rope(g.matmul(h, p("k")), rope, KV, DH); // (T, KV*Dh)
        let v = g.matmul(h, p("v"));
        let kc = g.kv_write(k, g.state(&format!("k.{l}"), &[1, C, KV * DH]));
        let vc = g.kv_write(v, g.state(&format!("v.{l}"), &[1, C, KV * DH]));
        let heads = Heads {
            heads: H,
            kv_heads: KV,
            head_dim: DH,
        };
        let a = g.attention(q, kc, vc, heads, Mask::Causal);
        x = g.add(x, g.matmul(a, p("o")));
        // MLP: x = x + Wdown · (silu(Wgate h) * Wup h), h = rmsnorm(x)
        let h = g.rms_norm(x, p("mlp_norm"), EPS);
        let m = g.glu(g.matmul(h, p("gate")), g.matmul(h, p("up")), Act::Silu);
        x = g.add(x, g.matmul(m, p("down")));
    }
    g.set_scope("head");
    let logits = g.matmul(g.rms_norm(x, w.get(&g, "norm"), EPS), w.get(&g, "lm_head")); // (T, V)
    g.output("logits", logits);
    g
}

#[test]
fn transformer_prefill_and_decode_match_the_cpu_reference() {
    for gpu in gpus() {
        let mut w = Weights::new(gpu);
        let prompt: Vec<u32> = vec![3, 17, 42, 8, 60, 0, 25, 25, 9];
        let (prefill, decode) = (forward(&w, prompt.len()), forward(&w, 1));
        let p1 = Plan::new(&prefill, Target::of(gpu)).expect("plan prefill");
        let p2 = Plan::new(&decode, Target::of(gpu)).expect("plan decode");

        // Per layer: glu into a matmul, and both residual adds into o and down.
        assert_eq!(p1.memory.fused_ops, 3 * L, "{}", p1.memory);
        assert!(
            p1.memory.activation_bytes < p1.memory.unshared_bytes,
            "buffers are shared: {}",
            p1.memory
        );
        assert!(
            p1.memory.activation_bytes >= p1.memory.live_peak_bytes,
            "{}",
            p1.memory
        );
        assert_eq!(
            p1.passes.len(),
            L + 2,
            "a pass per layer scope, plus embed and head"
        );

        let mut host = std::mem::take(&mut w.host);
        pollster::block_on(async {
            let state = State::new(gpu, &[&p1, &p2]).await.expect("state");
            let prefill_prog = Program::new(gpu, p1, Some(&state)).await.expect("program");
            let decode_prog = Program::new(gpu, p2, Some(&state)).await.expect("program");

            let got = prefill_prog
                .run_at(0, &[("ids", Feed::Ids(&prompt))])
                .await
                .expect("prefill");
            host.ids.insert("ids".into(), prompt.clone());
            let want = kiln::reference::graph::evaluate(&prefill, &mut host, &at(0, prompt.len()))
                .expect("reference");
            let what = format!("prefill logits on {}", label(gpu));
            assert_close(&got["logits"], &want["logits"], 1e-3, 1e-3, &what);

            let mut pos = prompt.len();
            for token in [11u32, 59] {
                let got = decode_prog
                    .run_at(pos, &[("ids", Feed::Ids(&[token]))])
                    .await
                    .expect("decode");
                host.ids.insert("ids".into(), vec![token]);
                let want = kiln::reference::graph::evaluate(&decode, &mut host, &at(pos, 1))
                    .expect("reference");
                let what = format!("decode logits at {pos} on {}", label(gpu));
                assert_close(&got["logits"], &want["logits"], 1e-3, 1e-3, &what);
                pos += 1;
            }
        });
    }
}

#[test]
fn bad_runs_and_graphs_get_clear_errors() {
    let Some(gpu) = gpus().first() else { return };
    let w = Weights::new(gpu);
    let g = forward(&w, 4);
    let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
    pollster::block_on(async {
        let state = State::new(gpu, &[&plan]).await.expect("state");
        let prog = Program::new(gpu, plan, Some(&state))
            .await
            .expect("program");
        // A step past the context.
        let e = prog
            .run_at(C - 2, &[("ids", Feed::Ids(&[1, 2, 3, 4]))])
            .await
            .err()
            .expect("overflow")
            .to_string();
        assert!(
            e.contains("context length") && e.contains(&C.to_string()),
            "{e}"
        );
        // A token outside the vocabulary.
        let e = prog
            .run_at(0, &[("ids", Feed::Ids(&[1, 2, 3, V as u32]))])
            .await
            .err()
            .expect("vocab")
            .to_string();
        assert!(
            e.contains(&format!("token id {V}")) && e.contains("vocabulary"),
            "{e}"
        );
        // Wrong length, and a missing input.
        let e = prog
            .run_at(0, &[("ids", Feed::Ids(&[1]))])
            .await
            .err()
            .expect("len")
            .to_string();
        assert!(e.contains("needs 4 token ids"), "{e}");
        // A step of the wrong batch size, and a sequence longer than the program's rows.
        let two = Step {
            seqs: vec![Seq::new(0, 4), Seq::new(0, 4)],
        };
        let e = prog
            .run(&two, &[("ids", Feed::Ids(&[1, 2, 3, 4]))])
            .await
            .err()
            .expect("seqs")
            .to_string();
        assert!(e.contains("2 sequences") && e.contains("runs 1"), "{e}");
        let e = prog
            .run(&at(0, 5), &[("ids", Feed::Ids(&[1, 2, 3, 4]))])
            .await
            .err()
            .expect("len")
            .to_string();
        assert!(e.contains("5 tokens") && e.contains("at most 4"), "{e}");
        // A position so large that pos + len overflows.
        let ids = [1, 2, 3, 4];
        let e = prog
            .run(&at(usize::MAX - 1, 4), &[("ids", Feed::Ids(&ids))])
            .await;
        let e = e.err().expect("overflow").to_string();
        assert!(e.contains("run past"), "{e}");
        let e = prog
            .run_at(0, &[])
            .await
            .err()
            .expect("missing")
            .to_string();
        assert!(e.contains("'ids' was not given"), "{e}");
    });

    // Shape errors surface when the graph is planned.
    let g = Graph::new();
    let x = g.input("x", 3, 5);
    let bad = g.matmul(x, w.get(&g, "embed")); // embed is (V, D), x has 5 columns
    g.output("y", bad);
    let e = Plan::new(&g, Target::of(gpu))
        .err()
        .expect("shape")
        .to_string();
    assert!(e.contains("matmul") && e.contains("(1, 3, 5)"), "{e}");

    // Outputs must be computed values.
    let g = Graph::new();
    g.output("w", w.get(&g, "norm"));
    assert!(Plan::new(&g, Target::of(gpu)).is_err());
}

#[test]
fn the_scheduler_drops_dead_ops_and_fuses_only_single_use_producers() {
    let Some(gpu) = gpus().first() else { return };
    let w = Weights::new(gpu);
    let g = Graph::new();
    let x = g.input("x", 5, D);
    let y = g.matmul(x, w.get(&g, "layers.0.q"));
    let _dead = g.softmax(g.act(y, Act::Relu)); // nothing reads it
    let shared = g.matmul(x, w.get(&g, "layers.0.gate")); // read twice: must stay materialised
    g.output("a", g.act(shared, Act::GeluErf));
    g.output("b", g.add(shared, shared));
    let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
    assert_eq!(
        plan.dispatches.len(),
        3,
        "one matmul and two elementwise ops: {:?}",
        plan.dispatches.iter().map(|d| &d.label).collect::<Vec<_>>()
    );
    assert_eq!(plan.memory.fused_ops, 0);

    let xs = Rng::new(1).uniform(5 * D, 1.0);
    let got = run_gpu(gpu, &g, &[("x", Feed::F32(&xs))], &at(0, 5));
    let mut host = Host::default();
    host.weights = w.host.weights.clone();
    host.inputs.insert("x".into(), xs);
    let want = run_cpu(&g, &mut host, &at(0, 5));
    assert_close(&got["a"], &want["a"], 1e-5, 1e-4, "gelu of a shared matmul");
    assert_close(&got["b"], &want["b"], 1e-5, 1e-4, "sum of a shared matmul");
}

/// Weights cut for one part of a tensor-parallel model make partial sums, and the graph
/// reduces them where they arise: `q` cut by rows splits the heads (the product is split by
/// columns), `o` cut by columns the same way makes the product a partial sum, reduced by an
/// exchange. The exchange starts a pass of its own, the residual add after it fuses into
/// it, the plan records which buffer the host sums and how much of it, and a part with no
/// outputs of its own still plans (its exchanges are its effect). Its CPU twin is the
/// identity. Layouts that do not fit are refused by name.
#[test]
fn a_partial_sum_is_reduced_by_an_exchange_that_starts_a_pass_and_takes_the_residual_add() {
    let Some(gpu) = gpus().first() else { return };
    let w = Weights::new(gpu);
    let build = |g: &Graph, cut: bool| {
        let x = g.input("x", 5, D);
        let (q, o) = match cut {
            true => (w.half(g, "layers.0.q", 0), w.half(g, "layers.0.o", 1)),
            false => (w.get(g, "layers.0.q"), w.get(g, "layers.0.o")),
        };
        let heads = g.matmul(x, q);
        if cut {
            let want = Layout::Split {
                axis: 2,
                range: 0..H * DH,
                total: 2 * H * DH,
            };
            assert_eq!(g.layout(heads), want);
        }
        let y = g.add(x, g.matmul(heads, o));
        assert_eq!(g.layout(y), Layout::Whole);
        y
    };
    // A partial sum in a graph of the whole model, and an input that does not match the
    // cut, are refused.
    let whole = Graph::new();
    whole.output("y", build(&whole, true));
    let e = Plan::new(&whole, Target::of(gpu))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("partial sum") && e.contains("Graph::part"),
        "{e}"
    );
    let g = Graph::new().part(0, 2);
    let x = g.input("x", 5, H * DH);
    g.output("y", g.matmul(x, w.half(&g, "layers.0.o", 1)));
    let e = Plan::new(&g, Target::of(gpu))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("matmul") && e.contains("split by columns"),
        "{e}"
    );
    let whole = Graph::new();
    whole.output("y", build(&whole, false));
    assert!(
        Plan::new(&whole, Target::of(gpu))
            .expect("plan")
            .exchanges
            .is_empty()
    );

    let g = Graph::new().part(0, 2);
    g.output("y", build(&g, true));
    let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
    assert_eq!(plan.exchanges.len(), 1);
    let x = &plan.exchanges[0];
    assert_eq!(x.width, D);
    assert_eq!(x.rows, kiln::graph::Rows::Ragged { tokens: 5 });
    let first = &plan.dispatches[plan.passes[x.pass].dispatches.start];
    assert!(first.label.contains("all_reduce"), "{}", first.label);
    assert!(x.pass > 0, "the matmul runs in a pass before the exchange");
    assert_eq!(
        plan.memory.fused_ops, 1,
        "the residual add fused into the all-reduce"
    );
    assert!(
        plan.dispatches
            .iter()
            .all(|d| !d.label.contains("elementwise")),
        "{:?}",
        plan.dispatches.iter().map(|d| &d.label).collect::<Vec<_>>()
    );
    let segments = plan.segments();
    assert_eq!(segments, vec![0..x.pass, x.pass..plan.passes.len()]);

    // A part without outputs plans: its exchange is a root.
    let silent = Graph::new().part(0, 2);
    let _ = build(&silent, true);
    let plan = Plan::new(&silent, Target::of(gpu)).expect("a part without outputs");
    assert_eq!(plan.exchanges.len(), 1);
    assert!(plan.outputs.is_empty());

    // The CPU twin: the same values as the whole model's graph.
    let whole = Graph::new();
    whole.output("y", build(&whole, false));
    let xs = Rng::new(5).uniform(5 * D, 1.0);
    let mut host = Host::default();
    host.weights = w.host.weights.clone();
    host.inputs.insert("x".into(), xs);
    let part = run_cpu(&g, &mut host, &at(0, 5));
    let want = run_cpu(&whole, &mut host, &at(0, 5));
    assert_eq!(part["y"], want["y"]);
}

/// `all_gather` makes a value split by columns whole (the parts' slices side by side); the
/// host writes it only on the parts that read it, and a part that does not still plans it
/// (the others wait for its slice).
#[test]
fn a_gather_makes_a_split_value_whole_and_is_written_only_where_it_is_read() {
    let Some(gpu) = gpus().first() else { return };
    let w = Weights::new(gpu);
    for reads in [true, false] {
        let g = Graph::new().part(1, 2);
        let x = g.input("x", 5, D);
        let heads = g.matmul(x, w.half(&g, "layers.0.q", 0));
        let all = g.all_gather(heads);
        assert_eq!(g.shape(all), [1, 5, 2 * H * DH]);
        assert_eq!(g.layout(all), Layout::Whole);
        if reads {
            g.output("all", all);
        }
        let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
        assert_eq!(plan.exchanges.len(), 1);
        let x = &plan.exchanges[0];
        assert_eq!(
            (x.gather.as_ref().map(|g| g.1), x.read),
            (Some(2 * H * DH), reads)
        );
    }
    // A whole value gathers to itself.
    let g = Graph::new().part(0, 2);
    let x = g.input("x", 5, D);
    assert_eq!(g.all_gather(x), x);
}
