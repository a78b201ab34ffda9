//! Block-quantized weights: the CPU twin of every format's dequantization against the `gguf`
//! Python package's on random blocks, and the kernels that read blocks (GEMV, GEMM,
//! embedding) against that twin on every adapter, with weights split into parts at block
//! boundaries and sizes that are not multiples of the tiles.

mod common;

use common::*;
use kiln::dtype::blocks;
use kiln::kernels::{Gemm, Gemv, GemvTable};
use kiln::ops::{embedding as emb, matmul as mm};
use kiln::{DType, Feed, Gpu, Graph, Target};
use std::process::Command;

/// Byte offsets of the f16 scale fields in each ggml block (ggml-common.h's structs).
fn f16_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        other => panic!("{other} is not a block format"),
    }
}

/// `n` ggml blocks of random bytes, with finite scales of magnitude up to `scale`.
fn random_blocks(dtype: DType, n: usize, rng: &mut Rng, scale: f32) -> Vec<u8> {
    let size = dtype.block().unwrap().file_bytes;
    let mut out: Vec<u8> = (0..n * size).map(|_| rng.next_u64() as u8).collect();
    for b in 0..n {
        let d = rng.uniform(f16_fields(dtype).len(), scale);
        for (&at, v) in f16_fields(dtype).iter().zip(d) {
            let h = half::f16::from_f32(v).to_le_bytes();
            out[b * size + at..b * size + at + 2].copy_from_slice(&h);
        }
    }
    out
}

/// Run a gguf-package `op` (dequantize, or quantize f32 rows of `cols`) over `input`;
/// `None` when Python or the package is missing outside CI.
fn gguf_py(op: &str, dtype: DType, input: &[u8], cols: usize) -> Option<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("kiln-quant-{}-{op}-{dtype}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, dst) = (dir.join("in.bin"), dir.join("out.bin"));
    std::fs::write(&src, input).unwrap();
    let script = "import sys, numpy as np\n\
        from gguf.quants import dequantize, quantize\n\
        from gguf import GGMLQuantizationType as T\n\
        op, src, dst, t, cols = sys.argv[1:6]\n\
        if op == 'dequantize':\n\
        \x20   out = dequantize(np.fromfile(src, dtype=np.uint8), T[t]).astype(np.float32)\n\
        else:\n\
        \x20   out = quantize(np.fromfile(src, dtype=np.float32).reshape(-1, int(cols)), T[t])\n\
        out.tofile(dst)\n";
    let out = Command::new("python3")
        .args(["-c", script, op])
        .arg(&src)
        .arg(&dst)
        .arg(dtype.name())
        .arg(cols.to_string())
        .output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    if !ok {
        let why = match out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            !ci(),
            "CI=true and the gguf Python package did not run: {why}"
        );
        eprintln!("WARNING: gguf reference skipped (pip install gguf numpy): {why}");
        return None;
    }
    let raw = std::fs::read(&dst).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    Some(raw)
}

fn floats(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn every_format_dequantizes_like_the_gguf_package() {
    for dtype in DType::QUANTIZED {
        let mut rng = Rng::new(11);
        let bytes = random_blocks(dtype, 7, &mut rng, 2.0);
        let ours = blocks::dequantize_file(dtype, &bytes);
        let Some(theirs) = gguf_py("dequantize", dtype, &bytes, 0).map(|r| floats(&r)) else {
            return;
        };
        assert_eq!(ours.len(), theirs.len(), "{dtype}");
        // Both compute d * scale * q - m in f32; allow one rounding of difference.
        assert_close(
            &ours,
            &theirs,
            1e-6,
            1e-6,
            &format!("{dtype} against gguf-py"),
        );
    }
}

#[test]
fn quantizing_gives_ggml_reference_bytes() {
    let cols = 256;
    let mut rng = Rng::new(21);
    let mut x = rng.uniform(cols * 6, 1.0);
    // A zero block, and one whose largest magnitude is negative.
    x[..32].fill(0.0);
    x[32] = -3.0;
    for dtype in [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
    ] {
        let ours = kiln::dtype::quantize::quantize(dtype, &x, cols).expect("quantize");
        let input: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let Some(theirs) = gguf_py("quantize", dtype, &input, cols) else {
            return;
        };
        assert_eq!(ours.len(), theirs.len(), "{dtype}");
        let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ, 0,
            "{dtype}: {differ} bytes differ from gguf-py's quantize"
        );
    }
}

/// A block-quantized (n, k) weight on `gpu`, split into parts of `part_rows` rows, with its
/// dequantized values.
fn quant_weight(
    gpu: &Gpu,
    dtype: DType,
    n: usize,
    k: usize,
    part_rows: Option<usize>,
) -> HostWeight {
    let mut rng = Rng::new(5 + (n * k) as u64);
    let per_row = k / dtype.block_elems();
    // Scales ~ 1/16 keep products of O(1) quants with O(1) inputs near 1.
    let bytes = random_blocks(dtype, n * per_row, &mut rng, 1.0 / 16.0);
    let max_part = part_rows.map(|r| dtype.bytes(r * k) as u64);
    let tensor = pollster::block_on(async {
        let mut up = kiln::load::Uploader::new(gpu, max_part);
        let t = up.tensor("w", &[n, k], dtype, &bytes).await;
        up.finish().await;
        t
    })
    .expect("upload");
    if let Some(r) = part_rows {
        assert_eq!(
            tensor.parts().len(),
            n.div_ceil(r),
            "{dtype} split into parts"
        );
    }
    let values = blocks::dequantize_file(dtype, &bytes);
    let back = pollster::block_on(tensor.to_f32(gpu)).expect("read back");
    assert_close(
        &back,
        &values,
        0.0,
        0.0,
        &format!("{dtype}: the GPU holds what was uploaded"),
    );
    HostWeight { tensor, values }
}

/// GEMV (decode) and tiled GEMM (prefill) over every block format, forced either way; GEMV
/// in every configuration the adapter can run: f32 or 8-bit activations, lanes summed in
/// workgroup memory or by subgroup shuffles or one lane a column, three tile shapes.
#[test]
fn matmul_reads_every_block_format() {
    // (m, k, n, rows per part): k a multiple of 256 for the K-quants, and 768 crosses the
    // 8-bit GEMV's 512-element chunks; m = 11 spans two GEMV row blocks; n off every tile.
    for &(m, k, n, part) in &[
        (1, 512, 37, None),
        (3, 256, 45, Some(16)),
        (11, 768, 70, Some(32)),
        (37, 512, 29, Some(8)),
        (5, 576, 300, None),
        (5, 1536, 100, None),
    ] {
        for gpu in gpus() {
            for dtype in DType::QUANTIZED {
                if k % dtype.block_elems() != 0 {
                    continue;
                }
                let w = quant_weight(gpu, dtype, n, k, part);
                let x = Rng::new(3).uniform(m * k, 1.0);
                let g = Graph::new();
                let xi = g.input("x", m, k);
                let y = g.matmul(xi, g.weight(&w.tensor));
                g.output("y", y);
                let want = mm::matmul(&x, &w.values, m, n, k);
                let want_q8 = mm::matmul_q8(&x, &w.values, m, n, k);
                let t = Target::of(gpu);
                let mut runs = Vec::new();
                for gemm in Gemm::available(gpu) {
                    let target = Target {
                        gemv_max_rows: Some(0),
                        gemm,
                        ..t
                    };
                    runs.push((format!("gemm {gemm:?}"), target));
                }
                for cfg in gemv_configs(gpu) {
                    let target = Target {
                        gemv_max_rows: Some(usize::MAX),
                        gemv: GemvTable::uniform(cfg),
                        ..t
                    };
                    runs.push((format!("gemv {cfg:?}"), target));
                }
                for (kind, target) in runs {
                    let got = run_on(gpu, target, &g, &[("x", Feed::F32(&x))], &at(0, m));
                    let what = format!(
                        "{kind} {m}x{k}x{n} {dtype} parts {part:?} on {}",
                        label(gpu)
                    );
                    if target.gemv_max_rows != Some(0) && target.gemv.blocks[0].int8 {
                        // Against the twin that quantizes x the same way: f32 sums of k
                        // products of dequantized weights (|w| < 4) and |x| < 1, in another
                        // order.
                        assert_close(&got["y"], &want_q8, 1e-3, 1e-4, &what);
                        // And near the f32 product: each quantized x is within dx / 2 of x.
                        let bound = q8_error_bound(&x, &w.values, m, n, k);
                        for (i, ((g, f), b)) in got["y"].iter().zip(&want).zip(&bound).enumerate() {
                            assert!(
                                (g - f).abs() <= b + 1e-3,
                                "{what}: element {i}: {g} vs f32 {f}, bound {b}"
                            );
                        }
                    } else {
                        assert_close(&got["y"], &want, 1e-3, 1e-4, &what);
                    }
                }
            }
        }
    }
}

/// A bound on how far 8-bit activations can move y (m, n) = x . w^T: sum over k of
/// |w| dx / 2, with dx = max|x| / 127 over x's 32-element block (the kernel's own dx, which
/// leaves out the block's largest element, is at most that).
fn q8_error_bound(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let dx: Vec<f32> = x
        .chunks(32)
        .map(|b| b.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0)
        .collect();
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|l| w[j * k + l].abs() * dx[(i * k + l) / 32] / 2.0)
                .sum();
        }
    }
    out
}

/// Every GEMV configuration `gpu` can run, and another tile shape.
fn gemv_configs(gpu: &Gpu) -> Vec<Gemv> {
    let mut out = Vec::new();
    for subgroups in [false, true] {
        for int8 in [false, true] {
            out.push(Gemv {
                subgroups,
                int8,
                ..Gemv::DEFAULT
            });
        }
    }
    // One lane a column (nothing to sum: no workgroup memory), f32 or 8-bit activations.
    for int8 in [false, true] {
        out.push(Gemv {
            int8,
            ..Gemv::ONE_LANE
        });
    }
    // One lane a column, x read once per subgroup and broadcast (blocks widened to f32).
    out.push(Gemv::BLOCK_BROADCAST);
    // Another tile: two lanes a column, 16 columns a workgroup.
    out.push(Gemv {
        lanes: 2,
        rows: 16,
        subgroups: true,
        int8: true,
        ..Gemv::DEFAULT
    });
    out.retain(|c| c.fits(gpu));
    out
}

/// Float weights through every GEMV configuration too (int8 does not apply to them): rows of
/// a multiple of 4 (read as vectors) and of another length.
#[test]
fn gemv_sums_lanes_either_way_on_float_weights() {
    for (m, k, n) in [(5, 300, 77), (5, 301, 77), (9, 52, 130)] {
        for gpu in gpus() {
            let mut rng = Rng::new(9);
            let values = rng.uniform(n * k, 1.0);
            let tensor = pollster::block_on(kiln::load::upload_bytes(
                gpu,
                "w",
                &[n, k],
                DType::F32,
                &DType::F32.from_f32(&values),
            ))
            .expect("upload");
            let x = rng.uniform(m * k, 1.0);
            let g = Graph::new();
            let xi = g.input("x", m, k);
            let y = g.matmul(xi, g.weight(&tensor));
            g.output("y", y);
            let want = mm::matmul(&x, &values, m, n, k);
            for cfg in gemv_configs(gpu).into_iter().filter(|c| !c.int8) {
                let t = Target::of(gpu);
                let target = Target {
                    gemv_max_rows: Some(usize::MAX),
                    gemv: GemvTable::uniform(cfg),
                    ..t
                };
                let got = run_on(gpu, target, &g, &[("x", Feed::F32(&x))], &at(0, m));
                let what = format!("gemv {cfg:?} F32 {m}x{k}x{n} on {}", label(gpu));
                assert_close(&got["y"], &want, 1e-4, 1e-4, &what);
            }
        }
    }
}

#[test]
fn embedding_reads_every_block_format() {
    let (vocab, d) = (23, 256);
    let ids: Vec<u32> = vec![0, 22, 7, 7, 13, 1];
    for gpu in gpus() {
        for dtype in DType::QUANTIZED {
            let w = quant_weight(gpu, dtype, vocab, d, Some(5));
            let g = Graph::new();
            let idv = g.ids("ids", ids.len());
            let y = g.embedding(g.weight(&w.tensor), idv);
            g.output("y", y);
            let want = emb::embedding(&w.values, &ids, d);
            let got = run_on(
                gpu,
                Target::of(gpu),
                &g,
                &[("ids", Feed::Ids(&ids))],
                &at(0, ids.len()),
            );
            // A gather: exact.
            assert_close(
                &got["y"],
                &want,
                0.0,
                0.0,
                &format!("embedding {dtype} on {}", label(gpu)),
            );
        }
    }
}

#[test]
fn a_block_format_needs_whole_blocks_per_row() {
    let Some(gpu) = gpus().first() else { return };
    let bytes = vec![0u8; 2 * DType::Q8_0.block().unwrap().file_bytes];
    let err = pollster::block_on(kiln::load::upload_bytes(
        gpu,
        "w",
        &[4, 16],
        DType::Q8_0,
        &bytes,
    ))
    .expect_err("16 weights per row is half a Q8_0 block");
    let msg = err.to_string();
    assert!(
        msg.contains("'w'") && msg.contains("whole number of blocks"),
        "{msg}"
    );
}
