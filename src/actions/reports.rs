//! Report actions: run an analytics pipeline for the bot (a text table) or as a file sent as a
//! Telegram document, from a flow or a recurring job.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ActionContext, ActionError, str_arg};
use crate::analytics::{self, FileFormat, Literal, SourceContext};
use crate::config::bundle::ActionErrorCode;

/// Arguments that are not pipeline parameters.
const OWN_ARGS: [&str; 2] = ["pipeline", "as"];

/// Runs the report named by `pipeline` with the other (non-empty text) arguments as parameters.
fn run<'b>(ctx: &ActionContext<'b>, args: &Value) -> Result<analytics::Report<'b>, ActionError> {
    let id = str_arg(args, "pipeline")?;
    let mut given = BTreeMap::new();
    if let Some(map) = args.as_object() {
        for (name, value) in map.iter().filter(|(name, _)| !OWN_ARGS.contains(&name.as_str())) {
            let text = match value {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            // Templates render an unset slot as "": that means "no filter".
            if !text.is_empty() && text != "none" {
                given.insert(name.clone(), text);
            }
        }
    }
    let timezone = ctx.bundle.timezone;
    let today = crate::engine::render::local_time(ctx.bundle, ctx.now).date_naive();
    let store = ctx.store.store();
    let context = SourceContext { timezone, channel_link: store.channel_link().ok().flatten() };
    analytics::report(ctx.bundle, id, &given, store, context, today).map_err(|err| match err {
        analytics::ReportError::Unknown(..) | analytics::ReportError::Param(_) => {
            ActionError::new(ActionErrorCode::BadInput, err.to_string())
        }
        analytics::ReportError::Step { .. } => ActionError::new(ActionErrorCode::Unavailable, err.to_string()),
    })
}

/// What every report result says about itself.
fn about(report: &analytics::Report<'_>) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("pipeline".into(), json!(report.pipeline.id));
    out.insert("title".into(), json!(report.pipeline.title));
    out.insert("rows".into(), json!(report.frame.height()));
    out.insert("empty".into(), json!(report.frame.height() == 0));
    out.insert("chart".into(), json!(report.pipeline.chart.is_some()));
    for (name, value) in &report.values.0 {
        let shown = match (name.as_str(), value) {
            // `to` is excluded; people read the last day.
            ("to", Literal::Timestamp(at)) => at.date().pred_opt().unwrap_or(at.date()).format("%Y-%m-%d").to_string(),
            ("from", Literal::Timestamp(at)) => at.date().format("%Y-%m-%d").to_string(),
            _ => value.display(),
        };
        out.insert(name.clone(), json!(shown));
    }
    out
}

/// `report.show`: `{title, table (Telegram HTML), rows, empty, pipeline, <parameters>}`.
pub fn show(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let report = run(ctx, args)?;
    let max_rows = report.pipeline.table.as_ref().map_or(20, |t| t.max_rows);
    let more = crate::engine::standalone_text(ctx.bundle, "report_more_rows").unwrap_or_else(|| "+{n}".to_string());
    let mut out = about(&report);
    out.insert("table".into(), json!(analytics::sinks::text_table(report.pipeline, &report.frame, max_rows, &more)));
    Ok(Value::Object(out))
}

/// `report.export`: writes the report as a file and returns it as a document for a step's
/// `media:`: `{media, file_name, bytes, rows, ...}`.
pub fn export(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let format_name = args.get("as").and_then(Value::as_str).unwrap_or("csv");
    let format = FileFormat::parse(format_name).ok_or_else(|| {
        ActionError::new(ActionErrorCode::BadInput, format!("`{format_name}` is not csv, json or parquet"))
    })?;
    let report = run(ctx, args)?;
    if !report.pipeline.files.iter().any(|f| f == format.extension()) {
        return Err(ActionError::new(
            ActionErrorCode::BadInput,
            format!("`{}` is not exported as {}", report.pipeline.id, format.extension()),
        ));
    }
    let dir = ctx.store.store().exports_dir();
    let failed = |err: String| ActionError::new(ActionErrorCode::Unavailable, err);
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let file_name = analytics::file_name(&report, format);
    let bytes =
        analytics::sinks::to_bytes(report.pipeline, &report.frame, format).map_err(|e| failed(e.to_string()))?;
    let path = dir.join(&file_name);
    let partial = dir.join(format!("{file_name}.partial"));
    std::fs::write(&partial, &bytes)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    let mut out = about(&report);
    out.insert(
        "media".into(),
        json!({ "kind": "document", "file_id": format!("{}{file_name}", crate::store::EXPORT_PREFIX) }),
    );
    out.insert("file_name".into(), json!(file_name));
    out.insert("bytes".into(), json!(bytes.len()));
    Ok(Value::Object(out))
}

/// `report.chart`: draws the report's chart as a PNG for a step's `media:` (a photo):
/// `{media, file_name, rows, title, ...}`.
pub fn chart(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let report = run(ctx, args)?;
    let Some(chart) = &report.pipeline.chart else {
        return Err(ActionError::new(ActionErrorCode::BadInput, format!("`{}` has no chart", report.pipeline.id)));
    };
    let failed = |err: String| ActionError::new(ActionErrorCode::Unavailable, err);
    let dir = ctx.store.store().exports_dir();
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let file_name = analytics::file_name(&report, FileFormat::Csv).replace(".csv", ".png");
    let about = about(&report);
    let period = |key: &str| about.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let title = match report.values.0.contains_key("from") && period("period") != "all" {
        true => format!("{} · {} — {}", report.pipeline.title, period("from"), period("to")),
        false => report.pipeline.title.clone(),
    };
    let path = dir.join(&file_name);
    let partial = dir.join(format!("{file_name}.partial.png"));
    analytics::outside_async(|| analytics::chart::draw(report.pipeline, &report.frame, chart, &title, &partial))
        .map_err(|e| match e {
            analytics::chart::ChartError::Empty => ActionError::new(ActionErrorCode::NotFound, e.to_string()),
            other => failed(other.to_string()),
        })?;
    std::fs::rename(&partial, &path).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    let mut out = about;
    out.insert(
        "media".into(),
        json!({ "kind": "photo", "file_id": format!("{}{file_name}", crate::store::EXPORT_PREFIX) }),
    );
    out.insert("file_name".into(), json!(file_name));
    Ok(Value::Object(out))
}

/// `clicks.forget_readers`: drops the Telegram ids of readers who came through deep links from
/// clicks older than `older_than_days` (personal data kept no longer than needed); the clicks
/// stay counted: `{forgotten}`.
pub fn forget_click_readers(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let forgotten = ctx.store.forget_click_readers(older_than(ctx, args)?)?;
    Ok(json!({ "forgotten": forgotten }))
}

/// The time `older_than_days` (a required argument) before now, in Unix seconds.
fn older_than(ctx: &ActionContext<'_>, args: &Value) -> Result<i64, ActionError> {
    let days = args.get("older_than_days").and_then(Value::as_u64).ok_or_else(|| {
        ActionError::new(ActionErrorCode::BadInput, "argument `older_than_days` is missing or not a whole number")
    })?;
    Ok(ctx.now - (days as i64) * 86_400)
}

/// `events.archive`: moves events older than `older_than_days` out of the store into a Parquet
/// file under `exports/archive/` (the `events` table's columns), so the log stays small:
/// `{archived, file}`. Nothing is deleted unless the file was written.
pub fn archive_events(ctx: &ActionContext<'_>, args: &Value) -> Result<Value, ActionError> {
    let before = older_than(ctx, args)?;
    let context = SourceContext { timezone: ctx.bundle.timezone, channel_link: None };
    let mut columns = crate::store::EventColumns::default();
    let (mut first, mut last, mut first_seq, mut last_seq) = (i64::MAX, i64::MIN, u64::MAX, 0);
    let archived = ctx.store.prune_events(before, |event| {
        first = first.min(event.at);
        last = last.max(event.at);
        first_seq = first_seq.min(event.seq);
        last_seq = last_seq.max(event.seq);
        columns.push(event.clone());
    })?;
    if archived == 0 {
        return Ok(json!({ "archived": 0, "file": null }));
    }
    let failed = |err: String| ActionError::new(ActionErrorCode::Unavailable, err);
    let day = |at: i64| crate::engine::render::local_time(ctx.bundle, at).format("%Y-%m-%d").to_string();
    let dir = ctx.store.store().exports_dir().join("archive");
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    // Sequence numbers are never reused (not even after the log was emptied), so no archive
    // overwrites another.
    let path = dir.join(format!("events_{}_{}_{first_seq}-{last_seq}.parquet", day(first), day(last)));
    let partial = dir.join(format!("events_{first_seq}-{last_seq}.partial"));
    let mut frame = columns
        .finish()
        .and_then(|mut frame| analytics::sources::localize(&mut frame, &context).map(|()| frame))
        .map_err(|e| failed(e.to_string()))?;
    let written = analytics::outside_async(|| -> Result<(), String> {
        let cannot = |e: std::io::Error| format!("cannot write {}: {e}", partial.display());
        let mut file = std::fs::File::create(&partial).map_err(cannot)?;
        polars::prelude::ParquetWriter::new(&mut file).finish(&mut frame).map_err(|e| e.to_string())?;
        file.sync_all().map_err(cannot)?;
        std::fs::rename(&partial, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    });
    // The deletion commits with the turn, after the file is safely written.
    written.map_err(failed)?;
    Ok(json!({ "archived": archived, "file": path.display().to_string() }))
}
