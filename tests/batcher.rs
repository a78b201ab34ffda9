//! Continuous batching on every adapter: requests that join a running batch at different
//! steps, more of them than slots, get the text each gets alone (greedy and seeded
//! sampling); a prompt longer than the chunk is read over several steps; a request whose
//! caller leaves frees its slot; limits are refused by name.

mod common;

use common::tiny::text_model;
use common::*;
use kiln::generate::{Batcher, Finish, GenerateOptions, Request, Update};
use kiln::{Sampling, TextModel};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const CAP: usize = 40;
const SLOTS: usize = 3;
const CHUNK: usize = 4;

/// What one request received: its text, and how it ended.
#[derive(Clone, Debug, Default, PartialEq)]
struct Got {
    text: String,
    texts: usize,
    finish: Option<Finish>,
    generated: usize,
}

type Shared = Arc<Mutex<Got>>;

fn request(prompt: &[u32], options: &GenerateOptions) -> (Request, Shared) {
    let got = Shared::default();
    let into = got.clone();
    let sink = Box::new(move |u: Update| {
        let mut g = into.lock().expect("lock");
        match u {
            Update::Text(t) => {
                g.text.push_str(&t);
                g.texts += 1;
            }
            Update::Done(why, stats) => {
                assert!(g.finish.is_none(), "a second Done");
                g.finish = Some(why);
                g.generated = stats.generated_tokens;
            }
        }
        true
    });
    let r = Request {
        prompt: prompt.to_vec(),
        options: options.clone(),
        sink,
    };
    (r, got)
}

fn batcher(model: &Arc<TextModel>, slots: usize) -> Batcher {
    let session = pollster::block_on(model.batch_session(CAP, slots)).expect("session");
    Batcher::new(session, CHUNK).expect("batcher")
}

/// Serve `prompts` through one batcher: a new request is admitted every `every` steps while
/// a slot is free; steps run until all have ended (bounded).
fn serve(
    model: &Arc<TextModel>,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    every: usize,
) -> Vec<Got> {
    let mut b = batcher(model, SLOTS);
    let mut waiting: VecDeque<_> = prompts.iter().map(|p| request(p, options)).collect();
    let results: Vec<Shared> = waiting.iter().map(|(_, g)| g.clone()).collect();
    let mut steps = 0;
    while !waiting.is_empty() || b.running() > 0 {
        if steps % every == 0 && b.free() > 0 {
            if let Some((r, _)) = waiting.pop_front() {
                if let Err((_, e)) = b.admit(r) {
                    panic!("admit: {e}");
                }
            }
        }
        pollster::block_on(b.step()).expect("step");
        steps += 1;
        assert!(steps < 500, "the batcher did not finish");
    }
    results
        .iter()
        .map(|g| g.lock().expect("lock").clone())
        .collect()
}

fn prompts() -> Vec<Vec<u32>> {
    let mut rng = Rng::new(77);
    [3usize, 11, 1, 6, 9]
        .iter()
        .map(|&n| (0..n).map(|_| rng.below(96)).collect())
        .collect()
}

#[test]
fn requests_joining_a_running_batch_get_what_they_get_alone() {
    for gpu in gpus() {
        let _turn = turn(gpu);
        let model = text_model(gpu, 96); // no EOS in the vocabulary: budgets end them
        let prompts = prompts();
        for sampling in [
            Sampling::greedy(),
            Sampling {
                seed: 5,
                temperature: 1.1,
                ..Sampling::default()
            },
        ] {
            let options = GenerateOptions {
                max_tokens: 7,
                sampling,
                ..Default::default()
            };
            let alone: Vec<Got> = prompts
                .iter()
                .map(|p| serve(&model, std::slice::from_ref(p), &options, 1).remove(0))
                .collect();
            for got in &alone {
                assert_eq!(got.finish, Some(Finish::MaxTokens), "{}", label(gpu));
                assert_eq!(got.generated, 7, "{}", label(gpu));
            }
            // Five requests through three slots, joining every step and every third.
            for every in [1, 3] {
                let together = serve(&model, &prompts, &options, every);
                assert_eq!(
                    together,
                    alone,
                    "{sampling:?}, every {every}, {}",
                    label(gpu)
                );
            }
            // Greedy, a request alone in the batcher gets what Session::generate gives.
            if sampling.temperature == 0.0 {
                for (p, got) in prompts.iter().zip(&alone) {
                    let mut s = pollster::block_on(model.session(CAP)).expect("session");
                    let mut g =
                        pollster::block_on(s.generate(p, options.clone())).expect("generate");
                    let text = pollster::block_on(g.text()).expect("text");
                    assert_eq!(got.text, text, "prompt {p:?} on {}", label(gpu));
                }
            }
        }
    }
}

#[test]
fn a_request_whose_caller_leaves_frees_its_slot() {
    for gpu in gpus() {
        let _turn = turn(gpu);
        let model = text_model(gpu, 96);
        let options = GenerateOptions {
            max_tokens: 20,
            sampling: Sampling::greedy(),
            ..Default::default()
        };
        let mut b = batcher(&model, 1);
        let heard = Arc::new(Mutex::new(0usize));
        let count = heard.clone();
        // Listens to two pieces of text, then hangs up.
        let sink = Box::new(move |_u: Update| {
            let mut n = count.lock().expect("lock");
            *n += 1;
            *n <= 2
        });
        let r = Request {
            prompt: vec![1, 2, 3],
            options: options.clone(),
            sink,
        };
        assert!(b.admit(r).is_ok());
        let mut steps = 0;
        while b.running() > 0 {
            pollster::block_on(b.step()).expect("step");
            steps += 1;
            assert!(steps < 10, "the request outlived its caller");
        }
        assert_eq!(*heard.lock().expect("lock"), 3, "{}", label(gpu));
        // The slot serves the next request in full.
        let (r, got) = request(&[4, 5], &options);
        assert!(b.admit(r).is_ok());
        while b.running() > 0 {
            pollster::block_on(b.step()).expect("step");
        }
        let got = got.lock().expect("lock").clone();
        assert_eq!(got.finish, Some(Finish::MaxTokens), "{}", label(gpu));
        assert_eq!(got.generated, 20, "{}", label(gpu));
    }
}

#[test]
fn requests_beyond_the_limits_are_refused_by_name() {
    for gpu in gpus() {
        let _turn = turn(gpu);
        let model = text_model(gpu, 96);
        let mut b = batcher(&model, 1);
        let options = GenerateOptions {
            max_tokens: 10,
            ..Default::default()
        };
        let refuse = |b: &mut Batcher, prompt: &[u32], max: usize, want: &str| {
            let o = GenerateOptions {
                max_tokens: max,
                ..options.clone()
            };
            let (r, _) = request(prompt, &o);
            match b.admit(r) {
                Ok(()) => panic!("admitted {prompt:?} with max_tokens {max}"),
                Err((_, e)) => assert!(e.to_string().contains(want), "{e}"),
            }
        };
        refuse(&mut b, &[1; CAP], 1, &format!("context holds {CAP}"));
        refuse(&mut b, &[1; 35], 10, "exceed the context of 40");
        refuse(&mut b, &[], 1, "empty");
        refuse(&mut b, &[500], 1, "outside the vocabulary");
        let (r, _) = request(&[1, 2], &options);
        assert!(b.admit(r).is_ok());
        refuse(&mut b, &[1, 2], 1, "every slot");
        assert_eq!(b.running(), 1);
    }
}

#[test]
fn the_serving_benchmark_counts_every_stream() {
    let Some(gpu) = gpus().first() else {
        return; // common::gpus fails under CI=true when there is no adapter
    };
    let model = text_model(gpu, 96);
    let bench = kiln::bench::ServeBench {
        prompt: 5,
        generate: 6,
        streams: vec![1, 3],
        runs: 2,
        chunk: CHUNK,
    };
    let rows = pollster::block_on(kiln::bench::serve(&model, &bench, &mut |_| {})).expect("bench");
    assert_eq!(rows.iter().map(|r| r.streams).collect::<Vec<_>>(), [1, 3]);
    for r in &rows {
        assert_eq!(r.decode.len(), 2);
        assert!(r.decode.iter().all(|&d| d.is_finite() && d > 0.0), "{r:?}");
        assert!(r.first_token_secs.iter().all(|&t| t > 0.0), "{r:?}");
    }
    let table = kiln::bench::serve_markdown("tiny", &label(gpu), &bench, &rows);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        3,
        "{table}"
    );
    let bad = kiln::bench::ServeBench {
        streams: vec![0],
        ..bench
    };
    let e = pollster::block_on(kiln::bench::serve(&model, &bad, &mut |_| {})).unwrap_err();
    assert!(e.to_string().contains("1 stream"), "{e}");
}

#[test]
fn repeated_prompts_reuse_their_cache_and_get_what_they_get_alone() {
    // `kiln serve`'s load test sends the same few prompts many times: a request whose whole
    // prompt sits in a free slot's cache computes only its last token, in a one-token
    // chunk, next to other requests' chunks and decodes.
    for gpu in gpus() {
        let _turn = turn(gpu);
        let model = text_model(gpu, 96);
        let options = GenerateOptions {
            max_tokens: 5,
            sampling: Sampling::greedy(),
            ..Default::default()
        };
        let distinct = prompts();
        let alone: Vec<Got> = distinct
            .iter()
            .map(|p| serve(&model, std::slice::from_ref(p), &options, 1).remove(0))
            .collect();
        // Each prompt four times, in an order where a repeat often finds its own cache free.
        let order: Vec<usize> = (0..4 * distinct.len())
            .map(|i| (i * 3) % distinct.len())
            .collect();
        let repeated: Vec<Vec<u32>> = order.iter().map(|&i| distinct[i].clone()).collect();
        for every in [1, 2] {
            let together = serve(&model, &repeated, &options, every);
            for (k, (&i, got)) in order.iter().zip(&together).enumerate() {
                assert_eq!(
                    got,
                    &alone[i],
                    "request {k} (prompt {i}), every {every}, {}",
                    label(gpu)
                );
            }
        }
    }
}
