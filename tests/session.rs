//! The host loop on a tiny model, on every adapter: a long chat allocates GPU memory only
//! when a turn is longer than any before it; pipelined decode gives the tokens sequential
//! decode gives, and the surplus step it runs past the end is not counted in the cache; an
//! error during generation reaches the caller as an error; a prompt prefilled in chunks
//! (reporting progress, paced by frames, cancelled between chunks) gives the tokens of one
//! prefill step.

mod common;

use common::tiny::text_model;
use common::*;
use kiln::Gpu;
use kiln::generate::{Finish, GenerateOptions};

const CONTEXT: usize = 64;

#[test]
fn a_long_chat_allocates_only_for_longer_turns() {
    // Devices of their own: tests running beside this one must not add to its count.
    let own: Vec<Gpu> = pollster::block_on(Gpu::all())
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(own.len(), gpus().len(), "every adapter opens twice");
    for gpu in &own {
        let model = text_model(gpu, 96);
        let mut session = pollster::block_on(model.session(256)).expect("session");
        let options = GenerateOptions {
            max_tokens: 1,
            ..Default::default()
        };
        // Twenty turns of 1 to 3 words, and two long ones: a chat whose turns mostly fit a
        // bucket seen before.
        let mut rng = Rng::new(2);
        let mut conversation: Vec<u32> = Vec::new();
        let (mut largest, mut growths) = (0usize, 0usize);
        for turn in 0..20 {
            let words = match turn {
                7 => 12,
                13 => 30,
                _ => 1 + rng.below(3) as usize,
            };
            conversation.extend((0..words).map(|_| rng.below(90)));
            let suffix = conversation.len() - session.context().len().min(conversation.len() - 1);
            let before = gpu.buffers_created();
            let mut g =
                pollster::block_on(session.generate(&conversation, options.clone())).expect("turn");
            pollster::block_on(g.text()).expect("text");
            conversation.extend(g.tokens());
            let allocated = gpu.buffers_created() - before;
            let bucket = suffix.next_power_of_two();
            if bucket > largest {
                largest = bucket;
                growths += 1;
            } else {
                assert_eq!(
                    allocated,
                    0,
                    "turn {turn} ({suffix} new tokens) allocated on {}",
                    label(gpu)
                );
            }
        }
        assert!(
            conversation.len() > 80,
            "the chat grew to {} tokens",
            conversation.len()
        );
        // Buckets 1..=32 at most: log2 of the longest turn, plus one.
        assert!(growths <= 6, "{growths} growths on {}", label(gpu));
        assert!(
            largest >= 32,
            "the long turn needed a bucket of 32, got {largest}"
        );
    }
}

#[test]
fn pipelined_decode_matches_sequential_and_counts_no_surplus() {
    for gpu in gpus() {
        let _turn = turn(gpu); // GL's context, one test at a time
        let prompt = [5u32, 17, 60, 2];
        // What the model says, greedily, when nothing stops it.
        let model = text_model(gpu, 96);
        let long = GenerateOptions {
            max_tokens: 20,
            sampling: kiln::Sampling::greedy(),
            ..Default::default()
        };
        let mut runs = Vec::new();
        for pipelined in [false, true] {
            let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
            s.set_pipelined(pipelined);
            let mut g = pollster::block_on(s.generate(&prompt, long.clone())).expect("generate");
            pollster::block_on(g.text()).expect("text");
            runs.push((g.tokens().to_vec(), g.finish()));
            // The last token was never fed back: the cache holds the prompt and the rest.
            let tokens = &runs.last().expect("run").0;
            assert_eq!(
                s.context().len(),
                prompt.len() + tokens.len() - 1,
                "pipelined {pipelined}"
            );
        }
        assert_eq!(
            runs[0],
            runs[1],
            "pipelined and sequential decode on {}",
            label(gpu)
        );
        let tokens = runs[0].0.clone();
        assert!(tokens.len() > 6, "{tokens:?}");

        // Now make the 6th token end the generation: pipelined decode has already submitted
        // the step after it, whose token and cache entry must not count.
        let stop = tokens[5];
        let first = tokens.iter().position(|&t| t == stop).unwrap_or(5);
        let model = text_model(gpu, stop);
        for pipelined in [false, true] {
            let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
            s.set_pipelined(pipelined);
            let mut g = pollster::block_on(s.generate(&prompt, long.clone())).expect("generate");
            pollster::block_on(g.text()).expect("text");
            assert_eq!(g.finish(), Some(Finish::Eos));
            assert_eq!(
                g.tokens(),
                &tokens[..first],
                "pipelined {pipelined} on {}",
                label(gpu)
            );
            drop(g);
            assert_eq!(
                s.context(),
                [&prompt[..], &tokens[..first]].concat(),
                "the cache holds no surplus"
            );
            // The next turn reuses exactly that prefix.
            let next: Vec<u32> = [&prompt[..], &tokens[..first], &[3, 4]].concat();
            let mut g = pollster::block_on(s.generate(&next, long.clone())).expect("turn 2");
            pollster::block_on(g.text()).expect("text");
            assert_eq!(g.stats().reused_tokens, prompt.len() + first);
        }
        // Benchmarks generate past EOS: then the same tokens as when nothing stops it.
        let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
        let past = GenerateOptions {
            ignore_eos: true,
            ..long.clone()
        };
        let mut g = pollster::block_on(s.generate(&prompt, past)).expect("generate");
        pollster::block_on(g.text()).expect("text");
        assert_eq!(g.finish(), Some(Finish::MaxTokens), "on {}", label(gpu));
        assert_eq!(g.tokens().len(), 20, "past EOS on {}", label(gpu));
        assert_eq!(
            &g.tokens()[..tokens.len()],
            &tokens[..],
            "past EOS on {}",
            label(gpu)
        );
    }
}

#[test]
fn an_error_during_generation_is_an_error() {
    // Devices of their own: this test loses them. (Under CI, no adapter fails in gpus().)
    let own: Vec<Gpu> = pollster::block_on(Gpu::all())
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(own.len(), gpus().len(), "every adapter opens twice");
    for gpu in own {
        let model = text_model(&gpu, 96);
        let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
        let options = GenerateOptions {
            max_tokens: 30,
            sampling: kiln::Sampling::greedy(),
            ..Default::default()
        };
        let mut g = pollster::block_on(s.generate(&[1, 2, 3], options)).expect("generate");
        assert!(
            pollster::block_on(g.next()).is_some_and(|r| r.is_ok()),
            "a first token"
        );
        gpu.device().destroy();
        let mut error = None;
        while let Some(r) = pollster::block_on(g.next()) {
            if let Err(e) = r {
                error = Some(e.to_string());
                break;
            }
        }
        let e = error
            .unwrap_or_else(|| panic!("no error after the device was lost on {}", gpu.describe()));
        assert_eq!(g.finish(), Some(Finish::Error), "{e}");
        assert!(
            pollster::block_on(g.next()).is_none(),
            "the generation has ended"
        );
    }
}

#[test]
fn a_chunked_prefill_matches_one_step_reports_progress_and_paces() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    // 23 prompt tokens in chunks of 5: four chunks of 5, then a last step of 3.
    let prompt: Vec<u32> = (0..23).map(|i| (i * 7 + 3) % 90).collect();
    for gpu in gpus() {
        let _turn = turn(gpu);
        let model = text_model(gpu, 96);
        let greedy = GenerateOptions {
            max_tokens: 12,
            sampling: kiln::Sampling::greedy(),
            ..Default::default()
        };
        let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
        let mut g = pollster::block_on(s.generate(&prompt, greedy.clone())).expect("generate");
        pollster::block_on(g.text()).expect("text");
        let whole = g.tokens().to_vec();
        assert_eq!(whole.len(), 12, "{whole:?}");

        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let chunked = GenerateOptions {
            prefill_chunk: Some(5),
            on_prefill: Some(kiln::generate::Progress::new(move |done, total| {
                log.lock().expect("log").push((done, total))
            })),
            ..greedy.clone()
        };
        let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
        let mut g = pollster::block_on(s.generate(&prompt, chunked.clone())).expect("chunked");
        pollster::block_on(g.text()).expect("text");
        assert_eq!(g.tokens(), &whole[..], "chunked prefill on {}", label(gpu));
        assert_eq!(
            g.stats().reused_tokens,
            0,
            "chunks are computed, not reused"
        );
        let reports: Vec<(usize, usize)> = [0, 5, 10, 15, 20, 23].map(|d| (d, 23)).to_vec();
        assert_eq!(*seen.lock().expect("log"), reports);

        // Paced: one submission per frame, each a third of a step. A thread plays the
        // render loop.
        let pacer = kiln::Pacer::new(1).with_parts(3);
        let done = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicUsize::new(0));
        let ui = {
            let (pacer, done, frames) = (pacer.clone(), done.clone(), frames.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    pacer.frame();
                    frames.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let paced = GenerateOptions {
            pacer: Some(pacer.clone()),
            ..chunked.clone()
        };
        let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
        let mut g = pollster::block_on(s.generate(&prompt, paced)).expect("paced");
        pollster::block_on(g.text()).expect("text");
        let paced_tokens = g.tokens().to_vec();
        done.store(true, Ordering::Relaxed);
        ui.join().expect("ui thread");
        assert_eq!(paced_tokens, whole, "paced on {}", label(gpu));
        // 4 chunks + the last prefill step + 11 decode steps, each in up to 3 parts (fewer
        // where one pass dominates), each part after a frame's permit (the first permit
        // comes with the pacer).
        let (n, taken) = (frames.load(Ordering::Relaxed) as u64, pacer.taken());
        assert!(
            taken > 16,
            "16 steps were not cut into parts: {taken} submissions"
        );
        assert!(n + 1 >= taken, "{taken} submissions took only {n} frames");

        // Cancelled between chunks: no tokens, and the cache keeps what was computed.
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let cancelling = GenerateOptions {
            cancel: Some(cancel),
            on_prefill: Some(kiln::generate::Progress::new(move |done, _| {
                if done >= 10 {
                    flag.store(true, Ordering::Relaxed)
                }
            })),
            ..chunked.clone()
        };
        let mut s = pollster::block_on(model.session(CONTEXT)).expect("session");
        let mut g = pollster::block_on(s.generate(&prompt, cancelling)).expect("cancelled");
        assert_eq!(pollster::block_on(g.text()).expect("text"), "");
        assert_eq!(g.finish(), Some(Finish::Cancelled));
        drop(g);
        assert_eq!(s.context(), &prompt[..10]);
        let mut g = pollster::block_on(s.generate(&prompt, greedy.clone())).expect("resume");
        pollster::block_on(g.text()).expect("text");
        assert_eq!(g.stats().reused_tokens, 10);
        assert_eq!(g.tokens(), &whole[..], "resumed on {}", label(gpu));
    }
}
