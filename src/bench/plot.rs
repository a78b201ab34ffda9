//! `kiln bench --plot FILE.svg|png`: every figure that has a roofline as a bar of its share
//! of that roofline, one bar per adapter, the roofline itself a line at 100%. Drawn with
//! plotters; text is set in a TrueType font found on the system (or `KILN_FONT`).

use super::record::{Bound, Results};
use crate::error::{Error, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One row of the plot: a figure's name and, per adapter, its share and what it achieved.
struct Row {
    name: String,
    bars: Vec<Option<(f64, String)>>,
}

/// The rows: kernels with a roofline, then each model's decode against bandwidth, in the
/// order they first appear across the adapters.
fn rows(r: &Results) -> Vec<Row> {
    let n = r.adapters.len();
    let mut out: Vec<Row> = Vec::new();
    let mut put = |name: String, a: usize, pct: f64, what: String| {
        let i = match out.iter().position(|x| x.name == name) {
            Some(i) => i,
            None => {
                out.push(Row {
                    name,
                    bars: vec![None; n],
                });
                out.len() - 1
            }
        };
        out[i].bars[a] = Some((pct, what));
    };
    for (a, ad) in r.adapters.iter().enumerate() {
        for k in &ad.kernels {
            if let (Some(pct), Some(bound)) = (k.percent_of_roofline, k.bound) {
                let what = match bound {
                    Bound::Bandwidth => format!("{:.2} GB/s", k.gbps.unwrap_or(0.0)),
                    Bound::F32Fma => format!("{:.2} GFLOP/s", k.gflops.unwrap_or(0.0)),
                };
                put(k.name.clone(), a, pct, what);
            }
        }
        for m in &ad.models {
            if let Some(pct) = m.decode_percent_of_bandwidth {
                let dtype = m.dtype.as_deref().unwrap_or("");
                let name = format!("{} {dtype} tg{} decode", m.model, m.generate);
                let what = format!("{:.2} tok/s, {:.2} GB/s", m.decode.median, m.decode_gbps);
                put(name, a, pct, what);
            }
        }
    }
    out
}

/// A TrueType font for the plot's text: `KILN_FONT`, else a common system font.
fn font() -> Result<&'static [u8]> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];
    let chosen = std::env::var("KILN_FONT").ok();
    let paths: Vec<&str> = match &chosen {
        Some(p) => vec![p.as_str()],
        None => candidates.to_vec(),
    };
    for p in &paths {
        if let Ok(bytes) = std::fs::read(p) {
            return Ok(Box::leak(bytes.into_boxed_slice()));
        }
    }
    Err(Error::Invalid(format!(
        "plotting needs a TrueType font, and none was found at {}; install one (Debian: \
         fonts-dejavu-core) or set KILN_FONT=/path/to/font.ttf",
        paths.join(", ")
    )))
}

/// Adapter `a`'s name in the legend, numbered where several entries share it (runs of one
/// adapter merged with `--from`).
fn legend(r: &Results, a: usize) -> String {
    let name = r.adapters[a].adapter.describe();
    let same = |x: &&super::record::AdapterResults| x.adapter.describe() == name;
    match r.adapters.iter().filter(same).count() {
        1 => name,
        _ => format!("{name} #{}", r.adapters[..=a].iter().filter(same).count()),
    }
}

fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Invalid(format!("drawing the plot: {e}"))
}

/// Draw `r` to `path`: SVG or PNG by its extension.
pub fn plot(r: &Results, path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let rows = rows(r);
    if rows.is_empty() {
        return Err(Error::Invalid(
            "nothing to plot: no figure has a roofline (run the rooflines, or a model on one \
             adapter)"
                .into(),
        ));
    }
    static FONT: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = font().map_err(|e| e.to_string())?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the font found is not a TrueType font plotters can read".to_string())
    })
    .clone()
    .map_err(Error::Invalid)?;
    let adapters = r.adapters.len().max(1);
    let bar = 12u32;
    let row_px = bar * adapters as u32 + 8;
    let size = (1400u32, 160 + row_px * rows.len() as u32);
    match ext.as_deref() {
        Some("svg") => draw(r, &rows, SVGBackend::new(path, size).into_drawing_area()),
        Some("png") => draw(r, &rows, BitMapBackend::new(path, size).into_drawing_area()),
        _ => Err(Error::Invalid(format!(
            "--plot {}: the file must end in .svg or .png",
            path.display()
        ))),
    }
}

fn draw<DB: DrawingBackend>(
    r: &Results,
    rows: &[Row],
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(drawing)?;
    let top = rows
        .iter()
        .flat_map(|x| x.bars.iter().flatten().map(|b| b.0))
        .fold(100.0f64, f64::max);
    let xmax = (top * 1.35).max(140.0);
    let n = rows.len() as f64;
    let label_px = rows
        .iter()
        .map(|x| x.name.chars().count())
        .max()
        .unwrap_or(10) as u32
        * 7
        + 20;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "kiln bench {} ({}): share of each figure's roofline",
                r.date, r.kiln.commit
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .top_x_label_area_size(30)
        .y_label_area_size(label_px)
        .build_cartesian_2d(0f64..xmax, 0f64..n)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("% of the roofline that bounds it (bandwidth, or the f32 FMA peak for GEMM and prefill)")
        .x_label_formatter(&|x| format!("{x:.0}%"))
        .draw()
        .map_err(drawing)?;
    let adapters = r.adapters.len().max(1) as f64;
    for a in 0..r.adapters.len() {
        let color = Palette99::pick(a).to_rgba();
        // Row i from the top; adapter a's bar in its slice of the row.
        let span = |i: usize| {
            let y1 = n - i as f64 - 0.1 - 0.8 * a as f64 / adapters;
            (y1 - 0.8 / adapters, y1)
        };
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, row)| {
                let (pct, _) = row.bars[a].as_ref()?;
                let (y0, y1) = span(i);
                Some(Rectangle::new([(0.0, y0), (*pct, y1)], color.filled()))
            }))
            .map_err(drawing)?
            .label(legend(r, a))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, row)| {
                let (pct, what) = row.bars[a].as_ref()?;
                let (y0, y1) = span(i);
                let style = ("sans-serif", 11)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                Some(Text::new(
                    format!(" {pct:.1}%  {what}"),
                    (*pct, (y0 + y1) / 2.0),
                    style,
                ))
            }))
            .map_err(drawing)?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(100.0, 0.0), (100.0, n)],
            BLACK.stroke_width(2),
        )))
        .map_err(drawing)?
        .label("the roofline (100%)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(drawing)?;
    // Each row's name, right-aligned against the plot's left edge.
    let style = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, row) in rows.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, n - i as f64 - 0.5));
        root.draw(&Text::new(row.name.clone(), (px - 6, py), style.clone()))
            .map_err(drawing)?;
    }
    root.present().map_err(drawing)?;
    Ok(())
}
