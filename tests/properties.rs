//! Property tests, on seeded random cases:
//! - random small graphs (random ops, widths that are not multiples of any tile, chains that
//!   fuse into a matmul's epilogue, outputs taken midway) planned and run on every adapter
//!   equal the CPU evaluator on the same graph;
//! - random byte-level edits of a valid safetensors file either load, with tensors identical
//!   to what the `safetensors` crate reads from the same bytes (uploaded and read back), or
//!   fail with an error naming the file; never a panic.

mod common;

use common::*;
use kiln::load::{Checkpoint, LoadOptions};
use kiln::reference::graph::Host;
use kiln::{Act, DType, Feed, Gpu, Graph, Plan, Target, Tensor, Value};

/// Widths drawn for activations and weights: none a multiple of 4, 8, 16 or 64.
const WIDTHS: [usize; 8] = [3, 5, 17, 30, 33, 47, 65, 71];

/// One random graph on `gpu`: its values (width of each), host twins and what it is made of.
struct Random<'a> {
    gpu: &'a Gpu,
    rng: Rng,
    g: Graph,
    host: Host,
    tensors: Vec<Tensor>,
    pool: Vec<(Value, usize)>,
    recipe: Vec<String>,
}

impl<'a> Random<'a> {
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.rng.below(from.len() as u32) as usize]
    }

    /// A weight of `shape` in a random storage dtype, scaled so that values stay near 1.
    fn weight(&mut self, shape: &[usize], offset: f32) -> Value {
        let dtype = self.pick(&[DType::F32, DType::F16, DType::BF16]);
        let name = format!("w{}", self.tensors.len());
        let fan_in = *shape.last().unwrap_or(&1) as f32;
        let scale = 1.0 / fan_in.sqrt();
        let mut w = weight(self.gpu, &name, shape, dtype, &mut self.rng, scale, None);
        if offset != 0.0 {
            // Norm gains around 1: shift on the host and upload again in the same dtype.
            let values: Vec<f32> = w.values.iter().map(|v| v + offset).collect();
            let values = rounded(&values, dtype);
            let t = pollster::block_on(kiln::load::upload_f32(
                self.gpu, &name, shape, dtype, &values,
            ))
            .expect("upload");
            w = HostWeight { tensor: t, values };
        }
        self.recipe.push(format!("{name}{shape:?} {dtype:?}"));
        self.host.weights.insert(name, w.values);
        let v = self.g.weight(&w.tensor);
        self.tensors.push(w.tensor);
        v
    }

    /// An operand: most often the latest value (so chains form), else any earlier one.
    fn operand(&mut self) -> (Value, usize) {
        let last = self.pool.len() - 1;
        let i = if self.rng.below(10) < 7 {
            last
        } else {
            self.rng.below(self.pool.len() as u32) as usize
        };
        self.pool[i]
    }

    /// A second operand of `width`: an earlier value of that width, or `a` itself.
    fn partner(&mut self, a: Value, width: usize) -> Value {
        let same: Vec<Value> = self
            .pool
            .iter()
            .filter(|(_, w)| *w == width)
            .map(|(v, _)| *v)
            .collect();
        if same.is_empty() { a } else { self.pick(&same) }
    }

    /// Append one random op.
    fn step(&mut self) {
        let (a, d) = self.operand();
        let act = self.pick(&Act::ALL);
        let (y, w, what) = match self.rng.below(10) {
            0..=2 => {
                let n = self.pick(&WIDTHS);
                let w = self.weight(&[n, d], 0.0);
                let bias = (self.rng.below(2) == 0).then(|| self.weight(&[n], 0.0));
                (self.g.linear(a, w, bias), n, format!("linear {d}->{n}"))
            }
            3 => (self.g.act(a, act), d, format!("{act:?}")),
            4 => {
                let b = self.partner(a, d);
                (self.g.add(a, b), d, "add".into())
            }
            5 => {
                let b = self.partner(a, d);
                (self.g.mul(a, b), d, "mul".into())
            }
            6 => {
                let w = self.weight(&[d], 1.0);
                (self.g.rms_norm(a, w, 1e-5), d, "rms_norm".into())
            }
            7 => {
                let w = self.weight(&[d], 1.0);
                let b = (self.rng.below(2) == 0).then(|| self.weight(&[d], 0.0));
                (self.g.layer_norm(a, w, b, 1e-5), d, "layer_norm".into())
            }
            8 => (self.g.softmax(a), d, "softmax".into()),
            _ => {
                let up = self.partner(a, d);
                (self.g.glu(a, up, act), d, format!("glu {act:?}"))
            }
        };
        self.recipe.push(what);
        self.pool.push((y, w));
    }
}

#[test]
fn random_graphs_equal_the_cpu_evaluator() {
    const GRAPHS: u64 = 16;
    let (mut fused, mut planned) = (0, 0);
    for gpu in gpus() {
        let _turn = turn(gpu);
        for seed in 0..GRAPHS {
            let mut r = Random {
                gpu,
                rng: Rng::new(1000 + seed),
                g: Graph::new(),
                host: Host::default(),
                tensors: Vec::new(),
                pool: Vec::new(),
                recipe: Vec::new(),
            };
            let tokens = 1 + r.rng.below(9) as usize;
            let d = r.pick(&WIDTHS);
            let x = r.g.input("x", tokens, d);
            r.pool.push((x, d));
            for _ in 0..3 + r.rng.below(6) {
                r.step();
            }
            let (last, _) = r.pool[r.pool.len() - 1];
            r.g.output("out", last);
            // Sometimes a value midway is an output too: it must stay materialised.
            if r.pool.len() > 2 && r.rng.below(2) == 0 {
                let i = 1 + r.rng.below(r.pool.len() as u32 - 2) as usize;
                r.g.output("mid", r.pool[i].0);
                r.recipe.push(format!("mid = value {i}"));
            }
            // A step of every row, or fewer (padding rows read as zeros on both).
            let len = 1 + r.rng.below(tokens as u32) as usize;
            let xs = r.rng.uniform(tokens * d, 1.0);
            let what = format!(
                "graph {seed} on {}: x ({tokens}, {d}), {len} rows: {}",
                label(gpu),
                r.recipe.join(", ")
            );
            let plan = Plan::new(&r.g, Target::of(gpu)).unwrap_or_else(|e| panic!("{what}: {e}"));
            fused += plan.memory.fused_ops;
            planned += 1;
            let got = run_gpu(gpu, &r.g, &[("x", Feed::F32(&xs))], &at(0, len));
            r.host.inputs.insert("x".into(), xs);
            let want = run_cpu(&r.g, &mut r.host, &at(0, len));
            for (name, _) in r.g.outputs() {
                // f32 sums in another order, through up to eight ops: 2e-4 + 2e-3 * |want|.
                assert_close(
                    &got[&name],
                    &want[&name],
                    2e-4,
                    2e-3,
                    &format!("{what}: {name}"),
                );
            }
        }
    }
    if planned > 0 {
        assert!(fused > 0, "no random chain fused in {planned} graphs");
        eprintln!("{planned} graphs, {fused} ops fused into others");
    }
}

/// A small valid file: tensors of each float dtype kiln reads, a scalar, one empty, and
/// metadata, so that most edits land in the header.
fn valid_file() -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let mut rng = Rng::new(7);
    let f32s: Vec<u8> = bytemuck::cast_slice(&rng.uniform(15, 2.0)).to_vec();
    let f16s: Vec<u8> = DType::F16.from_f32(&rng.uniform(7, 2.0));
    let bf16s: Vec<u8> = DType::BF16.from_f32(&rng.uniform(12, 2.0));
    let scalar: Vec<u8> = 1.5f32.to_le_bytes().to_vec();
    let views = vec![
        ("a.weight", TensorView::new(Dtype::F32, vec![3, 5], &f32s)),
        ("b.bias", TensorView::new(Dtype::F16, vec![7], &f16s)),
        ("c", TensorView::new(Dtype::BF16, vec![2, 2, 3], &bf16s)),
        ("scale", TensorView::new(Dtype::F32, vec![], &scalar)),
        ("none", TensorView::new(Dtype::F32, vec![0, 4], &[])),
    ];
    let views: Vec<(&str, TensorView)> = views
        .into_iter()
        .map(|(n, v)| (n, v.expect("view")))
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).expect("serialize")
}

/// 1 to 4 edits: overwrite a byte or flip a bit (most often), insert or delete a byte, or
/// truncate.
fn edit(bytes: &[u8], rng: &mut Rng) -> (Vec<u8>, Vec<String>) {
    let mut b = bytes.to_vec();
    let mut did = Vec::new();
    for _ in 0..1 + rng.below(4).saturating_sub(rng.below(4)) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len() as u32) as usize;
        match rng.below(12) {
            0..=4 => {
                let v = rng.below(256) as u8;
                did.push(format!("byte {at} = {v}"));
                b[at] = v;
            }
            5..=8 => {
                let bit = rng.below(8);
                did.push(format!("flip bit {bit} of byte {at}"));
                b[at] ^= 1 << bit;
            }
            9 => {
                let v = rng.below(256) as u8;
                did.push(format!("insert {v} at {at}"));
                b.insert(at, v);
            }
            10 => {
                did.push(format!("delete byte {at}"));
                b.remove(at);
            }
            _ => {
                did.push(format!("truncate to {at}"));
                b.truncate(at);
            }
        }
    }
    (b, did)
}

#[test]
fn edited_safetensors_files_load_identically_or_fail_clearly() {
    let Some(gpu) = gpus().first() else { return };
    let _turn = turn(gpu);
    let valid = valid_file();
    let dir = std::env::temp_dir().join(format!("kiln-edits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("edited.safetensors");
    let mut rng = Rng::new(99);
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..400 {
        let (bytes, edits) = edit(&valid, &mut rng);
        std::fs::write(&path, &bytes).expect("write");
        let what = format!("case {case} ({})", edits.join(", "));
        let reference = safetensors::SafeTensors::deserialize(&bytes);
        let opened = Checkpoint::open(&path).and_then(|c| {
            let w = pollster::block_on(c.upload(gpu, LoadOptions::default()))?;
            Ok((c, w))
        });
        let (ckpt, weights) = match opened {
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("edited.safetensors") && text.len() > 30,
                    "{what}: an error that does not name the file: {text}"
                );
                refused += 1;
                continue;
            }
            Ok(x) => x,
        };
        // kiln accepted the bytes: the reference parser does too, and reads the same.
        let reference = reference.unwrap_or_else(|e| {
            panic!("{what}: kiln loaded a file the safetensors crate refuses ({e:?})")
        });
        let mut names: Vec<String> = ckpt.tensors().map(|t| t.name.clone()).collect();
        let mut want: Vec<String> = reference.names().into_iter().map(String::from).collect();
        names.sort();
        want.sort();
        assert_eq!(names, want, "{what}");
        for info in ckpt.tensors() {
            let r = reference.tensor(&info.name).expect("named");
            assert_eq!(info.shape, r.shape(), "{what}: {}", info.name);
            assert_eq!(
                format!("{:?}", info.dtype),
                format!("{:?}", r.dtype()),
                "{what}"
            );
            assert_eq!(ckpt.bytes(&info.name).expect("bytes"), r.data(), "{what}");
            let t = weights.get(&info.name).expect("uploaded");
            if r.data().is_empty() {
                continue;
            }
            let on_gpu =
                pollster::block_on(gpu.read_bytes(&t.parts()[0].buffer, 0, r.data().len() as u64))
                    .expect("read back");
            assert_eq!(on_gpu, r.data(), "{what}: {} on the GPU", info.name);
        }
        loaded += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("400 edited files: {loaded} loaded identically, {refused} refused clearly");
    assert!(
        loaded > 20 && refused > 20,
        "{loaded} loaded, {refused} refused"
    );
}
