//! Progress on stderr: a redrawn bar on a terminal, a few plain lines otherwise.

use kiln::load::LoadOptions;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Bar {
    label: String,
    /// What is counted: bytes (shown in MB), or whole items named by this word.
    items: Option<&'static str>,
    tty: bool,
    last: Option<Instant>,
    last_pct: u64,
}

impl Bar {
    pub fn new(label: &str) -> Bar {
        Bar {
            label: label.to_string(),
            items: None,
            tty: std::io::stderr().is_terminal(),
            last: None,
            last_pct: 0,
        }
    }

    /// A bar counting whole `items` (e.g. "windows") rather than bytes.
    pub fn counting(label: &str, items: &'static str) -> Bar {
        Bar {
            items: Some(items),
            ..Bar::new(label)
        }
    }

    fn amount(&self, done: u64, total: u64) -> String {
        match self.items {
            None => format!("{:.1}/{:.1} MB", done as f64 / 1e6, total as f64 / 1e6),
            Some(what) => format!("{done}/{total} {what}"),
        }
    }

    /// Show `done` of `total` bytes (or items), with a note (e.g. the tensor being uploaded).
    pub fn update(&mut self, done: u64, total: u64, note: &str) {
        let frac = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let pct = (frac * 100.0) as u64;
        let finished = done >= total;
        let mut err = std::io::stderr().lock();
        if self.tty {
            if !finished
                && self
                    .last
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
            {
                return;
            }
            self.last = Some(Instant::now());
            let width = 30;
            let filled = (frac * width as f64).round() as usize;
            let _ = write!(
                err,
                "\r{} [{}{}] {:>5.1}% {:>15} {:<32.32}",
                self.label,
                "#".repeat(filled),
                ".".repeat(width - filled),
                frac * 100.0,
                self.amount(done, total),
                note
            );
            if finished {
                let _ = writeln!(err);
            }
        } else if pct >= self.last_pct + 25 || (finished && self.last_pct < 100) {
            self.last_pct = if finished { 100 } else { pct / 25 * 25 };
            let _ = writeln!(
                err,
                "{} {:>3}% ({}) {note}",
                self.label,
                self.last_pct,
                self.amount(done, total),
            );
        }
        let _ = err.flush();
    }
}

/// Load options that draw a "loading" bar.
pub fn loading() -> LoadOptions<'static> {
    let mut bar = Bar::new("loading");
    LoadOptions {
        progress: Some(Box::new(move |p| {
            bar.update(p.bytes_done, p.bytes_total, p.tensor)
        })),
        ..Default::default()
    }
}
