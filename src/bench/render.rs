//! Benchmark results drawn for people: markdown tables, CSV, and the change from an
//! earlier run.

use super::record::{AdapterResults, Bound, Kernel, Model, Results};
use crate::error::{Error, Result};
use std::fmt::Write;

/// A time in the unit that reads best.
fn time(seconds: f64) -> String {
    match seconds {
        s if s < 1e-3 => format!("{:.1} us", s * 1e6),
        s if s < 1.0 => format!("{:.3} ms", s * 1e3),
        s => format!("{s:.3} s"),
    }
}

/// What a kernel achieved: GB/s where it moves bytes, GFLOP/s where it computes, and for
/// GEMV the weights per second beside F32's at the same matrix.
fn rate(k: &Kernel, f32_rate: Option<f64>) -> String {
    let mut parts = Vec::new();
    if let Some(g) = k.gbps {
        parts.push(format!("{g:.2} GB/s"));
    }
    if let Some(g) = k.gflops {
        parts.push(format!("{g:.2} GFLOP/s"));
    }
    if let (Some(base), true) = (f32_rate, k.group == super::Group::Gemv) {
        let ours = weights_per_second(k);
        parts.push(format!("{:.2}x F32's weights/s", ours / base));
    }
    parts.join(", ")
}

/// Weights a matmul reads per second (its FLOPs are 2 per weight per row).
fn weights_per_second(k: &Kernel) -> f64 {
    k.flops / 2.0 / k.seconds
}

/// A kernel's share of its roofline, flagged when over it (the roofline would then not
/// bound it).
fn share(k: &Kernel) -> String {
    match (k.percent_of_roofline, k.bound) {
        (Some(p), Some(b)) => {
            let of = match b {
                Bound::Bandwidth => "bandwidth",
                Bound::F32Fma => "f32 FMA peak",
            };
            let over = if p > 100.5 {
                ", ABOVE THE ROOFLINE"
            } else {
                ""
            };
            format!("{p:.1}% of {of}{over}")
        }
        _ => String::new(),
    }
}

/// The kernels of one adapter as a markdown table.
fn kernel_table(a: &AdapterResults, out: &mut String) {
    if a.kernels.is_empty() {
        return;
    }
    let _ = writeln!(out, "| kernel | clock | median | rate | of its roofline |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for k in &a.kernels {
        let f32_rate = a
            .kernels
            .iter()
            .find(|x| x.group == k.group && x.model == k.model && x.dtype.as_deref() == Some("F32"))
            .map(weights_per_second);
        let mut clock = format!("{:?}", k.clock).to_lowercase();
        if k.clock == super::Clock::Gpu {
            let _ = write!(clock, " (wall {})", time(k.wall_seconds));
        }
        let _ = writeln!(
            out,
            "| {} | {clock} | {} | {} | {} |",
            k.name,
            time(k.seconds),
            rate(k, f32_rate),
            share(k)
        );
    }
    let _ = writeln!(out);
}

/// The models of one adapter as llama-bench's table, with decode against bandwidth.
fn model_table(models: &[Model], out: &mut String) {
    if models.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| model | dtype | test | t/s (median) | mean ± sd | MB/token | GB/s | of bandwidth |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|");
    for m in models {
        let dtype = m.dtype.as_deref().unwrap_or("as stored");
        for (test, s, decode) in [
            (format!("pp{}", m.prompt), &m.prefill, false),
            (format!("tg{}", m.generate), &m.decode, true),
        ] {
            let (mb, gbps, of) = match decode {
                true => (
                    format!("{:.1}", m.decode_bytes as f64 / 1e6),
                    format!("{:.2}", m.decode_gbps),
                    m.decode_percent_of_bandwidth
                        .map_or(String::new(), |p| format!("{p:.1}% of bandwidth")),
                ),
                false => Default::default(),
            };
            let _ = writeln!(
                out,
                "| {} | {dtype} | {test} | {:.2} | {:.2} ± {:.2} | {mb} | {gbps} | {of} |",
                m.model, s.median, s.mean, s.sd
            );
        }
    }
    let _ = writeln!(out);
    for m in models {
        if let Some(profile) = &m.profile {
            let _ = writeln!(
                out,
                "GPU time by kernel, {} (timestamp queries, each dispatch in a pass of its own):\n",
                m.model
            );
            let _ = writeln!(out, "| step | kernel | calls | ms/step | of the step |");
            let _ = writeln!(out, "|---|---|---:|---:|---:|");
            for r in profile {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.3} | {:.1}% |",
                    r.phase,
                    r.kernel,
                    r.calls_per_step,
                    r.seconds_per_step * 1e3,
                    r.percent_of_step
                );
            }
            let _ = writeln!(out);
        }
    }
}

/// Every adapter's results as markdown: a heading, its rooflines, its kernels and models.
pub fn to_markdown(r: &Results) -> String {
    let mut out = String::new();
    for a in &r.adapters {
        let _ = writeln!(out, "### {}\n", a.adapter.describe());
        let d = &a.adapter;
        if !d.driver.is_empty() || !d.driver_info.is_empty() {
            let _ = writeln!(out, "driver: {} {}\n", d.driver, d.driver_info);
        }
        let roof = &a.roofline;
        let mut line = Vec::new();
        if let Some(b) = roof.bandwidth_gbps {
            line.push(format!("bandwidth {b:.2} GB/s"));
        }
        if let Some(f) = roof.f32_gflops {
            line.push(format!("f32 FMA {f:.1} GFLOP/s"));
        }
        if let Some(f) = roof.f16_gflops {
            line.push(format!("f16 FMA {f:.1} GFLOP/s"));
        }
        if !line.is_empty() {
            let _ = writeln!(out, "rooflines: {}\n", line.join(", "));
        }
        kernel_table(a, &mut out);
        model_table(&a.models, &mut out);
    }
    out
}

/// Every figure as one CSV row: adapter, kind ("kernel" or "model"), name, and its numbers.
pub fn to_csv(r: &Results) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::Invalid(format!("writing CSV: {e}"));
    w.write_record([
        "adapter",
        "backend",
        "kind",
        "name",
        "group",
        "dtype",
        "seconds",
        "clock",
        "wall_seconds",
        "gbps",
        "gflops",
        "bound",
        "percent_of_roofline",
        "tokens_per_second",
        "tokens_per_second_sd",
    ])
    .map_err(err)?;
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for a in &r.adapters {
        let (name, backend) = (&a.adapter.name, &a.adapter.backend);
        for k in &a.kernels {
            w.write_record([
                name.clone(),
                backend.clone(),
                "kernel".into(),
                k.name.clone(),
                format!("{:?}", k.group).to_lowercase(),
                k.dtype.clone().unwrap_or_default(),
                format!("{}", k.seconds),
                format!("{:?}", k.clock).to_lowercase(),
                format!("{}", k.wall_seconds),
                num(k.gbps),
                num(k.gflops),
                k.bound
                    .map_or(String::new(), |b| format!("{b:?}").to_lowercase()),
                num(k.percent_of_roofline),
                String::new(),
                String::new(),
            ])
            .map_err(err)?;
        }
        for m in &a.models {
            for (test, s, decode) in [
                (format!("pp{}", m.prompt), &m.prefill, false),
                (format!("tg{}", m.generate), &m.decode, true),
            ] {
                w.write_record([
                    name.clone(),
                    backend.clone(),
                    "model".into(),
                    format!("{} {test}", m.model),
                    if decode { "decode" } else { "prefill" }.into(),
                    m.dtype.clone().unwrap_or_default(),
                    format!("{}", 1.0 / s.median),
                    "wall".into(),
                    format!("{}", 1.0 / s.median),
                    if decode {
                        num(Some(m.decode_gbps))
                    } else {
                        String::new()
                    },
                    String::new(),
                    if decode {
                        "bandwidth".into()
                    } else {
                        String::new()
                    },
                    if decode {
                        num(m.decode_percent_of_bandwidth)
                    } else {
                        String::new()
                    },
                    format!("{}", s.median),
                    format!("{}", s.sd),
                ])
                .map_err(err)?;
            }
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Invalid(format!("writing CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Invalid(format!("writing CSV: {e}")))
}

/// A figure's headline value and its unit, higher being better: a rate where there is one,
/// else runs per second of a fixed cost.
fn headline(k: &Kernel) -> (f64, &'static str) {
    match (k.gbps, k.gflops) {
        (Some(g), _) if k.group != super::Group::Gemm => (g, "GB/s"),
        (_, Some(f)) => (f, "GFLOP/s"),
        (Some(g), None) => (g, "GB/s"),
        (None, None) => (k.seconds * 1e6, "us"),
    }
}

/// Pairs of adapters to compare: those of the same name, backend and type; or, when each
/// run has exactly one adapter, those two (the browser names an adapter differently from
/// the native driver, and `--compare` between the two is the point).
fn pairs<'a>(old: &'a Results, new: &'a Results) -> Vec<(&'a AdapterResults, &'a AdapterResults)> {
    if let ([o], [n]) = (&old.adapters[..], &new.adapters[..]) {
        return vec![(o, n)];
    }
    new.adapters
        .iter()
        .filter_map(|n| {
            old.adapters
                .iter()
                .find(|o| o.adapter.describe() == n.adapter.describe())
                .map(|o| (o, n))
        })
        .collect()
}

/// The change of every figure the two runs share, as markdown: kernels by their rate (or
/// time, for fixed costs), models by tokens per second. Figures in one run only are listed
/// by name.
pub fn compare(old: &Results, new: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "comparing {} (kiln {} {}, {}) with {} (kiln {} {}, {})\n",
        old.date,
        old.kiln.version,
        old.kiln.commit,
        old.host.runtime,
        new.date,
        new.kiln.version,
        new.kiln.commit,
        new.host.runtime
    );
    let matched = pairs(old, new);
    if matched.is_empty() {
        let _ = writeln!(out, "no adapter is in both runs");
    }
    for (o, n) in matched {
        let _ = writeln!(
            out,
            "### {} -> {}\n",
            o.adapter.describe(),
            n.adapter.describe()
        );
        let _ = writeln!(out, "| figure | old | new | change |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let row = |out: &mut String, name: &str, a: f64, b: f64, unit: &str, lower_better: bool| {
            let change = 100.0 * (b - a) / a;
            let better = if (change > 0.0) != lower_better {
                "faster"
            } else {
                "slower"
            };
            let word = if change.abs() < 0.05 { "same" } else { better };
            let _ = writeln!(
                out,
                "| {name} | {a:.2} {unit} | {b:.2} {unit} | {change:+.1}% ({word}) |"
            );
        };
        let mut only = Vec::new();
        for k in &n.kernels {
            match o.kernels.iter().find(|x| x.name == k.name) {
                Some(ok) => {
                    let ((a, unit), (b, _)) = (headline(ok), headline(k));
                    row(&mut out, &k.name, a, b, unit, unit == "us");
                }
                None => only.push(format!("{} (new only)", k.name)),
            }
        }
        for k in &o.kernels {
            if !n.kernels.iter().any(|x| x.name == k.name) {
                only.push(format!("{} (old only)", k.name));
            }
        }
        for m in &n.models {
            let same = |x: &&Model| {
                x.model == m.model
                    && x.dtype == m.dtype
                    && x.prompt == m.prompt
                    && x.generate == m.generate
            };
            match o.models.iter().find(same) {
                Some(om) => {
                    let name = |t: &str| format!("{} {t}", m.model);
                    let (pp, tg) = (format!("pp{}", m.prompt), format!("tg{}", m.generate));
                    row(
                        &mut out,
                        &name(&pp),
                        om.prefill.median,
                        m.prefill.median,
                        "t/s",
                        false,
                    );
                    row(
                        &mut out,
                        &name(&tg),
                        om.decode.median,
                        m.decode.median,
                        "t/s",
                        false,
                    );
                }
                None => only.push(format!("{} (new only)", m.model)),
            }
        }
        let _ = writeln!(out);
        if !only.is_empty() {
            let _ = writeln!(out, "in one run only: {}\n", only.join("; "));
        }
    }
    out
}
