//! Placing a model on several adapters, as data: the ranges each adapter owns (weighted by
//! speed, at block boundaries, with clear errors where a placement cannot be made), and
//! slices of stored weights, checked against slicing the dequantized matrix. No GPU needed.

use kiln::DType;
use kiln::dtype::blocks::dequantize_file;
use kiln::dtype::quantize::quantize;
use kiln::load::slice;
use kiln::models::config::Config;
use kiln::split::{Blocks, Placement, Shard, Split, llama_cut, shares};

/// SmolLM2-135M's shape: 9 heads in 3 KV groups of 64, FFN 1536, 30 layers.
fn smollm2() -> Config {
    let json = r#"{"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
        "vocab_size": 49152, "tie_word_embeddings": true}"#;
    Config::from_json("smollm2/config.json", json).expect("config")
}

const Q4_1: Blocks = Blocks {
    o_proj: 32,
    down: 32,
};

#[test]
fn shares_follow_the_weights_and_cover_every_unit() {
    assert_eq!(shares(3, &[2.0, 1.0]).unwrap(), vec![0..2, 2..3]);
    assert_eq!(
        shares(30, &[1.0, 1.0, 1.0]).unwrap(),
        vec![0..10, 10..20, 20..30]
    );
    // Ties in what rounding leaves go to the earlier adapter.
    assert_eq!(shares(4, &[1.0, 1.0, 1.0]).unwrap(), vec![0..2, 2..3, 3..4]);
    for (units, weights) in [
        (48usize, vec![2.0, 1.0]),
        (1000, vec![0.3, 5.0, 1.7]),
        (7, vec![1.0; 7]),
    ] {
        let r = shares(units, &weights).unwrap();
        assert_eq!(r.first().unwrap().start, 0);
        assert_eq!(r.last().unwrap().end, units);
        let total: f64 = weights.iter().sum();
        for (i, s) in r.iter().enumerate() {
            assert!(
                !s.is_empty(),
                "{units} by {weights:?}: adapter {i} got nothing"
            );
            if i > 0 {
                assert_eq!(r[i - 1].end, s.start, "contiguous");
            }
            let want = units as f64 * weights[i] / total;
            assert!(
                (s.len() as f64 - want).abs() <= 1.5,
                "{units} by {weights:?}: {r:?}"
            );
        }
    }
    let err = shares(2, &[1.0, 1.0, 1.0]).unwrap_err().to_string();
    assert!(
        err.contains("2 units") && err.contains("3 adapters"),
        "{err}"
    );
    let err = shares(8, &[1.0, 0.0]).unwrap_err().to_string();
    assert!(err.contains("not a positive number"), "{err}");
}

#[test]
fn tensor_parallel_divides_heads_hidden_units_and_vocabulary_by_weight() {
    let c = smollm2();
    let Placement::Tensor(shards) = Placement::tensor(&c, &[2.0, 1.0], Q4_1).unwrap() else {
        panic!("tensor placement")
    };
    assert_eq!(
        shards[0],
        Shard {
            kv_heads: 0..2,
            heads: 0..6,
            ffn: 0..1024,
            vocab: 0..32768
        }
    );
    assert_eq!(
        shards[1],
        Shard {
            kv_heads: 2..3,
            heads: 6..9,
            ffn: 1024..1536,
            vocab: 32768..49152
        }
    );
    // Three equal adapters: a KV head each.
    let Placement::Tensor(shards) = Placement::tensor(&c, &[1.0; 3], Q4_1).unwrap() else {
        panic!("tensor placement")
    };
    let heads: Vec<_> = shards.iter().map(|s| s.heads.clone()).collect();
    assert_eq!(heads, vec![0..3, 3..6, 6..9]);
    assert!(
        shards
            .iter()
            .all(|s| s.ffn.start % 32 == 0 && s.ffn.len() == 512)
    );
}

#[test]
fn placements_that_cannot_be_made_are_refused_by_name() {
    let c = smollm2();
    let err = Placement::tensor(&c, &[1.0; 4], Q4_1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("4 adapters") && err.contains("3 KV heads"),
        "{err}"
    );
    // A Q4_K o_proj has 256-weight blocks: 192 columns per KV head cannot be cut.
    let k = Blocks {
        o_proj: 256,
        down: 256,
    };
    let err = Placement::tensor(&c, &[1.0, 1.0], k)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("256-weight blocks") && err.contains("KV head"),
        "{err}"
    );
    let err = Placement::layers(30, &[1.0; 31]).unwrap_err().to_string();
    assert!(
        err.contains("31 adapters") && err.contains("30 layers"),
        "{err}"
    );
    let err = Split::parse("rows").unwrap_err().to_string();
    assert!(err.contains("'rows'"), "{err}");
    assert_eq!(Split::parse("layers").unwrap(), Split::Layers);
}

#[test]
fn layers_go_out_contiguously_by_weight() {
    assert_eq!(
        Placement::layers(30, &[2.0, 1.0]).unwrap(),
        Placement::Layers(vec![0..20, 20..30])
    );
    assert_eq!(
        Placement::layers(30, &[1.0, 1.0, 1.0]).unwrap(),
        Placement::Layers(vec![0..10, 10..20, 20..30])
    );
}

/// A (n, k) matrix of `dtype` as a file stores it, and its values.
fn stored(dtype: DType, n: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
    let x: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919 % 1013) as f32 / 506.0 - 1.0) * 0.5)
        .collect();
    let bytes = if dtype.block().is_some() {
        quantize(dtype, &x, k).unwrap()
    } else {
        dtype.from_f32(&x)
    };
    let values = dequantize_file(dtype, &bytes);
    (bytes, values)
}

#[test]
fn slices_of_stored_weights_hold_the_same_values() {
    for dtype in DType::ALL {
        let b = dtype.block_elems();
        let (n, k) = (5, 3 * 256);
        let (bytes, values) = stored(dtype, n, k);
        let rows = slice::rows(&bytes, dtype, [n, k], 1..4).unwrap();
        assert_eq!(
            dequantize_file(dtype, rows),
            values[k..4 * k],
            "{dtype} rows"
        );
        let cols = 256..768;
        let got = dequantize_file(
            dtype,
            &slice::columns(&bytes, dtype, [n, k], cols.clone()).unwrap(),
        );
        let want: Vec<f32> = (0..n)
            .flat_map(|r| values[r * k + cols.start..r * k + cols.end].to_vec())
            .collect();
        assert_eq!(got, want, "{dtype} columns {cols:?}");
        if b > 1 {
            let err = slice::columns(&bytes, dtype, [n, k], 0..b / 2)
                .unwrap_err()
                .to_string();
            assert!(err.contains("cut") && err.contains(dtype.name()), "{err}");
        }
        let err = slice::rows(&bytes[1..], dtype, [n, k], 0..1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bytes"), "{err}");
        let err = slice::rows(&bytes, dtype, [n, k], 3..6)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside"), "{err}");
    }
}

/// The Llama family's cut rule: each shard's rows of q/k/v, gate and up and its columns of
/// o_proj and down follow its placement, and the shards' cuts tile each tensor; the
/// embedding and lm_head are cut to the shard's vocabulary rows, the norms are whole.
#[test]
fn a_llama_shard_loads_its_heads_hidden_units_and_vocabulary() {
    use kiln::load::Cut;
    let c = smollm2();
    let Placement::Tensor(shards) = Placement::tensor(&c, &[2.0, 1.0], Q4_1).unwrap() else {
        panic!("tensor placement")
    };
    let cut = |s: &Shard, name: &str| llama_cut(&c, s, name);
    let l = |n: &str| format!("model.layers.7.{n}");
    // Shard 0: KV heads 0..2 (query heads 0..6), hidden units 0..1024, ids 0..32768.
    let s0 = &shards[0];
    assert_eq!(
        cut(s0, &l("self_attn.q_proj.weight")),
        Some(Cut::Rows(0..384))
    );
    assert_eq!(
        cut(s0, &l("self_attn.k_proj.weight")),
        Some(Cut::Rows(0..128))
    );
    assert_eq!(
        cut(s0, &l("self_attn.v_proj.bias")),
        Some(Cut::Rows(0..128))
    );
    assert_eq!(
        cut(s0, &l("self_attn.o_proj.weight")),
        Some(Cut::Columns(0..384))
    );
    assert_eq!(cut(s0, &l("mlp.up_proj.weight")), Some(Cut::Rows(0..1024)));
    assert_eq!(
        cut(s0, &l("mlp.down_proj.weight")),
        Some(Cut::Columns(0..1024))
    );
    for name in ["lm_head.weight", "model.embed_tokens.weight"] {
        assert_eq!(cut(s0, name), Some(Cut::Rows(0..32768)), "{name}");
        assert_eq!(
            cut(&shards[1], name),
            Some(Cut::Rows(32768..49152)),
            "{name}"
        );
    }
    // One shard of all the vocabulary loads those whole.
    let all = Shard {
        vocab: 0..c.vocab,
        ..s0.clone()
    };
    assert_eq!(cut(&all, "lm_head.weight"), None);
    // Replicated on every adapter.
    for s in &shards {
        assert_eq!(cut(s, "model.norm.weight"), None);
    }
    assert_eq!(cut(s0, &l("input_layernorm.weight")), None);
    // The shards' cuts tile each split tensor, in order.
    let full = [
        ("self_attn.q_proj.weight", c.heads * c.head_dim),
        ("self_attn.k_proj.weight", c.kv_heads * c.head_dim),
        ("self_attn.o_proj.weight", c.heads * c.head_dim),
        ("mlp.gate_proj.weight", c.ffn),
        ("mlp.down_proj.weight", c.ffn),
    ];
    for (name, len) in full {
        let mut at = 0;
        for s in &shards {
            let r = match cut(s, &l(name)) {
                Some(Cut::Rows(r) | Cut::Columns(r)) => r,
                other => panic!("{name}: {other:?}"),
            };
            assert_eq!(r.start, at, "{name}");
            at = r.end;
        }
        assert_eq!(at, len, "{name} covered");
    }
}
