//! A model split across adapters, by layers or tensor-parallel, computes what it computes
//! on one: on lavapipe + SwiftShader, and lavapipe + SwiftShader + llvmpipe-GL, the tiny
//! Llama (tied head) and the tiny Qwen2 (biases, GQA, untied head) give logits within 1e-3
//! of lavapipe alone at every position, the same greedy tokens in a batch of prompts
//! (prefill and decode), and the same seeded samples. A model whose weights exceed one
//! adapter's budget loads on two. SmolLM2 split over both groups, both ways, gives the
//! greedy text and the top-5 logits (within 1e-3) of lavapipe alone. Split shares follow
//! the weights given, by default each adapter's copy bandwidth. The host all-reduce adds
//! the partials in adapter order, to the bit. Bad placements fail with errors that name
//! the problem.

mod common;

use common::*;
use kiln::generate::GenerateOptions;
use kiln::load::LoadOptions;
use kiln::split::{Gpus, Split};
use kiln::{Gpu, Sampling, TextModel};
use std::sync::Arc;

const CONTEXT: usize = 48;
/// Four layers, so three adapters get at least one each, and three KV heads of two query
/// heads each, so they get one each tensor-parallel (and two get an uneven 2 + 1); token 96
/// ends a generation.
const LAYERS: &str = r#""num_hidden_layers": 4, "eos_token_id": 96, "max_position_embeddings": 256,
    "hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 3"#;

fn find(what: &str, pick: impl Fn(&wgpu::AdapterInfo) -> bool) -> Option<Gpu> {
    let found = gpus().iter().find(|g| pick(g.info())).cloned();
    if found.is_none() {
        assert!(!ci(), "CI=true but there is no {what} adapter");
        eprintln!("WARNING: no {what} adapter; its splits were not tested");
    }
    found
}

fn lavapipe() -> Option<Gpu> {
    find("lavapipe", |i| {
        i.name.contains("llvmpipe") && i.backend == wgpu::Backend::Vulkan
    })
}

/// The groups the issue names: lavapipe + SwiftShader, and the two with llvmpipe-GL.
fn groups() -> Vec<Vec<Gpu>> {
    let swiftshader = find("SwiftShader", |i| i.name.contains("SwiftShader"));
    let gl = find("llvmpipe-GL", |i| i.backend == wgpu::Backend::Gl);
    let (Some(lp), Some(ss)) = (lavapipe(), swiftshader) else {
        return Vec::new();
    };
    let mut out = vec![vec![lp.clone(), ss.clone()]];
    if let Some(gl) = gl {
        out.push(vec![lp, ss, gl]);
    }
    out
}

fn load(gpus: &Gpus, dir: &std::path::Path, budget: Option<u64>) -> kiln::Result<Arc<TextModel>> {
    let options = LoadOptions {
        budget,
        ..Default::default()
    };
    pollster::block_on(TextModel::load_on(gpus, dir, options)).map(Arc::new)
}

fn logits(model: &Arc<TextModel>, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
    pollster::block_on(s.logits(ids, true)).expect("logits")
}

/// Tokens of each prompt, generated together in one batch session.
fn generate(model: &Arc<TextModel>, prompts: &[Vec<u32>], sampling: Sampling) -> Vec<Vec<u32>> {
    let options = GenerateOptions {
        max_tokens: 10,
        sampling,
        ..Default::default()
    };
    let mut s = pollster::block_on(model.batch_session(CONTEXT, prompts.len())).expect("session");
    let mut g = pollster::block_on(s.generate_batch(prompts, options)).expect("generate");
    pollster::block_on(g.texts()).expect("texts");
    (0..prompts.len()).map(|i| g.tokens(i).to_vec()).collect()
}

fn check_model(tag: &str, extra: &str, split: Split) {
    let Some(lp) = lavapipe() else { return };
    let mode = format!("{split:?}").to_lowercase();
    let dir = common::tiny::folder(&format!("{tag}-{mode}"), &format!("{{{LAYERS}{extra}}}"));
    let whole = load(&Gpus::one(lp), &dir, None).expect("load on lavapipe");
    let mut rng = Rng::new(21);
    let prompt: Vec<u32> = (0..11).map(|_| rng.below(96)).collect();
    let prompts: Vec<Vec<u32>> = [5, 9, 1]
        .iter()
        .map(|&n| (0..n).map(|_| rng.below(96)).collect())
        .collect();
    let seeded = Sampling {
        seed: 7,
        temperature: 1.1,
        ..Sampling::default()
    };
    let want_logits = logits(&whole, &prompt);
    let want_greedy = generate(&whole, &prompts, Sampling::greedy());
    let want_sampled = generate(&whole, &prompts, seeded);
    for group in groups() {
        let names: Vec<String> = group.iter().map(label).collect();
        let what = format!("{tag} split ({mode}) over {}", names.join(" + "));
        let n = group.len();
        // Tensor-parallel, uneven: lavapipe (first) weighs 3, and so samples.
        let weights = match split {
            Split::Layers => vec![1.0; n],
            _ => [3.0, 1.0, 1.0][..n].to_vec(),
        };
        let lavapipe = label(&group[0]);
        let gpus = Gpus::new(group, split).and_then(|g| g.weighted(&weights));
        let split =
            load(&gpus.expect("group"), &dir, None).unwrap_or_else(|e| panic!("{what}: {e}"));
        let spans: Vec<_> = split.stages().iter().map(|s| s.decoder.span()).collect();
        assert_eq!(spans.len(), n, "{what}: one stage per adapter");
        let layers: Vec<_> = spans.iter().map(|s| s.layers.clone()).collect();
        match split.split() {
            Split::Auto => panic!("{what}: a loaded model's split is tensor or layers"),
            Split::Layers => {
                assert_eq!(
                    layers.first().map(|r| r.start),
                    Some(0),
                    "{what}: {layers:?}"
                );
                assert_eq!(layers.last().map(|r| r.end), Some(4), "{what}: {layers:?}");
                assert!(
                    layers.windows(2).all(|w| w[0].end == w[1].start),
                    "{what}: {layers:?}"
                );
            }
            Split::Tensor => {
                // Every layer everywhere, and a share of the vocabulary each, in order
                // (lavapipe, weighing 3, holds the most): each part's logits are split by
                // columns, as its weights were cut; each adapter holds its share of the
                // weights.
                assert!(layers.iter().all(|r| *r == (0..4)), "{what}: {layers:?}");
                let n = split.stages().len();
                let logits = |(i, s): (usize, &kiln::generate::Stage)| {
                    let g = kiln::graph::Graph::new().part(i, n);
                    let cache = kiln::models::Cache {
                        slots: 1,
                        capacity: 8,
                    };
                    let ids = g.ids("ids", 1);
                    let out = s
                        .decoder
                        .forward(&g, ids, cache, kiln::models::Logits::Last);
                    let (rows, total) = g.layout(out).along(2).expect("logits split by columns");
                    assert_eq!(total, 97, "{what}");
                    rows
                };
                let rows: Vec<_> = split.stages().iter().enumerate().map(logits).collect();
                assert_eq!(rows.first().map(|r| r.start), Some(0), "{what}: {rows:?}");
                assert_eq!(rows.last().map(|r| r.end), Some(97), "{what}: {rows:?}");
                assert!(
                    rows.windows(2).all(|w| w[0].end == w[1].start),
                    "{what}: {rows:?}"
                );
                assert_eq!(
                    rows.iter().map(|r| r.len()).max(),
                    rows.last().map(|r| r.len()),
                    "{what}: {rows:?}"
                );
                let last = split.stages().last().map(|s| label(&s.gpu));
                assert_eq!(last, Some(lavapipe.clone()), "{what}: the fastest samples");
                for s in split.stages() {
                    assert!(
                        s.decoder.weight_bytes() < whole.weight_bytes(),
                        "{what}: {} holds all the weights",
                        label(&s.gpu)
                    );
                }
            }
        }

        let got = logits(&split, &prompt);
        assert_eq!(got.len(), want_logits.len(), "{what}: positions");
        for (p, (g, w)) in got.iter().zip(&want_logits).enumerate() {
            assert_close(g, w, 1e-3, 0.0, &format!("{what}: logits at position {p}"));
        }
        let last = want_logits.len() - 1;
        assert_eq!(
            top(&got[last], 5),
            top(&want_logits[last], 5),
            "{what}: top 5"
        );
        assert_eq!(
            generate(&split, &prompts, Sampling::greedy()),
            want_greedy,
            "{what}: greedy"
        );
        assert_eq!(
            generate(&split, &prompts, seeded),
            want_sampled,
            "{what}: seeded sampling"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const QWEN2: &str = r#", "model_type": "qwen2", "tie_word_embeddings": false"#;

#[test]
fn tiny_llama_split_by_layers_matches_one_adapter() {
    check_model("llama", "", Split::Layers);
}

#[test]
fn tiny_qwen2_split_by_layers_matches_one_adapter() {
    check_model("qwen2", QWEN2, Split::Layers);
}

#[test]
fn tiny_llama_split_tensor_parallel_matches_one_adapter() {
    check_model("llama", "", Split::Tensor);
}

#[test]
fn tiny_qwen2_split_tensor_parallel_matches_one_adapter() {
    check_model("qwen2", QWEN2, Split::Tensor);
}

#[test]
fn a_model_over_one_adapters_budget_loads_on_two() {
    let Some(group) = groups().into_iter().next() else {
        return;
    };
    let dir = common::tiny::folder("budget", &format!("{{{LAYERS}}}"));
    let whole = load(&Gpus::one(group[0].clone()), &dir, None).expect("load");
    // Two thirds of the weights: more than half of the layers, less than all of them.
    let budget = whole.weight_bytes() * 2 / 3;
    let e = load(&Gpus::one(group[0].clone()), &dir, Some(budget))
        .err()
        .expect("the whole model is over the budget")
        .to_string();
    assert!(e.contains("over the budget"), "{e}");
    let split = load(
        &Gpus::new(group, Split::Layers).expect("group"),
        &dir,
        Some(budget),
    )
    .expect("half the layers each fit");
    for s in split.stages() {
        assert!(s.decoder.weight_bytes() <= budget, "{}", label(&s.gpu));
    }
    let mut rng = Rng::new(3);
    let prompts = vec![(0..6).map(|_| rng.below(96)).collect::<Vec<u32>>()];
    assert_eq!(
        generate(&split, &prompts, Sampling::greedy()),
        generate(&whole, &prompts, Sampling::greedy())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_placements_are_refused_by_name() {
    let Some(lp) = lavapipe() else { return };
    let dir = common::tiny::folder("bad", &format!("{{{LAYERS}}}"));
    let err = |r: kiln::Result<Gpus>| r.err().expect("refused").to_string();
    let e = err(Gpus::new(Vec::new(), Split::Layers));
    assert!(e.contains("at least one adapter"), "{e}");
    let e = err(
        Gpus::new(vec![lp.clone(), lp.clone()], Split::Layers).and_then(|g| g.weighted(&[1.0]))
    );
    assert!(e.contains("1 split weights for 2 adapters"), "{e}");
    let e = err(Gpus::new(vec![lp.clone(), lp.clone()], Split::Layers)
        .and_then(|g| g.weighted(&[1.0, -2.0])));
    assert!(
        e.contains("-2") && e.contains("not a positive number"),
        "{e}"
    );
    // Five adapters for four layers.
    let five = Gpus::new(vec![lp.clone(); 5], Split::Layers).expect("group");
    let e = load(&five, &dir, None).err().expect("refused").to_string();
    assert!(e.contains("5 adapters but the model has 4 layers"), "{e}");
    // Tensor-parallel, four adapters for three KV heads.
    let four = Gpus::new(vec![lp.clone(); 4], Split::Tensor).expect("group");
    let e = load(&four, &dir, None).err().expect("refused").to_string();
    assert!(e.contains("4 adapters") && e.contains("3 KV heads"), "{e}");
    // The default, `auto`, splits those by layers instead, and two tensor-parallel.
    let auto = Gpus::new(vec![lp.clone(); 4], Split::Auto).expect("group");
    let model = load(&auto, &dir, None).expect("by layers");
    assert_eq!(model.split(), Split::Layers);
    assert_eq!(model.stages().len(), 4);
    let auto = Gpus::new(vec![lp.clone(); 2], Split::Auto).expect("group");
    assert_eq!(load(&auto, &dir, None).expect("two").split(), Split::Tensor);
    // A part of a tensor-parallel model does not run alone.
    let two = Gpus::new(vec![lp.clone(); 2], Split::Tensor).expect("group");
    let model = load(&two, &dir, None).expect("two parts");
    // Sampling over vocabulary shards needs a bounded top-k.
    let open = Sampling {
        top_k: 0,
        ..Sampling::default()
    };
    let options = GenerateOptions {
        max_tokens: 2,
        sampling: open,
        ..Default::default()
    };
    let mut s = pollster::block_on(model.batch_session(CONTEXT, 1)).expect("session");
    let e = pollster::block_on(s.generate_batch(&[vec![1, 2]], options))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("top_k 0") && e.contains("between 1 and 256"),
        "{e}"
    );
    let part = &model.stages()[0];
    let g = kiln::graph::Graph::new().part(0, 2);
    let cache = kiln::models::Cache {
        slots: 1,
        capacity: 8,
    };
    let ids = g.ids("ids", 1);
    let out = part
        .decoder
        .forward(&g, ids, cache, kiln::models::Logits::Last);
    g.output("hidden", out);
    let plan = kiln::schedule::Plan::new(&g, kiln::schedule::Target::of(&part.gpu)).expect("plan");
    assert_eq!(
        plan.exchanges.len(),
        9,
        "two exchanges a layer, one for the embedding"
    );
    // Each exchange starts a pass, the first to read the sum.
    for x in &plan.exchanges {
        let first = plan.passes[x.pass].dispatches.start;
        assert!(
            plan.dispatches[first].label.contains("all_reduce"),
            "{}",
            plan.dispatches[first].label
        );
    }
    let state = pollster::block_on(kiln::exec::State::new(&part.gpu, &[&plan])).expect("state");
    let program = pollster::block_on(kiln::exec::Program::new(&part.gpu, plan, Some(&state)));
    let program = program.expect("program");
    let e = pollster::block_on(program.run_at(0, &[("ids", kiln::exec::Feed::Ids(&[1]))]))
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("together with the other parts"), "{e}");
    // An adapter that is not there.
    let e = pollster::block_on(Gpu::new(&kiln::GpuOptions {
        adapter: kiln::AdapterChoice::Index(99),
        ..Default::default()
    }))
    .expect_err("no adapter 99")
    .to_string();
    assert!(e.contains("99"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smollm2_split_either_way_gives_the_single_adapter_text_and_logits() {
    let Some(path) = common::smollm2::path() else {
        return;
    };
    let Some(lp) = lavapipe() else { return };
    // f32 activations in GEMV on every adapter: with 8-bit ones, a difference in the last
    // bits upstream can round an activation the other way (within 0.15 of the f32 logits,
    // tests/smollm2.rs), which is not what this test is about.
    for gpu in gpus() {
        common::float_gemv(gpu);
    }
    let load = |gpus: &Gpus| {
        let model = pollster::block_on(TextModel::load_on(gpus, &path, Default::default()));
        Arc::new(model.expect("load"))
    };
    let whole = load(&Gpus::one(lp));
    let prompt = whole.encode("The capital of France is").expect("encode");
    let text = |m: &Arc<TextModel>| {
        let options = GenerateOptions {
            max_tokens: 16,
            sampling: Sampling::greedy(),
            ..Default::default()
        };
        let mut s = pollster::block_on(m.session(64)).expect("session");
        let mut g = pollster::block_on(s.generate(&prompt, options)).expect("generate");
        pollster::block_on(g.text()).expect("text")
    };
    let want_logits = logits(&whole, &prompt);
    let want = &want_logits[want_logits.len() - 1];
    let want_text = text(&whole);
    for (split, group) in [Split::Layers, Split::Tensor]
        .into_iter()
        .flat_map(|s| groups().into_iter().map(move |g| (s, g)))
    {
        let names: Vec<String> = group.iter().map(label).collect();
        let what = format!("SmolLM2 split ({split:?}) over {}", names.join(" + "));
        let split = load(&Gpus::new(group, split).expect("group"));
        let got_logits = logits(&split, &prompt);
        let got = &got_logits[got_logits.len() - 1];
        // The single adapter's top 5, each within 1e-3 (the order of two within 1e-3 of
        // each other may differ).
        for i in top(want, 5) {
            let (g, w) = (got[i], want[i]);
            assert!((g - w).abs() < 1e-3, "{what}: logit {i}: {g} vs {w}");
        }
        assert_eq!(top(got, 5)[0], top(want, 5)[0], "{what}: argmax");
        assert_eq!(text(&split), want_text, "{what}: greedy text");
    }
}

#[test]
fn split_shares_follow_the_weights_and_default_to_each_adapters_bandwidth() {
    for group in groups() {
        // Layers in proportion to the weights, each adapter at least one.
        let gpus = Gpus::new(group.clone(), Split::Layers).expect("group");
        let mut weights = vec![1.0; group.len()];
        weights[0] = 3.0;
        let weighted = gpus.clone().weighted(&weights).expect("weights");
        let spans: Vec<_> = weighted
            .spans(30)
            .expect("spans")
            .into_iter()
            .map(|s| s.layers)
            .collect();
        assert_eq!(spans, kiln::split::shares(30, &weights).expect("shares"));
        let layers: Vec<usize> = spans.iter().map(|r| r.len()).collect();
        assert!(layers[0] > 2 * layers[1], "3:1:... gives {layers:?}");
        // By default, each adapter's copy bandwidth (measured once, then cached), in order.
        let mut log = |m: &str| eprintln!("{m}");
        let by = pollster::block_on(gpus.by_bandwidth(&mut log)).expect("bandwidth");
        for (gpu, &w) in group.iter().zip(by.weights()) {
            let gbps = pollster::block_on(kiln::tune::bandwidth(gpu, &mut log)).expect("gbps");
            assert!(w.is_finite() && w > 0.0, "{}: {w} GB/s", label(gpu));
            assert_eq!(w, gbps, "{}", label(gpu));
        }
    }
}

#[test]
fn split_loading_reports_one_progress_that_only_grows() {
    let Some(group) = groups().into_iter().next() else {
        return;
    };
    let dir = common::tiny::folder("progress", &format!("{{{LAYERS}}}"));
    let seen = std::cell::RefCell::new(Vec::new());
    let options = LoadOptions {
        progress: Some(Box::new(|p| {
            seen.borrow_mut().push((p.bytes_done, p.bytes_total))
        })),
        ..Default::default()
    };
    let gpus = Gpus::new(group, Split::Layers).expect("group");
    pollster::block_on(TextModel::load_on(&gpus, &dir, options)).expect("load");
    let seen = seen.into_inner();
    let total = seen.first().expect("progress was reported").1;
    assert!(seen.iter().all(|&(_, t)| t == total), "one total: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "only grows: {seen:?}"
    );
    assert_eq!(seen.last().map(|p| p.0), Some(total), "ends at the total");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_host_all_reduce_adds_partials_in_adapter_order_on_every_adapter() {
    for group in groups() {
        let what = group.iter().map(label).collect::<Vec<_>>().join(" + ");
        let n = 1000; // not a multiple of any workgroup or vector width
        let reduce = pollster::block_on(kiln::exec::AllReduce::new(&group, n)).expect("reduce");
        let mut rng = Rng::new(9);
        // Three calls: both staging sets, and the first reused.
        for call in 0..3 {
            let partials: Vec<Vec<f32>> = group.iter().map(|_| rng.uniform(n, 100.0)).collect();
            let buffers: Vec<kiln::gpu::Buffer> = group
                .iter()
                .zip(&partials)
                .map(|(gpu, p)| {
                    let b = pollster::block_on(gpu.storage_buffer("partial", n as u64 * 4 + 64));
                    let b = b.expect("buffer");
                    gpu.queue().write_buffer(&b, 0, bytemuck::cast_slice(p));
                    b
                })
                .collect();
            let refs: Vec<&kiln::gpu::Buffer> = buffers.iter().collect();
            pollster::block_on(reduce.run(&refs, n)).expect("all-reduce");
            // The same additions in the same order, on the host: equal to the bit.
            let mut want = vec![0f32; n];
            for p in &partials {
                for (w, x) in want.iter_mut().zip(p) {
                    *w += x;
                }
            }
            for (gpu, b) in group.iter().zip(&buffers) {
                let got = pollster::block_on(gpu.read_f32(b, n)).expect("read");
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{what}: call {call}, sum on {}",
                    label(gpu)
                );
            }
        }
        // A shorter sum (a step of fewer rows) leaves the rest of each buffer alone.
        let short = n - 37;
        let buffers: Vec<kiln::gpu::Buffer> = group
            .iter()
            .map(|gpu| {
                let b = pollster::block_on(gpu.storage_buffer("partial", n as u64 * 4));
                let b = b.expect("buffer");
                gpu.queue()
                    .write_buffer(&b, 0, bytemuck::cast_slice(&vec![1.5f32; n]));
                b
            })
            .collect();
        let refs: Vec<&kiln::gpu::Buffer> = buffers.iter().collect();
        pollster::block_on(reduce.run(&refs, short)).expect("short all-reduce");
        for (gpu, b) in group.iter().zip(&buffers) {
            let got = pollster::block_on(gpu.read_f32(b, n)).expect("read");
            let sum = 1.5 * group.len() as f32;
            assert!(got[..short].iter().all(|&x| x == sum), "{}", label(gpu));
            assert!(got[short..].iter().all(|&x| x == 1.5), "{}", label(gpu));
        }
        let e = pollster::block_on(reduce.run(&refs, n + 1)).expect_err("over capacity");
        assert!(e.to_string().contains("staging for 1000"), "{e}");
        let one = pollster::block_on(group[0].storage_buffer("partial", 16)).expect("buffer");
        let e = pollster::block_on(reduce.run(&[&one], n)).expect_err("one partial");
        assert!(
            e.to_string().contains("1 partials for an all-reduce over"),
            "{e}"
        );
        let small: Vec<&kiln::gpu::Buffer> = vec![&one; group.len()];
        let e = pollster::block_on(reduce.run(&small, n)).expect_err("too small");
        assert!(e.to_string().contains("smaller than"), "{e}");
    }
}
