//! PNG bar charts with plotters' bitmap backend. Text needs a TrueType font: plotters' `ab_glyph`
//! renderer draws it from a font file we load (DejaVu Sans by default), so there is no fontconfig
//! or other system library involved.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Registers the font file as plotters' "sans-serif".
pub fn load_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "font {} (install fonts-dejavu-core or pass --font)",
            path.display()
        )
    })?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a TrueType font", path.display()))
}

/// A grouped bar chart: one group per entry of `groups`, one bar per series in each group.
pub struct Bars<'a> {
    /// Title above the chart.
    pub title: &'a str,
    /// Label of the y axis.
    pub y_label: &'a str,
    /// Group names along the x axis.
    pub groups: &'a [String],
    /// (series name, one value per group; NaN for none).
    pub series: &'a [(String, Vec<f64>)],
    /// Logarithmic y axis.
    pub log: bool,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(120, 120, 120),
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(214, 39, 40),
    RGBColor(255, 152, 150),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(148, 103, 189),
];

/// Draws `bars` into a PNG file.
pub fn draw(bars: &Bars, path: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let values = bars.series.iter().flat_map(|(_, v)| v.iter().copied());
    let max = values.clone().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let min = values.filter(|v| v.is_finite() && *v > 0.0).fold(max, f64::min);
    let n = bars.groups.len() as f64;
    let per = bars.series.len().max(1) as f64;
    let width = 0.8 / per;
    let mut builder = ChartBuilder::on(&root);
    let chart = builder
        .caption(bars.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .right_y_label_area_size(0);
    let groups = bars.groups;
    let x_fmt = move |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-6 && i >= 0.0 {
            groups.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    macro_rules! body {
        ($chart:expr, $base:expr) => {{
            let mut c = $chart;
            c.configure_mesh()
                .disable_x_mesh()
                .x_labels(groups.len() * 2 + 1)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|y: &f64| format!("{y:.0}"))
                .y_desc(bars.y_label)
                .label_style(("sans-serif", 15))
                .draw()
                .map_err(|e| err(&e))?;
            for (k, (name, vals)) in bars.series.iter().enumerate() {
                let color = PALETTE[k % PALETTE.len()];
                let x0 = 0.1 + k as f64 * width;
                c.draw_series(
                    vals.iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(g, v)| {
                            let left = g as f64 + x0;
                            Rectangle::new([(left, $base), (left + width * 0.92, *v)], color.filled())
                        }),
                )
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    if bars.log {
        let lo = (min / 2.0).max(1e-3);
        let c = chart
            .build_cartesian_2d(0f64..n, (lo..max * 3.0).log_scale())
            .map_err(|e| err(&e))?;
        body!(c, lo);
    } else {
        let c = chart
            .build_cartesian_2d(0f64..n, 0f64..max * 1.15)
            .map_err(|e| err(&e))?;
        body!(c, 0.0);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
