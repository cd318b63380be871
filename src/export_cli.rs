//! `postflow pipelines` and `postflow export`: the operator's way to analytics — list the
//! pipelines, run one over the store and write its rows to a file or stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::analytics::{self, FileFormat, SourceContext};
use crate::cli::{ExportArgs, load_bundle};
use crate::config::pipeline::{PERIODS, ParamKind};
use crate::settings::Settings;
use crate::store::Store;

/// `postflow pipelines`: one block per pipeline with its parameters and file formats.
pub fn list(settings: &Settings) -> anyhow::Result<ExitCode> {
    let bundle = load_bundle(settings)?;
    if bundle.pipelines.is_empty() {
        println!("no pipelines (add `kind: pipeline` files under flows/)");
    }
    for pipeline in &bundle.pipelines {
        println!("{}  —  {}", pipeline.id, pipeline.title);
        if !pipeline.description.is_empty() {
            println!("    {}", pipeline.description);
        }
        for param in &pipeline.params {
            let accepts = match &param.kind {
                ParamKind::Period => {
                    format!(
                        "{} (or --from/--to dates)",
                        PERIODS.iter().filter(|p| **p != "custom").copied().collect::<Vec<_>>().join("|")
                    )
                }
                ParamKind::Format => bundle.formats.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join("|"),
                ParamKind::Status => crate::config::bundle::POST_STATUSES.join("|"),
                ParamKind::Choice(options) => options.join("|"),
                ParamKind::Int => "a whole number".to_string(),
                ParamKind::Date => "YYYY-MM-DD".to_string(),
                ParamKind::Text => "text".to_string(),
            };
            let default = param.default.as_deref().map(|d| format!(", default {d}")).unwrap_or_else(|| {
                if param.kind == ParamKind::Period { ", default all".into() } else { ", default: any".into() }
            });
            println!("    --param {}=<{accepts}>{default}", param.name);
        }
        println!("    files: {}", pipeline.files.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `postflow export <pipeline>`.
pub fn export(settings: &Settings, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let bundle = load_bundle(settings)?;
    let mut given = BTreeMap::new();
    for pair in &args.params {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("`--param {pair}` must be NAME=VALUE, e.g. --param period=week"))?;
        given.insert(name.trim().to_string(), value.trim().to_string());
    }
    if let Some(from) = &args.from {
        given.insert("from".to_string(), from.clone());
    }
    if let Some(to) = &args.to {
        given.insert("to".to_string(), to.clone());
    }
    let format = match (&args.format, args.out.rsplit_once('.')) {
        (Some(name), _) => FileFormat::parse(name)
            .ok_or_else(|| anyhow::anyhow!("unknown format `{name}`; use csv, json or parquet"))?,
        (None, Some((_, extension))) if args.out != "-" => FileFormat::parse(extension).unwrap_or(FileFormat::Csv),
        _ => FileFormat::Csv,
    };
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(Duration::from_millis(120));
    progress.set_message(format!("{}: reading the store", args.pipeline));
    let store = Store::open(&settings.store_path())
        .with_context(|| "cannot read the store (while `postflow run` holds it, export from the bot's 📊 menu)")?;
    let timezone = settings.tz()?;
    let context = SourceContext {
        timezone,
        // What the running bot saw, else what the settings say.
        channel_link: store
            .channel_link()?
            .or_else(|| settings.channel_id.as_deref().and_then(SourceContext::channel_link_for)),
    };
    let today = chrono::Utc::now().with_timezone(&timezone).date_naive();
    progress.set_message(format!("{}: running", args.pipeline));
    let report = analytics::report(&bundle, &args.pipeline, &given, &store, context, today)?;
    let rows = report.frame.height();
    progress.set_message(format!("{}: writing {rows} rows as {}", args.pipeline, format.extension()));
    if args.out == "-" {
        let bytes = analytics::sinks::to_bytes(report.pipeline, &report.frame, format)?;
        progress.finish_and_clear();
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes)?;
        stdout.flush()?;
    } else {
        // Written beside the target first, so a failed export never leaves half a file.
        let partial = format!("{}.partial", args.out);
        let file = std::fs::File::create(&partial).with_context(|| format!("cannot write {partial}"))?;
        let mut writer = std::io::BufWriter::new(file);
        analytics::sinks::write(report.pipeline, &report.frame, format, &mut writer)?;
        writer.flush().with_context(|| format!("cannot write {partial}"))?;
        drop(writer);
        std::fs::rename(&partial, &args.out).with_context(|| format!("cannot write {}", args.out))?;
        progress.finish_and_clear();
        let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or_default();
        eprintln!("{rows} rows → {} ({size} bytes)", args.out);
    }
    Ok(ExitCode::SUCCESS)
}
