//! `kiln bench`'s kernel suite and its outputs: the JSON of the documented schema, the CSV,
//! and `--compare`, from one small sweep on the default adapter.

mod common;

use common::*;
use kiln::bench::record::{Bound, Results, SCHEMA};

/// One sweep at SmolLM2-135M's shapes in Q4_0 and Q4_K (stored as Q5_0 where rows are 576
/// wide, not whole 256-weight blocks): every matrix's GEMV, every layer matrix's GEMM, attention
/// at each context, every figure set against the roofline measured in the same run, and
/// the same numbers in the table, the JSON and the CSV. Comparing the JSON with itself
/// changes nothing.
#[test]
fn kernel_sweep_writes_json_csv_and_compares() {
    if gpus().is_empty() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kiln-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (json, csv) = (dir.join("b.json"), dir.join("b.csv"));
    let (json_s, csv_s) = (json.to_str().expect("utf-8"), csv.to_str().expect("utf-8"));
    let (code, out, err) = kiln_cli(&[
        "bench",
        "--sweep",
        "smollm2-135m",
        "--dtype",
        "q4_0,q4_k",
        "--json",
        json_s,
        "--csv",
        csv_s,
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&json).expect("json written");
    check_bench_schema(&text);
    let r = Results::parse(&text).expect("results parse");
    assert_eq!(r.schema, SCHEMA);
    assert_eq!(r.host.runtime, "native");
    assert!(r.date.ends_with('Z') && r.date.len() == 20, "{}", r.date);
    let [a] = &r.adapters[..] else {
        panic!("one adapter expected, got {}", r.adapters.len())
    };
    assert!(!a.adapter.name.is_empty());
    assert!(a.adapter.limits["maxStorageBufferBindingSize"].as_u64() > Some(0));
    let names: Vec<&str> = a.kernels.iter().map(|k| k.name.as_str()).collect();
    let mut want = vec![
        "copy vec4 wg256 32 MiB".to_string(),
        "read vec4 32 MiB".into(),
        "fma f32".into(),
        "empty dispatch".into(),
        "readback 4 B".into(),
    ];
    // (matrix, MxKxN of one row) at SmolLM2-135M's shape.
    let matrices = [
        ("attn_q", 576, 576),
        ("attn_kv", 576, 192),
        ("ffn_up", 576, 1536),
        ("ffn_down", 1536, 576),
        ("head", 576, 49152),
    ];
    for (m, k, n) in matrices {
        // Q4_K where 256-weight blocks divide the rows, else the Q5_0 it falls back to.
        let q4k = if k % 256 == 0 { "Q4_K" } else { "Q5_0" };
        for d in ["Q4_0", q4k] {
            want.push(format!("gemv {d} smollm2-135m {m} 1x{k}x{n}"));
            if m != "head" {
                want.push(format!("gemm {d} smollm2-135m {m} 128x{k}x{n}"));
            }
        }
    }
    for c in [256, 1024, 4096] {
        want.push(format!("attention decode smollm2-135m c{c}"));
    }
    want.push("attention prefill smollm2-135m t128".into());
    for w in &want {
        assert!(names.contains(&w.as_str()), "{w} missing from {names:?}");
        assert!(
            out.contains(w.as_str()),
            "{w} missing from the table\n{out}"
        );
    }
    use kiln::bench::Group;
    let swept = a
        .kernels
        .iter()
        .filter(|k| matches!(k.group, Group::Gemv | Group::Gemm | Group::Attention))
        .count();
    assert_eq!(swept, want.len() - 5, "{names:?}");
    // What each figure counts follows from the shape in its name, independently of the
    // code that counted it: a matmul does 2 M K N FLOPs, a GEMV reads N x K weights in its
    // format, decode attention reads the K and V cache (SmolLM2: 3 KV heads of 64, f32).
    for k in &a.kernels {
        let words: Vec<&str> = k.name.split(' ').collect();
        if let ["gemv" | "gemm", dtype, _, _, shape] = words[..] {
            let d: Vec<usize> = shape
                .split('x')
                .map(|v| v.parse().expect("MxKxN"))
                .collect();
            let (m, kk, n) = (d[0], d[1], d[2]);
            assert_eq!(k.flops, (2 * m * kk * n) as f64, "{}", k.name);
            let dtype = kiln::DType::parse(dtype).expect("a dtype");
            assert_eq!(k.dtype.as_deref(), Some(dtype.name()), "{}", k.name);
            let bytes = if m == 1 {
                dtype.bytes(n * kk) as f64
            } else {
                0.0
            };
            assert_eq!(k.bytes, bytes, "{}", k.name);
        }
        if let Some(c) = k.name.strip_prefix("attention decode smollm2-135m c") {
            let c: usize = c.parse().expect("a context");
            assert_eq!(k.bytes, (2 * c * 3 * 64 * 4) as f64, "{}", k.name);
        }
    }
    // Each share recomputed from the figure and the roofline of the same run.
    let bw = a.roofline.bandwidth_gbps.expect("bandwidth roofline");
    let peak = a.roofline.f32_gflops.expect("f32 peak");
    for k in &a.kernels {
        let expect = match k.bound {
            Some(Bound::Bandwidth) => Some(100.0 * k.bytes / k.seconds / 1e9 / bw),
            Some(Bound::F32Fma) => Some(100.0 * k.flops / k.seconds / 1e9 / peak),
            None => None,
        };
        match (expect, k.percent_of_roofline) {
            (Some(e), Some(p)) => assert!((e - p).abs() < 1e-6 * e.max(1.0), "{}", k.name),
            (None, None) => {}
            other => panic!("{}: {other:?}", k.name),
        }
        assert!(k.seconds > 0.0 && k.wall_seconds > 0.0, "{}", k.name);
        if k.name.starts_with("gemv") {
            assert_eq!(k.bound, Some(Bound::Bandwidth), "{}", k.name);
        }
        if k.name.starts_with("gemm") || k.name.starts_with("attention prefill") {
            assert_eq!(k.bound, Some(Bound::F32Fma), "{}", k.name);
        }
    }
    // The roofline is the best of its candidates: one of them is at 100%.
    let best = a
        .kernels
        .iter()
        .filter(|k| k.name.starts_with("copy") || k.name.starts_with("read"))
        .filter_map(|k| k.percent_of_roofline)
        .fold(0.0f64, f64::max);
    assert!((best - 100.0).abs() < 1e-9, "{best}");

    let csv_text = std::fs::read_to_string(&csv).expect("csv written");
    let rows: Vec<&str> = csv_text.lines().collect();
    assert!(
        rows[0].starts_with("adapter,backend,kind,name,"),
        "{}",
        rows[0]
    );
    assert_eq!(rows.len(), 1 + a.kernels.len());
    assert!(
        rows.iter()
            .any(|r| r.contains(",gemv Q4_0 smollm2-135m head 1x576x49152,"))
    );

    let (code, out, err) = kiln_cli(&["bench", "--sweep", "none", "--compare", json_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| copy vec4 wg256 32 MiB |"), "{out}");
    assert!(
        out.contains("gemv Q4_0 smollm2-135m head 1x576x49152 (old only)"),
        "{out}"
    );

    // A file of another schema, or not of results at all, is refused by name.
    std::fs::write(&json, text.replace(SCHEMA, "kiln-bench/0")).expect("write");
    let (code, _, err) = kiln_cli(&["bench", "--sweep", "none", "--compare", json_s]);
    assert_eq!(code, 1);
    assert!(err.contains("schema 'kiln-bench/0'"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `KILN_BENCH_CLOCK=gpu` times the roofline kernels on the GPU's clock (timestamps around
/// their pass), wall time beside; fixed costs stay on the wall clock, which is what they
/// measure. An adapter without TIMESTAMP_QUERY keeps the wall clock.
#[test]
fn gpu_clock_times_the_rooflines_with_wall_time_beside() {
    let Some(gpu) = gpus().first() else { return };
    let dir = std::env::temp_dir().join(format!("kiln-clock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("c.json");
    let json_s = json.to_str().expect("utf-8");
    let (code, _, err) = kiln_cli_env(
        &[
            "bench",
            "--adapter",
            "0",
            "--sweep",
            "none",
            "--json",
            json_s,
        ],
        &[("KILN_BENCH_CLOCK", "gpu")],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&json).expect("json written");
    check_bench_schema(&text);
    let r = Results::parse(&text).expect("results");
    let stamps = gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    use kiln::bench::{Clock, Group};
    for k in &r.adapters[0].kernels {
        let want = match k.group {
            Group::Latency => Clock::Wall,
            _ if stamps => Clock::Gpu,
            _ => Clock::Wall,
        };
        assert_eq!(k.clock, want, "{}", k.name);
        assert!(k.seconds > 0.0 && k.wall_seconds > 0.0, "{}", k.name);
        if k.clock == Clock::Wall {
            assert_eq!(k.seconds, k.wall_seconds, "{}", k.name);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Results written and read back match the schema; they plot as SVG and PNG; comparing
/// them with themselves changes nothing, and a faster figure is called faster.
#[test]
fn comparing_results_with_themselves_changes_nothing() {
    let mut r = Results::new();
    let mut a = kiln::bench::record::AdapterResults {
        adapter: kiln::bench::record::Adapter {
            name: "made up".into(),
            vendor: 0,
            device: 0,
            driver: String::new(),
            driver_info: String::new(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            features: Vec::new(),
            limits: serde_json::json!({"maxBufferSize": 1024}),
        },
        roofline: Default::default(),
        kernels: Vec::new(),
        models: Vec::new(),
    };
    a.kernels.push(kiln::bench::record::Kernel {
        name: "copy 1 MiB".into(),
        group: kiln::bench::Group::Bandwidth,
        dtype: None,
        model: None,
        seconds: 1e-3,
        clock: kiln::bench::Clock::Wall,
        wall_seconds: 1e-3,
        bytes: 2e6,
        flops: 0.0,
        gbps: Some(2.0),
        gflops: None,
        bound: Some(Bound::Bandwidth),
        percent_of_roofline: Some(100.0),
    });
    r.adapters.push(a);
    check_bench_schema(&r.to_json());
    // The schema is strict: an unknown clock, or a field it does not know, breaks it.
    let mut broken: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
    broken["adapters"][0]["kernels"][0]["clock"] = "sundial".into();
    broken["host"]["moon"] = "full".into();
    let errors = bench_schema_errors(&broken.to_string());
    assert_eq!(errors.len(), 2, "{errors:?}");
    let again = Results::parse(&r.to_json()).expect("round trip");
    let text = kiln::bench::compare(&r, &again);
    assert!(
        text.contains("| copy 1 MiB | 2.00 GB/s | 2.00 GB/s | +0.0% (same) |"),
        "{text}"
    );
    // Plotted: each figure's row and the adapter in the legend, as SVG text; a PNG of the
    // size the rows need.
    let dir = std::env::temp_dir().join(format!("kiln-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut two = r.clone();
    two.adapters.push(again.adapters[0].clone());
    kiln::bench::plot(&two, &dir.join("p.svg")).expect("svg");
    let svg = std::fs::read_to_string(dir.join("p.svg")).expect("svg written");
    for want in [
        "copy 1 MiB",
        "made up (Vulkan, Cpu) #2",
        "the roofline (100%)",
        "100.0%",
    ] {
        assert!(svg.contains(want), "{want} missing from the SVG");
    }
    kiln::bench::plot(&two, &dir.join("p.png")).expect("png");
    let png = std::fs::read(dir.join("p.png")).expect("png written");
    assert_eq!(&png[1..4], b"PNG");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    assert_eq!(width, 1400);
    let e = kiln::bench::plot(&two, &dir.join("p.gif")).expect_err("not svg or png");
    assert!(e.to_string().contains(".svg or .png"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    let mut faster = again.clone();
    faster.adapters[0].kernels[0].gbps = Some(3.0);
    let text = kiln::bench::compare(&r, &faster);
    assert!(text.contains("+50.0% (faster)"), "{text}");
}
