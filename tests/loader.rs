//! The safetensors loader: round trips through every adapter, sharded checkpoints, tensors
//! split across bindings, progress, and every kind of bad file, each of which must give an
//! error naming the file (and the tensor, where there is one), never a panic.

mod common;

use common::*;
use kiln::DType;
use kiln::load::{Checkpoint, Cut, LoadOptions};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A safetensors file from raw parts: 8-byte length, header JSON, data.
fn raw_file(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

/// A well-formed file written by the reference `safetensors` crate.
fn good_file(dir: &Path, name: &str, tensors: &[(&str, DType, Vec<usize>, Vec<f32>)]) -> PathBuf {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, d, _, v)| d.from_f32(v)).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, d, s, _), b)| {
            let dt = match d {
                DType::F32 => Dtype::F32,
                DType::F16 => Dtype::F16,
                DType::BF16 => Dtype::BF16,
                other => panic!("safetensors holds no {other}"),
            };
            (
                n.to_string(),
                TensorView::new(dt, s.clone(), b).expect("view"),
            )
        })
        .collect();
    let p = dir.join(name);
    safetensors::serialize_to_file(views, None, &p).expect("serialize");
    p
}

fn open_err(path: &Path) -> String {
    match Checkpoint::open(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} does not mention {p:?}");
    }
}

#[test]
fn round_trip_every_dtype_on_every_adapter_with_progress() {
    let dir = tmpdir("roundtrip");
    let mut rng = Rng::new(42);
    let tensors: Vec<(&str, DType, Vec<usize>, Vec<f32>)> = vec![
        (
            "a.weight",
            DType::F32,
            vec![7, 13],
            rounded(&rng.uniform(91, 2.0), DType::F32),
        ),
        (
            "b.weight",
            DType::F16,
            vec![5, 3],
            rounded(&rng.uniform(15, 2.0), DType::F16),
        ),
        (
            "c.bias",
            DType::BF16,
            vec![11],
            rounded(&rng.uniform(11, 2.0), DType::BF16),
        ),
    ];
    let path = good_file(&dir, "model.safetensors", &tensors);
    let ckpt = Checkpoint::open(&dir).expect("open folder");
    assert_eq!(ckpt.tensors().count(), 3);
    for gpu in gpus() {
        let seen = RefCell::new(Vec::new());
        let options = LoadOptions {
            progress: Some(Box::new(|p| {
                seen.borrow_mut().push((p.bytes_done, p.bytes_total))
            })),
            ..Default::default()
        };
        let weights = pollster::block_on(ckpt.upload(gpu, options)).expect("upload");
        for (name, dtype, shape, values) in &tensors {
            let t = weights.get_shaped(name, shape).expect("tensor");
            assert_eq!(t.dtype(), *dtype);
            let back = pollster::block_on(t.to_f32(gpu)).expect("read back");
            assert_eq!(&back, values, "{name} on {}", label(gpu));
        }
        let seen = seen.into_inner();
        let total = ckpt.data_bytes();
        assert!(
            seen.windows(2).all(|w| w[0].0 <= w[1].0),
            "progress never goes back"
        );
        assert_eq!(
            seen.last().copied(),
            Some((total, total)),
            "progress ends at the total"
        );
        let err = weights
            .get_shaped("a.weight", &[13, 7])
            .err()
            .expect("wrong shape")
            .to_string();
        assert_mentions(&err, &["a.weight", "[7, 13]", "[13, 7]"]);
        let err = weights
            .get("missing.weight")
            .err()
            .expect("missing")
            .to_string();
        assert_mentions(&err, &["missing.weight", "missing"]);
    }
    let _ = path;
}

/// An adapter's share of a model split across several: rows, columns or none of a tensor,
/// cut before upload, recoded after; cuts that cannot be made are errors naming the tensor.
#[test]
fn cuts_upload_only_an_adapters_share() {
    let dir = tmpdir("cuts");
    let mut rng = Rng::new(9);
    let a = rounded(&rng.uniform(6 * 8, 1.0), DType::F32);
    let b = rounded(&rng.uniform(5 * 64, 1.0), DType::F16);
    let c = rounded(&rng.uniform(6, 1.0), DType::BF16);
    let tensors: Vec<(&str, DType, Vec<usize>, Vec<f32>)> = vec![
        ("a.weight", DType::F32, vec![6, 8], a.clone()),
        ("b.weight", DType::F16, vec![5, 64], b.clone()),
        ("c.bias", DType::BF16, vec![6], c.clone()),
        ("d.weight", DType::F32, vec![2, 2], vec![1.0; 4]),
    ];
    good_file(&dir, "model.safetensors", &tensors);
    let ckpt = Checkpoint::open(&dir).expect("open folder");
    let cut = |name: &str, _: &[usize]| match name {
        "a.weight" => Some(Cut::Rows(2..5)),
        "b.weight" => Some(Cut::Columns(32..64)),
        "c.bias" => Some(Cut::Rows(1..3)),
        "d.weight" => Some(Cut::Skip),
        _ => None,
    };
    for gpu in gpus() {
        let options = LoadOptions {
            cut: Some(Box::new(cut)),
            // Recoding sees the cut: b's 32 columns are one Q8_0 block per row.
            dtype: Some(DType::Q8_0),
            ..Default::default()
        };
        let w = pollster::block_on(ckpt.upload(gpu, options)).expect("upload");
        // Each cut tensor is checked against the whole shape, and knows where it sits.
        let read = |name: &str, shape: &[usize]| {
            let t = w.get(name).expect("cut tensor");
            assert_eq!(t.shape(), shape, "{name}");
            let whole = t.slice().expect("a slice").whole.clone();
            w.get_shaped(name, &whole).expect("whole shape");
            pollster::block_on(t.to_f32(gpu)).expect("read back")
        };
        let what = label(gpu);
        // Rows 2..5 of a (F32 stays F32: its 8-wide rows are not whole Q8_0 blocks).
        assert_eq!(read("a.weight", &[3, 8]), a[16..40], "a on {what}");
        let want_b: Vec<f32> = (0..5)
            .flat_map(|r| b[r * 64 + 32..r * 64 + 64].to_vec())
            .collect();
        let got_b = read("b.weight", &[5, 32]);
        assert_eq!(w.get("b.weight").unwrap().dtype(), DType::Q8_0);
        assert_close(
            &got_b,
            &want_b,
            1e-2,
            0.0,
            &format!("b's columns on {what}"),
        );
        assert_eq!(read("c.bias", &[2]), c[1..3], "c on {what}");
        let slice = |name: &str| w.get(name).ok().and_then(|t| t.slice().cloned());
        let a_slice = slice("a.weight").expect("a's slice");
        assert_eq!(
            (a_slice.axis, a_slice.range, a_slice.whole),
            (0, 2..5, vec![6, 8])
        );
        let b_slice = slice("b.weight").expect("b's slice");
        assert_eq!(
            (b_slice.axis, b_slice.range, b_slice.whole),
            (1, 32..64, vec![5, 64])
        );
        let e = w
            .get_shaped("a.weight", &[3, 8])
            .err()
            .expect("not the whole shape");
        assert_mentions(&e.to_string(), &["a.weight", "[6, 8]", "[3, 8]"]);
        let err = w.get("d.weight").err().expect("skipped").to_string();
        assert_mentions(&err, &["d.weight", "not placed on this adapter"]);
    }
    // Cuts that cannot be made.
    let Some(gpu) = gpus().first() else { return };
    for (bad, words) in [
        (Cut::Rows(4..9), vec!["a.weight", "outside"]),
        (Cut::Columns(0..3), vec!["c.bias", "no columns"]),
    ] {
        let name = if matches!(bad, Cut::Rows(_)) {
            "a.weight"
        } else {
            "c.bias"
        };
        let rule = bad.clone();
        let options = LoadOptions {
            cut: Some(Box::new(move |n: &str, _: &[usize]| {
                (n == name).then(|| rule.clone())
            })),
            ..Default::default()
        };
        let Err(err) = pollster::block_on(ckpt.upload(gpu, options)) else {
            panic!("{bad:?} was accepted");
        };
        let err = err.to_string();
        assert_mentions(&err, &words);
    }
}

#[test]
fn a_tensor_larger_than_a_binding_is_split_into_parts() {
    let dir = tmpdir("split");
    let mut rng = Rng::new(3);
    let values = rng.uniform(100 * 9, 1.0);
    good_file(
        &dir,
        "model.safetensors",
        &[("big", DType::F32, vec![100, 9], values.clone())],
    );
    let ckpt = Checkpoint::open(dir.join("model.safetensors")).expect("open");
    for gpu in gpus() {
        // Parts of at most 10 rows (360 bytes) stand in for the device's binding limit.
        let options = LoadOptions {
            max_part_bytes: Some(360),
            ..Default::default()
        };
        let weights = pollster::block_on(ckpt.upload(gpu, options)).expect("upload");
        let t = weights.get("big").expect("big");
        assert_eq!(t.parts().len(), 10);
        assert!(t.parts().iter().all(|p| p.buffer.size() <= 360));
        assert_eq!(pollster::block_on(t.to_f32(gpu)).expect("read"), values);
    }
    // A single row that cannot fit one binding is a clear error.
    let err = kiln::Tensor::plan_parts("wide", &[2, 1000], DType::F32, 1024)
        .err()
        .expect("too wide");
    assert_mentions(&err.to_string(), &["wide", "4000 bytes", "1024"]);
}

#[test]
fn tensors_of_other_dtypes_are_skipped_with_a_reason() {
    let dir = tmpdir("i64");
    let header = r#"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#;
    let mut data = vec![0u8; 16];
    data.extend(1.5f32.to_le_bytes());
    data.extend(2.5f32.to_le_bytes());
    raw_file(&dir, "m.safetensors", header, &data);
    let ckpt = Checkpoint::open(dir.join("m.safetensors")).expect("open");
    for gpu in gpus() {
        let weights = pollster::block_on(ckpt.upload(gpu, LoadOptions::default())).expect("upload");
        assert_eq!(
            pollster::block_on(weights.get("w").expect("w").to_f32(gpu)).expect("read"),
            vec![1.5, 2.5]
        );
        let err = weights.get("ids").err().expect("skipped").to_string();
        assert_mentions(&err, &["ids", "I64", "not uploaded"]);
    }
}

#[test]
fn sharded_checkpoints_load_through_the_index() {
    let dir = tmpdir("sharded");
    good_file(
        &dir,
        "model-00001-of-00002.safetensors",
        &[("x", DType::F32, vec![2], vec![1.0, 2.0])],
    );
    good_file(
        &dir,
        "model-00002-of-00002.safetensors",
        &[("y", DType::F16, vec![3], vec![3.0, 4.0, 5.0])],
    );
    let index = r#"{"metadata":{"total_size":14},"weight_map":{"x":"model-00001-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), index).expect("index");
    let ckpt = Checkpoint::open(&dir).expect("sharded");
    let names: Vec<&str> = ckpt.tensors().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["x", "y"]);
    assert_eq!(ckpt.bytes("y").expect("y").len(), 6);

    // The index places a tensor in a shard that does not hold it.
    let lying = r#"{"weight_map":{"x":"model-00002-of-00002.safetensors"}}"#;
    let p = dir.join("lying.index.json");
    std::fs::write(&p, lying).expect("write");
    assert_mentions(
        &open_err(&p),
        &[
            "lying.index.json",
            "'x'",
            "model-00002-of-00002.safetensors",
        ],
    );

    // A shard named by the index is missing.
    let missing = r#"{"weight_map":{"x":"model-00003-of-00003.safetensors"}}"#;
    let p = dir.join("missing.index.json");
    std::fs::write(&p, missing).expect("write");
    assert_mentions(&open_err(&p), &["model-00003-of-00003.safetensors"]);

    // The same tensor in two shards.
    good_file(
        &dir,
        "dup-a.safetensors",
        &[("z", DType::F32, vec![1], vec![1.0])],
    );
    good_file(
        &dir,
        "dup-b.safetensors",
        &[("z", DType::F32, vec![1], vec![2.0])],
    );
    let dup = r#"{"weight_map":{"z":"dup-a.safetensors","w":"dup-b.safetensors"}}"#;
    let p = dir.join("dup.index.json");
    std::fs::write(&p, dup).expect("write");
    assert_mentions(
        &open_err(&p),
        &["'z'", "dup-a.safetensors", "dup-b.safetensors"],
    );
}

#[test]
fn bad_files_get_clear_errors_naming_file_and_tensor() {
    let dir = tmpdir("bad");
    let f32x2 = [1.0f32, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>();
    let ok = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

    // A good file cut short: the data no longer covers the offsets.
    let p = raw_file(&dir, "truncated.safetensors", ok, &f32x2[..5]);
    assert_mentions(
        &open_err(&p),
        &["truncated.safetensors", "'w'", "truncated"],
    );

    // Shorter than the 8-byte length prefix.
    let p = dir.join("tiny.safetensors");
    std::fs::write(&p, [1u8, 2, 3]).expect("write");
    assert_mentions(&open_err(&p), &["tiny.safetensors", "3 bytes", "too short"]);

    // A header length beyond the end of the file.
    let p = dir.join("longheader.safetensors");
    let mut bytes = 5000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&p, bytes).expect("write");
    assert_mentions(
        &open_err(&p),
        &["longheader.safetensors", "5000", "past the end"],
    );

    // An absurd header length.
    let p = dir.join("huge.safetensors");
    std::fs::write(&p, u64::MAX.to_le_bytes()).expect("write");
    assert_mentions(&open_err(&p), &["huge.safetensors", "limit"]);

    // Offsets beyond the data.
    let h = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let p = raw_file(&dir, "oob.safetensors", h, &f32x2);
    assert_mentions(&open_err(&p), &["oob.safetensors", "'w'", "past the end"]);

    // Two tensors over the same bytes.
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let p = raw_file(&dir, "overlap.safetensors", h, &f32x2);
    assert_mentions(
        &open_err(&p),
        &["overlap.safetensors", "'b'", "overlaps", "'a'"],
    );

    // An unknown dtype.
    let h = r#"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#;
    let p = raw_file(&dir, "dtype.safetensors", h, &f32x2);
    assert_mentions(
        &open_err(&p),
        &["dtype.safetensors", "'w'", "unknown dtype 'Q4'"],
    );

    // Shape and bytes disagree.
    let h = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    let p = raw_file(&dir, "mismatch.safetensors", h, &f32x2);
    assert_mentions(
        &open_err(&p),
        &["mismatch.safetensors", "'w'", "12 bytes", "span 8"],
    );

    // The same name twice.
    let h = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let p = raw_file(&dir, "dup.safetensors", h, &f32x2);
    assert_mentions(&open_err(&p), &["dup.safetensors", "'w'", "twice"]);

    // Not JSON at all.
    let p = raw_file(&dir, "garbage.safetensors", "{not json", &f32x2);
    assert_mentions(&open_err(&p), &["garbage.safetensors", "JSON"]);

    // Bytes that no tensor claims.
    let h = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let p = raw_file(&dir, "gap.safetensors", h, &f32x2);
    assert_mentions(&open_err(&p), &["gap.safetensors", "'w'", "unclaimed"]);
    let h = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let p = raw_file(&dir, "trailing.safetensors", h, &f32x2);
    assert_mentions(&open_err(&p), &["trailing.safetensors", "4 bytes follow"]);

    // A shape with a negative or fractional dimension.
    let h = r#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#;
    let p = raw_file(&dir, "negative.safetensors", h, &f32x2);
    assert_mentions(&open_err(&p), &["negative.safetensors", "'w'", "shape"]);

    // A file that does not exist.
    assert_mentions(
        &open_err(&dir.join("absent.safetensors")),
        &["absent.safetensors"],
    );
}

#[test]
fn garbage_headers_never_panic() {
    // Seeded random bytes after a plausible length prefix: every outcome is Ok or a clean Err.
    let mut rng = Rng::new(1234);
    for case in 0..300 {
        let n = 2 + rng.below(64) as usize;
        let mut json: Vec<u8> =
            b"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}".to_vec();
        json.truncate(n.min(json.len()));
        for _ in 0..rng.below(4) {
            let i = rng.below(json.len() as u32) as usize;
            json[i] = rng.below(256) as u8;
        }
        let text_len = json.len() as u64;
        let mut file = text_len.to_le_bytes().to_vec();
        file.extend(&json);
        file.extend(vec![0u8; rng.below(16) as usize]);
        let n = kiln::load::safetensors::header_len("fuzz", &file, file.len() as u64);
        if let Ok(n) = n {
            let _ = kiln::load::safetensors::parse_header(
                "fuzz",
                &file[8..8 + n as usize],
                file.len() as u64,
            );
        }
        let _ = case;
    }
}

#[test]
fn streamed_files_upload_the_same_in_any_chunking() {
    let dir = tmpdir("stream");
    let mut rng = Rng::new(9);
    let tensors: Vec<(&str, DType, Vec<usize>, Vec<f32>)> = vec![
        (
            "a",
            DType::F32,
            vec![7, 13],
            rounded(&rng.uniform(91, 2.0), DType::F32),
        ),
        (
            "b",
            DType::F16,
            vec![5, 3],
            rounded(&rng.uniform(15, 2.0), DType::F16),
        ),
        (
            "c",
            DType::BF16,
            vec![11],
            rounded(&rng.uniform(11, 2.0), DType::BF16),
        ),
        ("empty", DType::F32, vec![0, 4], vec![]),
    ];
    let path = good_file(&dir, "m.safetensors", &tensors);
    let bytes = std::fs::read(&path).expect("read");
    for gpu in gpus() {
        for (case, max_part) in [(0u64, None), (1, Some(120)), (2, None)] {
            let options = kiln::load::LoadOptions {
                max_part_bytes: max_part,
                ..Default::default()
            };
            let mut loader =
                kiln::load::StreamLoader::new(gpu, "stream", bytes.len() as u64, options);
            let mut at = 0;
            while at < bytes.len() {
                // Chunks of 1..40 bytes, or everything at once in case 2.
                let n = if case == 2 {
                    bytes.len()
                } else {
                    1 + rng.below(40) as usize
                };
                let end = (at + n).min(bytes.len());
                pollster::block_on(loader.push(&bytes[at..end])).expect("push");
                at = end;
            }
            let weights = pollster::block_on(loader.finish()).expect("finish");
            for (name, _, shape, values) in &tensors {
                let t = weights.get_shaped(name, shape).expect("tensor");
                if max_part.is_some() && *name == "a" {
                    assert!(t.parts().len() > 1, "split into parts");
                }
                let back = pollster::block_on(t.to_f32(gpu)).expect("read");
                assert_eq!(&back, values, "{name} case {case} on {}", label(gpu));
            }
        }
        // A stream that ends early names where it stopped; one that runs long is refused.
        let mut loader =
            kiln::load::StreamLoader::new(gpu, "short", bytes.len() as u64, Default::default());
        pollster::block_on(loader.push(&bytes[..bytes.len() - 30])).expect("push");
        let e = pollster::block_on(loader.finish())
            .err()
            .expect("short")
            .to_string();
        assert_mentions(&e, &["short", "ended after", "truncated"]);
        let mut loader =
            kiln::load::StreamLoader::new(gpu, "long", bytes.len() as u64, Default::default());
        pollster::block_on(loader.push(&bytes)).expect("push");
        let e = pollster::block_on(loader.push(&[0]))
            .err()
            .expect("long")
            .to_string();
        assert_mentions(&e, &["long", "more than the announced"]);
        // A lying header is caught as soon as it is complete.
        let mut loader = kiln::load::StreamLoader::new(gpu, "lying", 20, Default::default());
        let e = pollster::block_on(loader.push(&bytes[..20]))
            .err()
            .expect("lying")
            .to_string();
        assert_mentions(&e, &["lying", "past the end"]);
        // Converting formats is not done while streaming: refused, not ignored.
        let options = kiln::load::LoadOptions {
            dtype: Some(DType::Q8_0),
            ..Default::default()
        };
        let mut loader = kiln::load::StreamLoader::new(gpu, "recode", bytes.len() as u64, options);
        let e = pollster::block_on(loader.push(&bytes))
            .err()
            .expect("refused")
            .to_string();
        assert_mentions(&e, &["recode", "Q8_0", "not supported"]);
    }
}
