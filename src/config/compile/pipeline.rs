//! Compiles `kind: pipeline` files: the shape of every step, parameter and sink. What needs
//! polars (SQL, column names) is checked afterwards by `analytics::check`.

use serde_yaml::{Mapping, Value as Yaml};

use super::Compiler;
use crate::config::diagnostic::suggestion_or_list;
use crate::config::pipeline::*;
use crate::config::raw::{RawParam, RawPipeline, RawPipelineStep};
use crate::config::source::SourceFile;

impl Compiler<'_> {
    pub(super) fn pipeline(&mut self, raw: &RawPipeline, file: &SourceFile) -> Option<Pipeline> {
        let before = self.diags.len();
        if raw.id.trim().is_empty() || !raw.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            self.error(file, "id", format!("pipeline id `{}` must be letters, digits, `_` or `-`", raw.id));
        }
        let source = self.located(file, "source", raw.source.clone());
        self.check_source(file, "source", &raw.source);

        let mut params = Vec::new();
        for (key, value) in &raw.params {
            let name = key.as_str().unwrap_or_default().to_string();
            let path = format!("params.{name}");
            if !is_identifier(&name) {
                self.error(file, &path, format!("parameter name `{name}` must be lower-case letters, digits or `_`"));
                continue;
            }
            if let Some(param) = self.param(file, &path, &name, value.clone()) {
                params.push(param);
            }
        }
        if params.iter().filter(|p| p.kind == ParamKind::Period).count() > 1 {
            self.error(file, "params", "a pipeline has at most one `period` parameter (it gives `:from` and `:to`)");
        }

        let mut steps = Vec::new();
        for (index, value) in raw.steps.iter().enumerate() {
            let path = format!("steps.{index}");
            let Some(raw_step) = self.deserialize::<RawPipelineStep>(file, &path, value.clone()) else { continue };
            if let Some(step) = self.pipe_step(file, &path, raw_step) {
                // Problems found later point at the step's expression.
                let at = format!("{path}.{}", step.verb());
                steps.push(self.located(file, &at, step));
            }
        }

        let columns =
            raw.columns.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), yaml_text(v)?))).collect::<Vec<_>>();
        if columns.len() != raw.columns.len() {
            self.error(file, "columns", "`columns:` maps column names to header texts");
        }

        let sinks = raw.sinks.as_ref();
        let files = match sinks.and_then(|s| s.files.clone()) {
            None => FILE_FORMATS.iter().map(|f| f.to_string()).collect(),
            Some(files) => {
                for (i, format) in files.iter().enumerate() {
                    if !FILE_FORMATS.contains(&format.as_str()) {
                        let d =
                            self.error(file, &format!("sinks.files.{i}"), format!("unknown file format `{format}`"));
                        self.hint(d, Some(suggestion_or_list(format, FILE_FORMATS)));
                    }
                }
                files
            }
        };
        let table = sinks.and_then(|s| s.table.as_ref()).map(|t| TableSink {
            max_rows: t.max_rows.unwrap_or(20),
            columns: t
                .columns
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, column)| self.located(file, &format!("sinks.table.columns.{i}"), column.clone()))
                .collect(),
        });
        let chart = match sinks.and_then(|s| s.chart.as_ref()) {
            None => None,
            Some(chart) => {
                let kind = match chart.kind.as_str() {
                    "line" => Some(ChartKind::Line),
                    "bar" => Some(ChartKind::Bar),
                    other => {
                        let d = self.error(file, "sinks.chart.type", format!("unknown chart type `{other}`"));
                        self.hint(d, Some(suggestion_or_list(other, ["line", "bar"])));
                        None
                    }
                };
                if chart.y.is_empty() {
                    self.error(file, "sinks.chart.y", "a chart needs at least one `y` column");
                }
                let x = self.located(file, "sinks.chart.x", chart.x.clone());
                let y = chart
                    .y
                    .iter()
                    .enumerate()
                    .map(|(i, column)| self.located(file, &format!("sinks.chart.y.{i}"), column.clone()))
                    .collect();
                kind.map(|kind| ChartSink { kind, x, y })
            }
        };
        if self.diags.len() > before {
            return None;
        }
        Some(Pipeline {
            id: raw.id.clone(),
            title: raw.title.clone().unwrap_or_else(|| raw.id.clone()),
            description: raw.description.clone().unwrap_or_default(),
            file: file.name.clone(),
            params,
            source,
            steps,
            columns,
            files,
            table,
            chart,
        })
    }

    fn located<T>(&self, file: &SourceFile, path: &str, value: T) -> Located<T> {
        let pos = file.value_pos(path);
        Located { value, line: pos.line, column: pos.col, len: pos.len }
    }

    fn check_source(&mut self, file: &SourceFile, path: &str, name: &str) {
        if !SOURCES.contains(&name) {
            let d = self.error(file, path, format!("unknown source `{name}`"));
            self.hint(d, Some(suggestion_or_list(name, SOURCES)));
        }
    }

    fn param(&mut self, file: &SourceFile, path: &str, name: &str, value: Yaml) -> Option<Param> {
        // `name: period` is short for `name: {type: period}`.
        let raw = match value {
            Yaml::String(kind) => RawParam { kind, default: None, options: Vec::new() },
            other => self.deserialize::<RawParam>(file, path, other)?,
        };
        let kind = match raw.kind.as_str() {
            "period" => ParamKind::Period,
            "format" => ParamKind::Format,
            "status" => ParamKind::Status,
            "text" => ParamKind::Text,
            "int" => ParamKind::Int,
            "date" => ParamKind::Date,
            "choice" if raw.options.is_empty() => {
                self.error(file, path, format!("choice parameter `{name}` needs `options:`"));
                return None;
            }
            "choice" => ParamKind::Choice(raw.options.clone()),
            other => {
                let d = self.error(file, &format!("{path}.type"), format!("unknown parameter type `{other}`"));
                self.hint(d, Some(suggestion_or_list(other, ParamKind::NAMES)));
                return None;
            }
        };
        if !raw.options.is_empty() && !matches!(kind, ParamKind::Choice(_)) {
            self.error(file, &format!("{path}.options"), "`options:` belongs to a `choice` parameter");
        }
        if kind == ParamKind::Period && matches!(name, "from" | "to") {
            self.error(file, path, "`from` and `to` are set by the period parameter; name it `period`");
        }
        let default = match &raw.default {
            None | Some(Yaml::Null) => None,
            Some(value) => match yaml_text(value) {
                Some(text) => Some(text),
                None => {
                    self.error(file, &format!("{path}.default"), "a default is a single value");
                    return None;
                }
            },
        };
        if let Some(default) = &default {
            let wrong = match &kind {
                ParamKind::Period => (!PERIODS.contains(&default.as_str()) || default == "custom")
                    .then(|| suggestion_or_list(default, PERIODS.iter().copied().filter(|p| *p != "custom"))),
                ParamKind::Format => (!self.format_ids.contains(default))
                    .then(|| suggestion_or_list(default, self.format_ids.iter().map(String::as_str))),
                ParamKind::Status => (!crate::config::bundle::POST_STATUSES.contains(&default.as_str()))
                    .then(|| suggestion_or_list(default, crate::config::bundle::POST_STATUSES)),
                ParamKind::Int => default.parse::<i64>().is_err().then(|| "a whole number".to_string()),
                ParamKind::Date => chrono::NaiveDate::parse_from_str(default, "%Y-%m-%d")
                    .is_err()
                    .then(|| "a date such as 2026-11-01".to_string()),
                ParamKind::Choice(options) => (!options.contains(default))
                    .then(|| suggestion_or_list(default, options.iter().map(String::as_str))),
                ParamKind::Text => None,
            };
            if let Some(hint) = wrong {
                let d = self.error(
                    file,
                    &format!("{path}.default"),
                    format!("`{default}` is not a valid {} for `{name}`", kind.name()),
                );
                self.hint(d, Some(hint));
                return None;
            }
        }
        Some(Param { name: name.to_string(), kind, default })
    }

    fn pipe_step(&mut self, file: &SourceFile, path: &str, raw: RawPipelineStep) -> Option<PipeStep> {
        let verbs = [
            raw.filter.is_some(),
            raw.select.is_some(),
            raw.derive.is_some(),
            raw.group_by.is_some() || raw.agg.is_some(),
            raw.join.is_some(),
            raw.sort.is_some(),
            raw.limit.is_some(),
            raw.pivot.is_some(),
            raw.rename.is_some(),
            raw.sql.is_some(),
        ]
        .iter()
        .filter(|present| **present)
        .count();
        if verbs != 1 {
            let d = self.error(file, path, format!("a step has exactly one verb; this one has {verbs}"));
            self.hint(
                d,
                Some("filter, select, derive, group_by (with agg), join, sort, limit, pivot, rename or sql".into()),
            );
            return None;
        }
        if let Some(expr) = raw.filter {
            return Some(PipeStep::Filter(expr));
        }
        if let Some(columns) = raw.select {
            if columns.is_empty() {
                self.error(file, &format!("{path}.select"), "`select:` needs at least one column");
                return None;
            }
            return Some(PipeStep::Select(columns));
        }
        if let Some(derive) = raw.derive {
            return self.pairs(file, &format!("{path}.derive"), &derive).map(PipeStep::Derive);
        }
        if raw.group_by.is_some() || raw.agg.is_some() {
            let (Some(keys), Some(aggs)) = (raw.group_by, raw.agg) else {
                self.error(file, path, "`group_by:` and `agg:` come together");
                return None;
            };
            let aggs = self.pairs(file, &format!("{path}.agg"), &aggs)?;
            if aggs.is_empty() {
                self.error(file, &format!("{path}.agg"), "`agg:` needs at least one aggregate");
                return None;
            }
            return Some(PipeStep::GroupBy { keys, aggs });
        }
        if let Some(join) = raw.join {
            self.check_source(file, &format!("{path}.join.source"), &join.source);
            let how = JoinHow::parse(&join.how);
            if how.is_none() {
                let d = self.error(file, &format!("{path}.join.how"), format!("unknown join `{}`", join.how));
                self.hint(d, Some(suggestion_or_list(&join.how, JoinHow::NAMES)));
            }
            let source_on = join.source_on.unwrap_or_else(|| join.on.clone());
            if join.on.is_empty() || source_on.len() != join.on.len() {
                self.error(file, &format!("{path}.join.on"), "`on:` and `source_on:` name the same number of columns");
                return None;
            }
            return Some(PipeStep::Join { source: join.source, on: join.on, source_on, how: how? });
        }
        if let Some(sort) = raw.sort {
            let keys = sort
                .iter()
                .map(|key| match key.strip_prefix('-') {
                    Some(column) => (column.trim().to_string(), true),
                    None => (key.trim().to_string(), false),
                })
                .collect();
            return Some(PipeStep::Sort(keys));
        }
        if let Some(limit) = raw.limit {
            return Some(PipeStep::Limit(limit));
        }
        if let Some(pivot) = raw.pivot {
            let agg = PivotAgg::parse(&pivot.agg);
            if agg.is_none() {
                let d = self.error(file, &format!("{path}.pivot.agg"), format!("unknown aggregate `{}`", pivot.agg));
                self.hint(d, Some(suggestion_or_list(&pivot.agg, PivotAgg::NAMES)));
            }
            return Some(PipeStep::Pivot { on: pivot.on, index: pivot.index, values: pivot.values, agg: agg? });
        }
        if let Some(rename) = raw.rename {
            return self.pairs(file, &format!("{path}.rename"), &rename).map(PipeStep::Rename);
        }
        raw.sql.map(PipeStep::Sql)
    }

    /// A mapping of names to texts, in order.
    fn pairs(&mut self, file: &SourceFile, path: &str, map: &Mapping) -> Option<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        for (key, value) in map {
            match (key.as_str(), yaml_text(value)) {
                (Some(name), Some(text)) => pairs.push((name.to_string(), text)),
                _ => {
                    self.error(file, path, "each entry is `name: expression`");
                    return None;
                }
            }
        }
        Some(pairs)
    }
}

fn is_identifier(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A scalar YAML value as text (numbers and booleans included).
fn yaml_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
