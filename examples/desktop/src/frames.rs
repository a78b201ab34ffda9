//! Frame times: the interval between one frame and the next, kept apart for frames drawn
//! while the model was idle, loading, or generating.

use std::time::Instant;

/// What the model was doing during a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Idle,
    Loading,
    Generating,
}

#[derive(Default)]
pub struct FrameStats {
    last: Option<Instant>,
    idle: Vec<f64>,
    loading: Vec<f64>,
    generating: Vec<f64>,
}

impl FrameStats {
    /// A frame starts now, the model doing `phase`.
    pub fn frame(&mut self, phase: Phase) {
        let now = Instant::now();
        if let Some(last) = self.last.replace(now) {
            let ms = (now - last).as_secs_f64() * 1e3;
            match phase {
                Phase::Idle => &mut self.idle,
                Phase::Loading => &mut self.loading,
                Phase::Generating => &mut self.generating,
            }
            .push(ms);
        }
    }

    /// One line per kind of frame: count, median, 99th percentile and worst, in ms.
    pub fn summary(&self) -> String {
        let line = |what: &str, v: &[f64]| {
            if v.is_empty() {
                return format!("{what}: no frames");
            }
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
            format!(
                "{what}: {} frames, median {:.1} ms, p99 {:.1} ms, worst {:.1} ms",
                s.len(),
                at(0.5),
                at(0.99),
                s[s.len() - 1]
            )
        };
        format!(
            "frame times\n  {}\n  {}\n  {}",
            line("idle", &self.idle),
            line("loading", &self.loading),
            line("generating", &self.generating)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_intervals() {
        let mut f = FrameStats::default();
        f.generating = (1..=100).map(f64::from).collect();
        f.idle = vec![16.0; 10];
        let s = f.summary();
        assert!(
            s.contains("idle: 10 frames, median 16.0 ms, p99 16.0 ms"),
            "{s}"
        );
        let want = "generating: 100 frames, median 51.0 ms, p99 99.0 ms, worst 100.0 ms";
        assert!(s.contains(want), "{s}");
        assert!(s.contains("loading: no frames"), "{s}");
    }
}
