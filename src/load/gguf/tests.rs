//! Unit tests of the GGUF reader: block layouts against ggml's, and malformed files.

use super::*;

fn h(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

#[test]
fn blocks_dequantise_like_ggml() {
    // Q8_0: d, then 32 signed bytes.
    let mut q8 = h(0.5).to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let want: Vec<f32> = (0..32).map(|i| 0.5 * (i as f32 - 16.0)).collect();
    assert_eq!(blocks::dequantize_file(DType::Q8_0, &q8), want);
    // Q4_0: d, then 16 bytes: low nibbles are elements 0..16, high nibbles 16..32, minus 8.
    let mut q4 = h(2.0).to_vec();
    q4.extend((0..16).map(|i| (i as u8) | ((15 - i as u8) << 4)));
    let got = blocks::dequantize_file(DType::Q4_0, &q4);
    assert_eq!(got[0], 2.0 * (0.0 - 8.0));
    assert_eq!(got[15], 2.0 * (15.0 - 8.0));
    assert_eq!(got[16], 2.0 * (15.0 - 8.0));
    assert_eq!(got[31], 2.0 * (0.0 - 8.0));
    // Q4_1: d, m, then nibbles: d * q + m.
    let mut q41 = h(0.25).to_vec();
    q41.extend(h(-1.0));
    q41.extend((0..16).map(|i| (i as u8) | (3 << 4)));
    let got = blocks::dequantize_file(DType::Q4_1, &q41);
    assert_eq!(got[5], 0.25 * 5.0 - 1.0);
    assert_eq!(got[20], 0.25 * 3.0 - 1.0);
    // F16, BF16, F32.
    assert_eq!(
        blocks::dequantize_file(DType::F16, &[h(1.5), h(-2.0)].concat()),
        [1.5, -2.0]
    );
    assert_eq!(
        blocks::dequantize_file(DType::BF16, &half::bf16::from_f32(3.0).to_le_bytes()),
        [3.0]
    );
    assert_eq!(
        blocks::dequantize_file(DType::F32, &7.0f32.to_le_bytes()),
        [7.0]
    );
}

/// A minimal GGUF: one string key, one F32 tensor of 4 values.
fn tiny() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata
    let s = |b: &mut Vec<u8>, t: &str| {
        b.extend((t.len() as u64).to_le_bytes());
        b.extend(t.as_bytes());
    };
    s(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    s(&mut b, "llama");
    s(&mut b, "w");
    b.extend(1u32.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend([1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()));
    b
}

#[test]
fn parses_and_rejects_truncation() {
    let b = tiny();
    let g = Gguf::parse("tiny.gguf", &b).expect("parse");
    assert_eq!(g.str("general.architecture").expect("arch"), "llama");
    let t = g.tensor("w").expect("w");
    assert_eq!(g.dequantize(t), [1.0, 2.0, 3.0, 4.0]);
    for cut in [3, 20, 60, b.len() - 1] {
        let e = Gguf::parse("tiny.gguf", &b[..cut])
            .err()
            .expect("truncated")
            .to_string();
        assert!(
            e.contains("tiny.gguf") && (e.contains("truncated") || e.contains("magic")),
            "{cut}: {e}"
        );
    }
    let e = g
        .u64("llama.block_count")
        .err()
        .expect("missing")
        .to_string();
    assert!(e.contains("'llama.block_count' is missing"), "{e}");
}

/// A header of `tensors` (count) and `meta` (count), then `body`, padded with zeros.
fn file(tensors: u64, meta: u64, body: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(tensors.to_le_bytes());
    b.extend(meta.to_le_bytes());
    b.extend(body);
    b.resize(b.len() + 64, 0);
    b
}

fn kv(key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
    let mut b = (key.len() as u64).to_le_bytes().to_vec();
    b.extend(key.as_bytes());
    b.extend(ty.to_le_bytes());
    b.extend(value);
    b
}

#[test]
fn counts_and_lengths_are_bounded_before_allocation() {
    let big = |n: usize| (n as u64 + 1).to_le_bytes();
    let array = [&0u32.to_le_bytes()[..], &big(MAX_ARRAY)].concat(); // u8 elements
    let cases = [
        (
            file(MAX_TENSORS as u64 + 1, 0, &[]),
            "tensor count 65537 is over kiln's limit of 65536",
        ),
        (
            file(0, MAX_METADATA as u64 + 1, &[]),
            "metadata count 65537 is over",
        ),
        (
            file(0, 1, &kv("k", 9, &array)),
            "array 'k' length 4194305 is over kiln's limit",
        ),
        (
            file(0, 1, &kv("k", 8, &big(MAX_STRING))),
            "k 16777217 is over kiln's limit",
        ),
        (
            file(
                0,
                2,
                &[kv("k", 4, &[1, 0, 0, 0]), kv("k", 4, &[2, 0, 0, 0])].concat(),
            ),
            "metadata 'k' appears twice",
        ),
        (
            // An array of one array (of u8): named as such, not as an unknown type.
            file(
                0,
                1,
                &kv("k", 9, &[&9u32.to_le_bytes()[..], &big(0)].concat()),
            ),
            "'k' is an array of arrays",
        ),
    ];
    for (bytes, expected) in cases {
        let e = Gguf::parse("x.gguf", &bytes)
            .err()
            .expect(expected)
            .to_string();
        assert!(e.contains(expected), "{e}");
    }
    // The same tensor listed twice.
    let mut b = tiny();
    let info = 4 + 4 + 8 + 8 + (8 + 20 + 4 + 8 + 5);
    let entry = b[info..info + 8 + 1 + 4 + 8 + 4 + 8].to_vec();
    b[8..16].copy_from_slice(&2u64.to_le_bytes());
    b.splice(info..info, entry);
    let e = Gguf::parse("x.gguf", &b).err().expect("twice").to_string();
    assert!(e.contains("'w'") && e.contains("appears twice"), "{e}");
}
