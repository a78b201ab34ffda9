//! The encoder entry point on every adapter: a tiny BERT-like encoder (learned positions,
//! LayerNorm with bias, non-causal attention under padding, a GELU feed-forward, masked mean
//! pooling, L2 normalisation) implemented against the `Encoder` trait, run as one padded
//! batch, against a plain-Rust forward built from the ops' CPU twins; and each input's
//! embedding is the same whether it runs alone or beside longer ones.

mod common;

use common::*;
use kiln::encode::EncoderSession;
use kiln::graph::{Graph, Value};
use kiln::models::Encoder;
use kiln::ops::attention::{Heads, attend};
use kiln::ops::elementwise::tail;
use kiln::ops::matmul::matmul;
use kiln::ops::norm::{l2_normalize, layer_norm};
use kiln::ops::pool::mean_pool;
use kiln::{Act, DType, Gpu, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

const V: usize = 50;
const D: usize = 24;
const F: usize = 40;
const P: usize = 16;
const H: Heads = Heads {
    heads: 4,
    kv_heads: 4,
    head_dim: 6,
};
const EPS: f32 = 1e-12;

struct TinyBert {
    w: HashMap<String, Tensor>,
}

/// (name, shape, scale, offset) of every weight.
fn shapes() -> Vec<(&'static str, Vec<usize>, f32, f32)> {
    let mut v = vec![
        ("word", vec![V, D], 1.0, 0.0),
        ("pos", vec![P, D], 0.5, 0.0),
    ];
    for n in ["ln0", "ln1", "ln2"] {
        v.push((n, vec![D], 0.2, 1.0));
    }
    for n in [
        "ln0.b", "ln1.b", "ln2.b", "q.b", "k.b", "v.b", "o.b", "up.b", "down.b",
    ] {
        v.push((n, vec![if n == "up.b" { F } else { D }], 0.2, 0.0));
    }
    for n in ["q", "k", "v", "o"] {
        v.push((n, vec![D, D], 0.4, 0.0));
    }
    v.push(("up", vec![F, D], 0.4, 0.0));
    v.push(("down", vec![D, F], 0.3, 0.0));
    v
}

impl Encoder for TinyBert {
    fn max_positions(&self) -> usize {
        P
    }
    fn width(&self) -> usize {
        D
    }
    /// x = LN(word[ids] + pos[t]); x = LN(x + attn(x) Wo); x = LN(x + gelu(x Wup) Wdown);
    /// out = l2(mean over tokens).
    fn forward(&self, g: &Graph, ids: Value) -> Value {
        let w = |n: &str| g.weight(&self.w[n]);
        let b = |n: &str| Some(w(&format!("{n}.b")));
        let x = g.add(
            g.embedding(w("word"), ids),
            g.position_embedding(w("pos"), ids),
        );
        let x = g.layer_norm(x, w("ln0"), b("ln0"), 1e-5);
        let (q, k, v) = (
            g.linear(x, w("q"), b("q")),
            g.linear(x, w("k"), b("k")),
            g.linear(x, w("v"), b("v")),
        );
        let a = g.attention(q, k, v, H, kiln::ops::attention::Mask::Full);
        let x = g.layer_norm(
            g.add(x, g.linear(a, w("o"), b("o"))),
            w("ln1"),
            b("ln1"),
            1e-5,
        );
        let m = g.linear(g.gelu(g.linear(x, w("up"), b("up"))), w("down"), b("down"));
        let x = g.layer_norm(g.add(x, m), w("ln2"), b("ln2"), 1e-5);
        g.l2_normalize(g.mean_pool(x), EPS)
    }
}

fn load(gpu: &Gpu) -> (TinyBert, HashMap<String, Vec<f32>>) {
    let mut rng = Rng::new(123);
    let (mut w, mut host) = (HashMap::new(), HashMap::new());
    for (name, shape, scale, offset) in shapes() {
        let n = shape.iter().product();
        let values: Vec<f32> = rng.uniform(n, scale).iter().map(|x| x + offset).collect();
        let t = pollster::block_on(kiln::load::upload_f32(
            gpu,
            name,
            &shape,
            DType::F32,
            &values,
        ))
        .expect("upload");
        w.insert(name.to_string(), t);
        host.insert(name.to_string(), values);
    }
    (TinyBert { w }, host)
}

/// The same model in plain Rust over one input, from the ops' CPU twins.
fn reference(w: &HashMap<String, Vec<f32>>, ids: &[u32]) -> Vec<f32> {
    let t = ids.len();
    let lin = |x: &[f32], n: &str, out: usize, k: usize| {
        tail(
            &matmul(x, &w[n], x.len() / k, out, k),
            out,
            Some(&w[&format!("{n}.b")]),
            Act::Identity,
            None,
            None,
        )
    };
    let ln = |x: &[f32], n: &str| layer_norm(x, &w[n], Some(&w[&format!("{n}.b")]), D, 1e-5);
    let add = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f32>>();
    let mut x = Vec::new();
    for (p, &id) in ids.iter().enumerate() {
        let (word, pos) = (&w["word"][id as usize * D..][..D], &w["pos"][p * D..][..D]);
        x.extend(add(word, pos));
    }
    let x = ln(&x, "ln0");
    let (q, k, v) = (lin(&x, "q", D, D), lin(&x, "k", D, D), lin(&x, "v", D, D));
    let scale = 1.0 / (H.head_dim as f32).sqrt();
    let a: Vec<f32> = (0..t)
        .flat_map(|r| attend(&q[r * D..(r + 1) * D], &k, &v, H, 0, scale))
        .collect();
    let x = ln(&add(&x, &lin(&a, "o", D, D)), "ln1");
    let up = lin(&x, "up", F, D);
    let up = tail(&up, F, None, Act::GeluErf, None, None);
    let x = ln(&add(&x, &lin(&up, "down", D, F)), "ln2");
    l2_normalize(&mean_pool(&x, &[t], t, D), D, EPS)
}

#[test]
fn a_padded_batch_encodes_like_the_reference_and_like_inputs_alone() {
    for gpu in gpus() {
        let (model, host) = load(gpu);
        let model: Arc<dyn Encoder> = Arc::new(model);
        let mut session = EncoderSession::new(gpu, model);
        let mut rng = Rng::new(9);
        let inputs: Vec<Vec<u32>> = [5, 2, 11, 1]
            .iter()
            .map(|&n| (0..n).map(|_| rng.below(V as u32)).collect())
            .collect();
        let batch = pollster::block_on(session.encode(&inputs)).expect("encode");
        for (i, x) in inputs.iter().enumerate() {
            let what = format!("input {i} of {} tokens on {}", x.len(), label(gpu));
            assert_eq!(batch[i].len(), D, "{what}");
            // Unit vectors: f32 through LayerNorms and attention against f64.
            assert_close(&batch[i], &reference(&host, x), 2e-5, 1e-4, &what);
            let alone = pollster::block_on(session.encode(std::slice::from_ref(x))).expect("alone");
            assert_close(
                &alone[0],
                &batch[i],
                2e-6,
                1e-5,
                &format!("{what}, alone against batched"),
            );
        }
        let e = pollster::block_on(session.encode(&[vec![1; P + 1]]))
            .err()
            .expect("too long")
            .to_string();
        assert!(
            e.contains(&format!("{} tokens", P + 1)) && e.contains(&format!("1 to {P}")),
            "{e}"
        );
    }
}
