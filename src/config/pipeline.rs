//! Compiled analytics pipelines: parameters, the step vocabulary and sinks, each step with the
//! place in its file where it was written (so the analytics checks can point at it).

use serde::Serialize;

/// The sources a pipeline can read: the store exposed as tables.
pub const SOURCES: [&str; 5] = ["posts", "events", "clicks", "reactions", "subscribers"];

/// The periods a `period` parameter takes (`custom` comes with `from` and `to` dates).
pub const PERIODS: [&str; 11] =
    ["today", "yesterday", "week", "last_week", "month", "last_month", "7d", "30d", "year", "all", "custom"];

/// File formats a pipeline can be exported as.
pub const FILE_FORMATS: [&str; 3] = ["csv", "json", "parquet"];

/// An analytics report.
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub id: String,
    pub title: String,
    pub description: String,
    /// The file it came from, relative to the configuration directory.
    pub file: String,
    pub params: Vec<Param>,
    pub source: Located<String>,
    pub steps: Vec<Located<PipeStep>>,
    /// Column name → header shown in files and tables, in order.
    pub columns: Vec<(String, String)>,
    pub files: Vec<String>,
    pub table: Option<TableSink>,
    pub chart: Option<ChartSink>,
}

impl Pipeline {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The header for a column: its label from `columns:`, else its name.
    pub fn header<'a>(&'a self, column: &'a str) -> &'a str {
        self.columns.iter().find(|(name, _)| name == column).map_or(column, |(_, label)| label.as_str())
    }
}

/// A value with the position in its file where it was written.
#[derive(Debug, Clone, Serialize)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub len: usize,
}

/// A parameter of a pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    /// The value used when none is given; `None` means "no filter" (SQL NULL).
    pub default: Option<String>,
}

/// What a parameter accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "options", rename_all = "snake_case")]
pub enum ParamKind {
    /// One of [`PERIODS`]; gives `:from` and `:to` (local date-times) and `:period`.
    Period,
    /// A post format id.
    Format,
    /// A post status name.
    Status,
    Text,
    Int,
    Date,
    /// One of a fixed list.
    Choice(Vec<String>),
}

impl ParamKind {
    pub const NAMES: [&'static str; 7] = ["period", "format", "status", "text", "int", "date", "choice"];

    pub fn name(&self) -> &'static str {
        match self {
            ParamKind::Period => "period",
            ParamKind::Format => "format",
            ParamKind::Status => "status",
            ParamKind::Text => "text",
            ParamKind::Int => "int",
            ParamKind::Date => "date",
            ParamKind::Choice(_) => "choice",
        }
    }
}

/// One step of a pipeline. Expressions are SQL expressions evaluated by polars, with `:name`
/// standing for a parameter.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PipeStep {
    Filter(String),
    Select(Vec<String>),
    /// New or replaced columns: (name, expression).
    Derive(Vec<(String, String)>),
    GroupBy {
        keys: Vec<String>,
        /// (output column, aggregate expression such as `COUNT(*)` or `SUM(clicks)`).
        aggs: Vec<(String, String)>,
    },
    Join {
        source: String,
        on: Vec<String>,
        source_on: Vec<String>,
        how: JoinHow,
    },
    /// (column, descending).
    Sort(Vec<(String, bool)>),
    Limit(u64),
    Pivot {
        on: String,
        index: Vec<String>,
        values: String,
        agg: PivotAgg,
    },
    Rename(Vec<(String, String)>),
    /// A query over `self` (the rows so far) and every source by name.
    Sql(String),
}

impl PipeStep {
    pub fn verb(&self) -> &'static str {
        match self {
            PipeStep::Filter(_) => "filter",
            PipeStep::Select(_) => "select",
            PipeStep::Derive(_) => "derive",
            PipeStep::GroupBy { .. } => "group_by",
            PipeStep::Join { .. } => "join",
            PipeStep::Sort(_) => "sort",
            PipeStep::Limit(_) => "limit",
            PipeStep::Pivot { .. } => "pivot",
            PipeStep::Rename(_) => "rename",
            PipeStep::Sql(_) => "sql",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinHow {
    Left,
    Inner,
    Semi,
    Anti,
}

impl JoinHow {
    pub const NAMES: [&'static str; 4] = ["left", "inner", "semi", "anti"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "left" => JoinHow::Left,
            "inner" => JoinHow::Inner,
            "semi" => JoinHow::Semi,
            "anti" => JoinHow::Anti,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PivotAgg {
    Sum,
    Count,
    Mean,
    Min,
    Max,
    First,
}

impl PivotAgg {
    pub const NAMES: [&'static str; 6] = ["sum", "count", "mean", "min", "max", "first"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "sum" => PivotAgg::Sum,
            "count" => PivotAgg::Count,
            "mean" => PivotAgg::Mean,
            "min" => PivotAgg::Min,
            "max" => PivotAgg::Max,
            "first" => PivotAgg::First,
            _ => return None,
        })
    }
}

/// The rows as a text table in a Telegram message.
#[derive(Debug, Clone, Serialize)]
pub struct TableSink {
    pub max_rows: usize,
    /// The columns shown; empty means all.
    pub columns: Vec<Located<String>>,
}

/// The rows as a PNG chart: `x` along the bottom, one series per `y` column.
#[derive(Debug, Clone, Serialize)]
pub struct ChartSink {
    pub kind: ChartKind,
    pub x: Located<String>,
    pub y: Vec<Located<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    Line,
    Bar,
}
