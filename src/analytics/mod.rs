//! Analytics: pipelines from `kind: pipeline` files run by polars over the store's tables, and
//! their results written as files, text tables or charts. The same code serves the bot, the
//! CLI (`postflow export`) and scheduled reports.

pub mod chart;
pub mod helper;
pub mod params;
pub mod run;
pub mod sinks;
pub mod sources;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::DataFrame;

use crate::config::pipeline::Pipeline;
use crate::config::{Bundle, Diagnostic};
use crate::store::Store;
pub use params::{Literal, ParamError, Values};
pub use run::StepError;
pub use sinks::FileFormat;
pub use sources::SourceContext;

/// Checks every pipeline of the bundle against the documented source columns (planned, not
/// run): unknown columns, bad SQL, unknown `:parameters` and chart columns, each at its step.
pub fn check(bundle: &Bundle) -> Vec<Diagnostic> {
    outside_async(|| check_here(bundle))
}

/// Polars blocks on its own async runtime, which panics on a thread that runs a current-thread
/// tokio runtime: from inside one, the work moves to a plain scoped thread.
pub fn outside_async<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn check_here(bundle: &Bundle) -> Vec<Diagnostic> {
    let formats: Vec<String> = bundle.formats.iter().map(|f| f.id.clone()).collect();
    let today = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    let mut diagnostics = Vec::new();
    for pipeline in &bundle.pipelines {
        let values = match params::resolve(pipeline, &BTreeMap::new(), &formats, today) {
            Ok(values) => values,
            Err(err) => {
                diagnostics.push(diagnostic(pipeline, pipeline.source.line, pipeline.source.column, 1, err.0));
                continue;
            }
        };
        let columns = match run::result_columns(pipeline, &mut run::EmptySources, &values) {
            Ok(columns) => columns,
            Err(err) => {
                diagnostics
                    .push(diagnostic(pipeline, err.line, err.column, err.len, err.message).with_hint_opt(err.hint));
                continue;
            }
        };
        // After a pivot the columns depend on the data, so chart columns cannot be known.
        let pivots = pipeline.steps.iter().any(|s| s.value.verb() == "pivot");
        let chart_columns = pipeline.chart.iter().flat_map(|chart| std::iter::once(&chart.x).chain(&chart.y));
        let table_columns = pipeline.table.iter().flat_map(|table| table.columns.iter());
        if !pivots {
            for column in chart_columns.chain(table_columns) {
                if !columns.contains(&column.value) {
                    diagnostics.push(
                        diagnostic(
                            pipeline,
                            column.line,
                            column.column,
                            column.len,
                            format!("the column `{}` is not in the pipeline's result", column.value),
                        )
                        .with_hint(format!("the result has {}", columns.join(", "))),
                    );
                }
            }
        }
    }
    diagnostics.extend(check_report_calls(bundle, &formats, today));
    diagnostics
}

/// Jobs and flow steps that run `report.*` with a literal pipeline: the pipeline exists and
/// the literal parameters fit it.
fn check_report_calls(bundle: &Bundle, formats: &[String], today: NaiveDate) -> Vec<Diagnostic> {
    use crate::config::bundle::ArgValue;
    let mut calls: Vec<(String, String, BTreeMap<String, String>)> = Vec::new();
    let text_of = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    for job in &bundle.jobs {
        if let Some((_, args)) = job.action.as_ref().filter(|(name, _)| name.starts_with("report."))
            && let Some(map) = args.as_object()
        {
            let given = map.iter().filter_map(|(k, v)| Some((k.clone(), text_of(v)?))).collect();
            calls.push((job.file.clone(), format!("job `{}`", job.id), given));
        }
    }
    for flow in bundle.flows.values() {
        for (step_id, step) in &flow.steps {
            let Some(action) = step.action.as_ref().filter(|a| a.name.starts_with("report.")) else { continue };
            // Only calls whose every argument is literal can be checked before they run.
            let literal: Option<BTreeMap<String, String>> = action
                .args
                .iter()
                .map(|(k, v)| match v {
                    ArgValue::Literal(value) => Some((k.clone(), text_of(value)?)),
                    _ => None,
                })
                .collect();
            if let Some(given) = literal {
                calls.push((
                    format!("flows/{}.yaml", flow.id),
                    format!("step `{step_id}` of flow `{}`", flow.id),
                    given,
                ));
            }
        }
    }
    let mut problems = Vec::new();
    for (file, who, mut given) in calls {
        let id = given.remove("pipeline").unwrap_or_default();
        given.remove("as");
        given.retain(|_, v| !v.trim().is_empty());
        match bundle.pipelines.iter().find(|p| p.id == id) {
            None => {
                let known = bundle.pipelines.iter().map(|p| p.id.as_str());
                problems.push(
                    Diagnostic::in_file(&file, format!("{who} runs the report `{id}`, which does not exist"))
                        .with_hint(crate::config::diagnostic::suggestion_or_list(&id, known)),
                );
            }
            Some(pipeline) => {
                if let Err(err) = params::resolve(pipeline, &given, formats, today) {
                    problems.push(Diagnostic::in_file(&file, format!("{who}: {err}")));
                }
            }
        }
    }
    problems
}

fn diagnostic(pipeline: &Pipeline, line: usize, column: usize, len: usize, message: String) -> Diagnostic {
    Diagnostic { file: pipeline.file.clone(), line, column, len, message, hint: None }
}

/// A pipeline run: what was asked and the rows it gave.
pub struct Report<'a> {
    pub pipeline: &'a Pipeline,
    pub values: Values,
    pub frame: DataFrame,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no pipeline `{0}`; the pipelines are {1}")]
    Unknown(String, String),
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("{file}:{}:{}: {}", .error.line, .error.column, .error.message)]
    Step { file: String, error: StepError },
}

/// Runs the pipeline `id` of `bundle` over `store` with the given parameter texts.
pub fn report<'a>(
    bundle: &'a Bundle,
    id: &str,
    given: &BTreeMap<String, String>,
    store: &Store,
    context: SourceContext,
    today: NaiveDate,
) -> Result<Report<'a>, ReportError> {
    let pipeline = bundle.pipelines.iter().find(|p| p.id == id).ok_or_else(|| {
        ReportError::Unknown(
            id.to_string(),
            bundle.pipelines.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", "),
        )
    })?;
    let formats: Vec<String> = bundle.formats.iter().map(|f| f.id.clone()).collect();
    let values = params::resolve(pipeline, given, &formats, today)?;
    let frame = outside_async(|| {
        // The sources, and the posts they read, are dropped before polars runs the plan.
        let planned = run::plan(pipeline, &mut run::StoreSources::new(store, context), &values)?;
        run::collect(pipeline, planned)
    });
    crate::memory::report_done();
    let frame = frame.map_err(|error| ReportError::Step { file: pipeline.file.clone(), error })?;
    Ok(Report { pipeline, values, frame })
}

/// A file name for a report, such as `top_posts_2026-11-01_2026-11-30.csv`.
pub fn file_name(report: &Report<'_>, format: FileFormat) -> String {
    let mut name = report.pipeline.id.clone();
    if let (Some(from), Some(Literal::Timestamp(to))) = (report.values.0.get("from"), report.values.0.get("to")) {
        let last_day = to.date().pred_opt().unwrap_or(to.date());
        let period = report.pipeline.params.iter().find(|p| p.kind == crate::config::pipeline::ParamKind::Period);
        if period.and_then(|p| report.values.0.get(&p.name)) != Some(&Literal::Text("all".into())) {
            name.push_str(&format!(
                "_{}_{}",
                from.display().get(..10).unwrap_or_default(),
                last_day.format("%Y-%m-%d")
            ));
        }
    }
    format!("{name}.{}", format.extension())
}

/// Loads the configuration like [`crate::config::load`], then checks its pipelines with polars
/// (in a child process once [`helper::check_in_child_process`] was called); every command that
/// runs a configuration loads it this way.
pub fn load_config(
    dir: &std::path::Path,
    actions: &[crate::config::ActionSchema],
    timezone: chrono_tz::Tz,
) -> crate::config::Loaded {
    let mut loaded = crate::config::load(dir, actions, timezone);
    if let Ok(bundle) = &loaded.result {
        // A child process compiles with the built-in actions; other catalogues are checked here.
        let built_in = actions.iter().map(|a| a.name).eq(crate::actions::CATALOGUE.iter().map(|a| a.name));
        let mut problems = if built_in { helper::check(bundle, &loaded.sources) } else { check(bundle) };
        if !problems.is_empty() {
            problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            loaded.result = Err(problems);
        }
    }
    loaded
}
