//! Progress on stderr: an indicatif bar on a terminal; a line at each quarter otherwise, so
//! logs and pipes get a few lines rather than redraws.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln::load::LoadOptions;
use std::io::{IsTerminal, Write};

pub struct Bar {
    label: String,
    /// What is counted: bytes (shown in MB), or whole items named by this word.
    items: Option<&'static str>,
    /// The terminal's bar, created at the first update.
    bar: Option<ProgressBar>,
    tty: bool,
    last_pct: u64,
}

impl Bar {
    pub fn new(label: &str) -> Bar {
        Bar {
            label: label.to_string(),
            items: None,
            bar: None,
            tty: std::io::stderr().is_terminal(),
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

    fn terminal_bar(&mut self, total: u64) -> &ProgressBar {
        let (label, items) = (self.label.clone(), self.items);
        self.bar.get_or_insert_with(|| {
            let amount = match items {
                None => "{decimal_bytes}/{decimal_total_bytes}".to_string(),
                Some(what) => format!("{{pos}}/{{len}} {what}"),
            };
            let template =
                format!("{label} [{{bar:30}}] {{percent:>3}}% {amount} {{eta}} {{msg:.dim}}");
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#>.");
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style)
        })
    }

    /// Show `done` of `total` bytes (or items), with a note (e.g. the tensor being uploaded).
    pub fn update(&mut self, done: u64, total: u64, note: &str) {
        let finished = done >= total;
        if self.tty {
            let bar = self.terminal_bar(total);
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(note.to_string());
            if finished {
                bar.finish();
            }
            return;
        }
        let pct = if total == 0 { 100 } else { done * 100 / total };
        if pct >= self.last_pct + 25 || (finished && self.last_pct < 100) {
            self.last_pct = if finished { 100 } else { pct / 25 * 25 };
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "{} {:>3}% ({}) {note}",
                self.label,
                self.last_pct,
                self.amount(done, total),
            );
            let _ = err.flush();
        }
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
