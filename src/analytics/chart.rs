//! A pipeline's rows as a PNG chart (plotters): its `x` column along the bottom, one line or
//! bar series per `y` column, labels from `columns:`. The font is a TrueType file with Armenian
//! glyphs: `CHART_FONT`, else DejaVu Sans where Debian and Alpine put it.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;
use polars::prelude::*;

use crate::config::pipeline::{ChartKind, ChartSink, Pipeline};

const FAMILY: &str = "sans-serif";
/// Where the font is looked for when `CHART_FONT` is not set.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];
const SIZE: (u32, u32) = (1000, 560);
const COLOURS: [RGBColor; 4] =
    [RGBColor(33, 113, 181), RGBColor(230, 85, 13), RGBColor(49, 163, 84), RGBColor(117, 107, 177)];

/// Reads and registers the font once; the error says where it was looked for.
fn register_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    let registered = REGISTERED.get_or_init(|| {
        let chosen = std::env::var("CHART_FONT").ok().filter(|p| !p.trim().is_empty());
        let candidates: Vec<String> = match chosen {
            Some(path) => vec![path],
            None => FONT_PATHS.iter().map(|p| p.to_string()).collect(),
        };
        let Some((path, bytes)) = candidates.iter().find_map(|p| std::fs::read(p).ok().map(|b| (p, b))) else {
            return Err(format!(
                "no chart font: set CHART_FONT to a .ttf with Armenian letters, or install DejaVu Sans \
                 (Debian: fonts-dejavu-core); looked in {}",
                candidates.join(", ")
            ));
        };
        // plotters keeps the font for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a TrueType font plotters can read"))
    });
    registered.clone().map_err(ChartError::Font)
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the chart's column `{0}` is not in the result")]
    Column(String),
    #[error("nothing to draw: the report has no rows")]
    Empty,
    #[error("{0}")]
    Font(String),
    #[error("drawing the chart: {0}")]
    Draw(String),
}

/// Draws `frame` as `chart` into a PNG file at `path`, titled `title`.
pub fn draw(
    pipeline: &Pipeline,
    frame: &DataFrame,
    chart: &ChartSink,
    title: &str,
    path: &Path,
) -> Result<(), ChartError> {
    if frame.height() == 0 {
        return Err(ChartError::Empty);
    }
    register_font()?;
    let labels = column_texts(frame, &chart.x.value)?;
    let mut series = Vec::new();
    for y in &chart.y {
        series.push((pipeline.header(&y.value).to_string(), column_numbers(frame, &y.value)?));
    }
    let draw_err = |e: &dyn std::fmt::Display| ChartError::Draw(e.to_string());
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let n = labels.len();
    let top = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(f64::MIN, f64::max);
    let bottom = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(f64::MAX, f64::min);
    let (low, high) = match chart.kind {
        // Bars start at zero; lines (subscribers) show their own range.
        ChartKind::Bar => (bottom.min(0.0), top.max(0.0).max(1.0) * 1.1),
        ChartKind::Line => {
            let pad = ((top - bottom) * 0.1).max(1.0);
            (bottom - pad, top + pad)
        }
    };
    let mut cartesian = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 26))
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n as f64, low..high)
        .map_err(|e| draw_err(&e))?;
    cartesian
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_label_formatter(&|v: &f64| if v.fract().abs() < 1e-9 { format!("{v:.0}") } else { format!("{v:.1}") })
        .label_style((FAMILY, 15))
        .draw()
        .map_err(|e| draw_err(&e))?;
    let width = 0.8 / series.len() as f64;
    for (index, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let drawn = match chart.kind {
            ChartKind::Bar => cartesian
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    let x0 = i as f64 + 0.1 + index as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.95, *v)], colour.filled())
                }))
                .map_err(|e| draw_err(&e))?,
            ChartKind::Line => cartesian
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v)),
                    colour.stroke_width(3),
                ))
                .map_err(|e| draw_err(&e))?,
        };
        drawn.label(name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.filled()));
    }
    if series.len() > 1 || matches!(chart.kind, ChartKind::Line) {
        cartesian
            .configure_series_labels()
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| draw_err(&e))?;
    }
    // Category labels under their bars or points: at most about 12, evenly spread; dates as
    // day.month.
    let step = n.div_ceil(12).max(1);
    for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % step == 0) {
        let (x, y) = cartesian.backend_coord(&(i as f64 + 0.5, low));
        let short = match chrono::NaiveDate::parse_from_str(label.get(..10).unwrap_or(label), "%Y-%m-%d") {
            Ok(date) => date.format("%d.%m").to_string(),
            Err(_) => label.chars().take(14).collect(),
        };
        let style = TextStyle::from((FAMILY, 14).into_font()).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ));
        root.draw(&Text::new(short, (x, y + 8), style)).map_err(|e| draw_err(&e))?;
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

fn column_texts(frame: &DataFrame, name: &str) -> Result<Vec<String>, ChartError> {
    let column = frame.column(name).map_err(|_| ChartError::Column(name.to_string()))?;
    let column = column.cast(&DataType::String).map_err(|e| ChartError::Draw(e.to_string()))?;
    let texts = column.str().map_err(|e| ChartError::Draw(e.to_string()))?;
    Ok((0..texts.len()).map(|i| texts.get(i).unwrap_or("—").to_string()).collect())
}

fn column_numbers(frame: &DataFrame, name: &str) -> Result<Vec<f64>, ChartError> {
    let column = frame.column(name).map_err(|_| ChartError::Column(name.to_string()))?;
    let column = column.cast(&DataType::Float64).map_err(|e| ChartError::Draw(e.to_string()))?;
    let numbers = column.f64().map_err(|e| ChartError::Draw(e.to_string()))?;
    Ok((0..numbers.len()).map(|i| numbers.get(i).unwrap_or(0.0)).collect())
}
