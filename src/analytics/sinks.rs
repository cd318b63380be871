//! Where a pipeline's rows go: CSV (UTF-8 with a BOM, headers from `columns:`, so Excel opens
//! Armenian correctly), JSON, Parquet, and a text table for a Telegram message.

use polars::prelude::*;

use crate::config::pipeline::Pipeline;
use crate::engine::html;

/// A file format a report can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Json,
    Parquet,
}

impl FileFormat {
    pub fn parse(name: &str) -> Option<FileFormat> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(FileFormat::Csv),
            "json" => Some(FileFormat::Json),
            "parquet" => Some(FileFormat::Parquet),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
            FileFormat::Parquet => "parquet",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            FileFormat::Csv => "text/csv",
            FileFormat::Json => "application/json",
            FileFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Writes the rows in `format`. CSV headers are the pipeline's column labels; JSON and Parquet
/// keep the column names (they are read by programs).
pub fn write(
    pipeline: &Pipeline,
    frame: &DataFrame,
    format: FileFormat,
    out: &mut (dyn std::io::Write + Send),
) -> PolarsResult<()> {
    super::outside_async(|| write_to(pipeline, frame, format, out))
}

/// The rows in `format`, in memory (for a Telegram document).
pub fn to_bytes(pipeline: &Pipeline, frame: &DataFrame, format: FileFormat) -> PolarsResult<Vec<u8>> {
    let mut out = Vec::new();
    write(pipeline, frame, format, &mut out)?;
    Ok(out)
}

fn write_to(
    pipeline: &Pipeline,
    frame: &DataFrame,
    format: FileFormat,
    out: &mut (dyn std::io::Write + Send),
) -> PolarsResult<()> {
    match format {
        FileFormat::Csv => {
            let mut labelled = with_headers(pipeline, frame)?;
            CsvWriter::new(out)
                .include_bom(true)
                .with_datetime_format(Some("%Y-%m-%d %H:%M".into()))
                .with_date_format(Some("%Y-%m-%d".into()))
                .finish(&mut labelled)
        }
        FileFormat::Json => {
            let mut frame = frame.clone();
            for name in temporal_columns(&frame) {
                let text = frame.column(&name)?.cast(&DataType::String)?;
                frame.replace(&name, text)?;
            }
            JsonWriter::new(out).with_json_format(JsonFormat::Json).finish(&mut frame)
        }
        FileFormat::Parquet => {
            let mut frame = frame.clone();
            ParquetWriter::new(out).finish(&mut frame).map(|_| ())
        }
    }
}

fn temporal_columns(frame: &DataFrame) -> Vec<PlSmallStr> {
    frame.columns().iter().filter(|c| c.dtype().is_temporal()).map(|c| c.name().clone()).collect()
}

/// The rows with the headers from `columns:` (names without a label keep their name).
pub fn with_headers(pipeline: &Pipeline, frame: &DataFrame) -> PolarsResult<DataFrame> {
    let mut labelled = frame.clone();
    for column in frame.get_column_names_owned() {
        let header = pipeline.header(column.as_str());
        if header != column.as_str() {
            labelled.rename(column.as_str(), header.into())?;
        }
    }
    Ok(labelled)
}

/// The rows as Telegram HTML: a monospace table with the labelled headers, at most `max_rows`
/// rows (and a line saying how many more there are). Cells are escaped.
pub fn text_table(pipeline: &Pipeline, frame: &DataFrame, max_rows: usize, more_rows: &str) -> String {
    let shown_columns: Vec<&str> =
        pipeline.table.iter().flat_map(|t| t.columns.iter().map(|c| c.value.as_str())).collect();
    let mut frame = if shown_columns.is_empty() {
        frame.clone()
    } else {
        frame.select(shown_columns).unwrap_or_else(|_| frame.clone())
    };
    // Times to the minute, as people write them.
    for name in temporal_columns(&frame) {
        let Ok(column) = frame.column(&name) else { continue };
        let text = match column.dtype() {
            DataType::Datetime(..) => column
                .as_materialized_series()
                .datetime()
                .and_then(|d| d.to_string("%Y-%m-%d %H:%M"))
                .map(|s| s.into_column()),
            _ => column.cast(&DataType::String),
        };
        if let Ok(text) = text {
            let _ = frame.replace(&name, text);
        }
    }
    let frame = &frame;
    let headers: Vec<String> =
        frame.get_column_names().iter().map(|c| pipeline.header(c.as_str()).to_string()).collect();
    let shown = frame.height().min(max_rows);
    let mut rows: Vec<Vec<String>> = vec![headers];
    for i in 0..shown {
        rows.push(frame.columns().iter().map(|c| cell(c.get(i).ok())).collect());
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0).min(24)).collect();
    let mut out = String::from("<pre>");
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| {
                let cell: String = cell.chars().take(*width).collect();
                let pad = width.saturating_sub(cell.chars().count());
                format!("{}{}", cell, " ".repeat(pad))
            })
            .collect();
        out.push_str(&html::escape(line.join("  ").trim_end()));
        out.push('\n');
    }
    out.push_str("</pre>");
    if frame.height() > shown {
        out.push_str(&html::escape(&more_rows.replace("{n}", &(frame.height() - shown).to_string())));
    }
    out
}

fn cell(value: Option<AnyValue<'_>>) -> String {
    match value {
        None | Some(AnyValue::Null) => "—".to_string(),
        Some(AnyValue::String(s)) => s.to_string(),
        Some(AnyValue::StringOwned(s)) => s.to_string(),
        Some(AnyValue::Float64(f)) => format_float(f),
        Some(AnyValue::Float32(f)) => format_float(f as f64),
        Some(other) => other.to_string().trim_matches('"').to_string(),
    }
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 { format!("{f:.0}") } else { format!("{f:.2}") }
}
