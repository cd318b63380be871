//! Keeps `flows/README.md` true: every YAML example on the page parses with the real raw types
//! (unknown keys are rejected), and the full flow example compiles in a scratch config.

mod common;

use postflow::config::raw::{RawFlow, RawFormat, RawMenu, RawPipeline, RawPipelineStep, RawSchedule, RawStep};
use postflow::conversation::Script;

fn yaml_blocks() -> Vec<String> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in spec.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_yaml_example_in_the_spec_parses() {
    let blocks = yaml_blocks();
    assert!(blocks.len() >= 10, "found only {} examples", blocks.len());
    for block in blocks {
        let value: serde_yaml::Value = serde_yaml::from_str(&block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let kind = value.get("kind").and_then(|k| k.as_str());
        let result = if kind == Some("menu") {
            serde_yaml::from_value::<RawMenu>(value).map(|_| ())
        } else if kind == Some("flow") {
            serde_yaml::from_value::<RawFlow>(value).and_then(|flow| {
                flow.steps.values().try_for_each(|step| serde_yaml::from_value::<RawStep>(step.clone()).map(|_| ()))
            })
        } else if kind == Some("schedule") {
            serde_yaml::from_value::<RawSchedule>(value).map(|_| ())
        } else if kind == Some("pipeline") {
            serde_yaml::from_value::<RawPipeline>(value).and_then(|pipeline| {
                pipeline
                    .steps
                    .iter()
                    .try_for_each(|step| serde_yaml::from_value::<RawPipelineStep>(step.clone()).map(|_| ()))
            })
        } else if value.get("turns").is_some() {
            serde_yaml::from_value::<Script>(value).map(|_| ())
        } else if value.get("names").is_some() {
            serde_yaml::from_value::<RawFormat>(value).map(|_| ())
        } else {
            serde_yaml::from_value::<RawStep>(value).map(|_| ())
        };
        if let Err(err) = result {
            panic!("a spec example does not parse: {err}\n{block}");
        }
    }
}

#[test]
fn the_spec_pipeline_example_validates_with_polars() {
    let block = yaml_blocks().into_iter().find(|b| b.contains("kind: pipeline")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_config(dir.path());
    std::fs::write(dir.path().join("flows/report_top_posts.yaml"), block).unwrap();
    let loaded = postflow::analytics::load_config(dir.path(), postflow::actions::CATALOGUE, chrono_tz::Asia::Yerevan);
    assert!(loaded.result.is_ok(), "{}", loaded.render_errors());
}

#[test]
fn the_spec_flow_example_compiles() {
    let block = yaml_blocks().into_iter().find(|b| b.contains("kind: flow")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["flows", "formats", "prompts/offline"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let root = env!("CARGO_MANIFEST_DIR");
    // The minimal example, with its order flow replaced by the spec's.
    for entry in std::fs::read_dir(format!("{root}/examples/minimal/flows")).unwrap() {
        let path = entry.unwrap().path();
        if let Some(name) = path.file_name().filter(|n| *n != "order.yaml") {
            std::fs::copy(&path, dir.path().join("flows").join(name)).unwrap();
        }
    }
    std::fs::write(dir.path().join("flows/order.yaml"), block).unwrap();
    std::fs::copy(format!("{root}/examples/minimal/formats/basic.yaml"), dir.path().join("formats/basic.yaml"))
        .unwrap();
    for prompt in ["offline/basic.j2", "ai/basic.j2", "ai/basic_system.j2"] {
        let target = dir.path().join("prompts").join(prompt);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(format!("{root}/examples/minimal/prompts/{prompt}"), target).unwrap();
    }
    let loaded = postflow::config::load(dir.path(), postflow::actions::CATALOGUE, chrono_tz::Asia::Yerevan);
    if let Err(d) = &loaded.result {
        panic!("{}", postflow::config::render_diagnostics(d, &loaded.sources));
    }
}

#[test]
fn every_menu_text_is_in_the_spec_table() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/README.md")).unwrap();
    let table: Vec<&str> = spec.lines().filter(|line| line.starts_with("| `")).collect();
    let missing: Vec<String> = postflow::config::bundle::required_texts()
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| {
            !table.iter().any(|row| row.split(" | ").next().is_some_and(|cell| cell.contains(&format!("`{key}`"))))
        })
        .collect();
    assert!(missing.is_empty(), "texts missing from the table in flows/README.md: {missing:?}");
}
