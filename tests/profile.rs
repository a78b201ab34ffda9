//! Profiling: a program that times its dispatches gives the same outputs as one that does
//! not, and files one time per dispatch that ran, under its kernel and weight format.

mod common;

use common::*;
use kiln::exec::Profile;
use kiln::{DType, Feed, Graph, Plan, Program, Target};

#[test]
fn profiling_files_each_dispatch_and_changes_no_output() {
    for gpu in gpus() {
        if !gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            assert!(!ci(), "CI=true and {} lacks TIMESTAMP_QUERY", label(gpu));
            eprintln!(
                "WARNING: {} lacks TIMESTAMP_QUERY; not profiled",
                label(gpu)
            );
            continue;
        }
        let mut rng = Rng::new(5);
        let (m, k, n) = (37, 96, 70);
        let w = weight(gpu, "w", &[n, k], DType::F16, &mut rng, 0.5, None);
        let g = Graph::new();
        let x = g.input("x", m, k);
        let y = g.matmul(x, g.weight(&w.tensor));
        g.output("y", g.l2_normalize(y, 1e-6));
        let xs = rng.uniform(m * k, 1.0);
        let feeds = [("x", Feed::F32(&xs))];
        let target = Target {
            gemv_max_rows: Some(0),
            ..Target::of(gpu)
        };
        let plan = || Plan::new(&g, target).expect("plan");
        let profile = Profile::new();
        let (plain, profiled) = pollster::block_on(async {
            let plain = Program::new(gpu, plan(), None).await.expect("program");
            let mut timed = Program::new(gpu, plan(), None).await.expect("program");
            timed
                .profile_into(Some((profile.clone(), "test")))
                .await
                .expect("profiling");
            let step = kiln::Step::single(0, m);
            let a = plain.run(&step, &feeds).await.expect("run");
            let mut b = None;
            for _ in 0..3 {
                b = Some(timed.run(&step, &feeds).await.expect("profiled run"));
            }
            (a, b.expect("three runs"))
        });
        let what = format!("profiled outputs on {}", label(gpu));
        assert_close(&profiled["y"], &plain["y"], 0.0, 0.0, &what);

        let (steps, rows) = profile.phase("test").expect("a 'test' phase");
        assert_eq!(steps, 3, "steps on {}", label(gpu));
        let names: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        // The GEMM family the adapter runs (matmul, or matmul_columns on CPU adapters).
        let gemm = names
            .iter()
            .find(|k| k.starts_with("matmul") && k.ends_with(" F16"))
            .map(|k| k.to_string())
            .unwrap_or_else(|| panic!("no GEMM in {names:?} on {}", label(gpu)));
        assert!(names.iter().any(|k| k.starts_with("norm")), "{names:?}");
        for (kernel, e) in &rows {
            assert_eq!(e.calls % 3, 0, "{kernel}: {} calls in 3 steps", e.calls);
            assert!(e.seconds.is_finite() && e.seconds >= 0.0, "{kernel}: {e:?}");
        }
        let matmul = rows
            .iter()
            .find(|(k, _)| *k == gemm)
            .map(|(_, e)| e.seconds);
        assert!(
            matmul.is_some_and(|s| s > 0.0),
            "a 37x96x70 GEMM took no time on {}: {rows:?}",
            label(gpu)
        );
        // A step's span runs from its first dispatch's start to its last one's end, so it
        // covers each of its dispatches: the three spans cover any one call.
        let span = profile.span("test").expect("a span for the phase");
        let call = rows
            .iter()
            .map(|(_, e)| e.seconds / e.calls.max(1) as f64)
            .fold(0.0, f64::max);
        assert!(
            span.is_finite() && span > 0.0 && span >= call,
            "span {span} s over 3 steps, a kernel's average call {call} s, on {}",
            label(gpu)
        );
        assert!(profile.to_string().contains(&gemm));
    }
}
