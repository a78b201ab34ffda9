//! `kiln perplexity`'s scoring (llama.cpp's windows, second halves scored) on a tiny random
//! model, against the plain-Rust float64 reference forward run window by window.

mod common;

use common::tiny;
use common::*;
use kiln::generate::perplexity::perplexity;
use kiln::models::Config;
use kiln::reference::llama::Reference;

#[test]
fn perplexity_scores_the_second_half_of_each_window() {
    let (context, windows) = (16, 3);
    for gpu in gpus() {
        let model = tiny::text_model(gpu, 96);
        let json = tiny::config_json(r#"{"eos_token_id": 96, "max_position_embeddings": 256}"#);
        let cfg = Config::from_json("tiny", &json).expect("config");
        let (_, host) = tiny::weights(gpu, &cfg, kiln::DType::F32);
        let mut rng = Rng::new(9);
        // Two windows and a half: the tail is not used.
        let ids: Vec<u32> = (0..context * windows + context / 2)
            .map(|_| rng.below(cfg.vocab as u32))
            .collect();
        let got =
            pollster::block_on(perplexity(&model, &ids, context, |_, _| {})).expect("perplexity");
        let mut nlls = Vec::new();
        for w in 0..windows {
            let window = &ids[w * context..(w + 1) * context];
            let mut reference = Reference::new(tiny::spec(&cfg), &host, context);
            let logits = reference.forward(window);
            for j in context / 2..context - 1 {
                let row = &logits[j * cfg.vocab..(j + 1) * cfg.vocab];
                let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&l| (l as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                nlls.push(lse - row[window[j + 1] as usize] as f64);
            }
        }
        let want = (nlls.iter().sum::<f64>() / nlls.len() as f64).exp();
        assert_eq!(
            (got.windows, got.scored),
            (windows, nlls.len()),
            "on {}",
            label(gpu)
        );
        // f32 logits on the GPU against float64: relative 1e-4 on the perplexity.
        assert!(
            (got.value - want).abs() <= 1e-4 * want,
            "{} vs {want} on {}",
            got.value,
            label(gpu)
        );
        assert!(got.stderr > 0.0 && got.stderr < got.value, "{got:?}");
    }
}

#[test]
fn too_short_a_text_is_an_error() {
    let Some(gpu) = gpus().first() else { return };
    let model = tiny::text_model(gpu, 96);
    let err = pollster::block_on(perplexity(&model, &[1, 2, 3], 16, |_, _| {})).unwrap_err();
    assert!(
        err.to_string().contains("fewer than one window of 16"),
        "{err}"
    );
}
