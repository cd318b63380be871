//! The Dockerfile, read instruction by instruction and checked against the code: the stages
//! exist, every file it copies is in the build context, the image runs as an unprivileged user
//! with the store on a volume, and its settings, health check and command are ones `postflow`
//! accepts. (No container engine runs in CI; this is what can be checked without one.)

use std::collections::HashMap;
use std::path::Path;

use clap::{CommandFactory, Parser};
use postflow::cli::{Cli, Command};

/// One instruction: its keyword (upper case) and the rest of the line, continuations joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn instructions() -> Vec<Instruction> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(current.is_empty(), "the Dockerfile ends in a continuation");
    joined
        .into_iter()
        .map(|line| {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_string() }
        })
        .collect()
}

/// The instructions of each stage, by stage name (or index).
fn stages() -> Vec<(String, Vec<Instruction>)> {
    let mut stages: Vec<(String, Vec<Instruction>)> = Vec::new();
    for instruction in instructions() {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => name.to_string(),
                _ => stages.len().to_string(),
            };
            stages.push((name, vec![instruction]));
        } else {
            stages.last_mut().expect("an instruction before the first FROM").1.push(instruction);
        }
    }
    stages
}

fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| panic!("not in exec form (a JSON array): {args}"))
}

fn env_of(stage: &[Instruction]) -> HashMap<String, String> {
    stage
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| i.args.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair} is not KEY=VALUE"));
            (key.to_string(), value.to_string())
        })
        .collect()
}

fn one<'a>(stage: &'a [Instruction], keyword: &str) -> &'a Instruction {
    let found: Vec<&Instruction> = stage.iter().filter(|i| i.keyword == keyword).collect();
    assert_eq!(found.len(), 1, "one {keyword} in the stage: {found:?}");
    found[0]
}

#[test]
fn the_image_is_built_in_one_stage_and_run_from_a_small_one() {
    let stages = stages();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let names: Vec<&str> = stages.iter().map(|(name, _)| name.as_str()).collect();
    let (_, build) = stages.iter().find(|(name, _)| name == "build").expect("a stage named build");
    let base = &build[0].args;
    let version = base.split(':').nth(1).and_then(|tag| tag.split('-').next()).unwrap_or_default();
    let minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(base.starts_with("rust:1.") && minor >= 85, "edition 2024 needs Rust 1.85 or newer: {base}");
    let builds: Vec<&Instruction> =
        build.iter().filter(|i| i.keyword == "RUN" && i.args.contains("cargo build")).collect();
    assert!(builds.iter().all(|i| i.args.contains("--release --locked --bin postflow")), "{builds:?}");
    assert_eq!(one(build, "WORKDIR").args, "/src");

    let (_, runtime) = stages.last().unwrap();
    let base = runtime[0].args.split_whitespace().next().unwrap();
    assert!(base.ends_with("-slim") || base.contains("distroless"), "a small runtime image: {base}");
    for copy in runtime.iter().filter(|i| i.keyword == "COPY") {
        if let Some(rest) = copy.args.strip_prefix("--from=") {
            let (stage, paths) = rest.split_once(' ').unwrap();
            assert!(names.contains(&stage), "COPY --from an unknown stage {stage}");
            assert_eq!(paths, "/src/target/release/postflow /usr/local/bin/postflow");
        }
    }
}

#[test]
fn everything_the_dockerfile_copies_is_in_the_build_context() {
    let ignored: Vec<String> = std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut copied = Vec::new();
    for instruction in instructions().iter().filter(|i| i.keyword == "COPY" && !i.args.starts_with("--from")) {
        let words: Vec<&str> = instruction.args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(repo().join(source).exists(), "COPY {source}: not in the repository");
            let top = source.split('/').next().unwrap();
            assert!(!ignored.iter().any(|pattern| pattern == top || pattern == source), "{source} is in .dockerignore");
            copied.push(source.to_string());
        }
    }
    for needed in ["Cargo.toml", "Cargo.lock", "src", "flows", "formats", "prompts"] {
        assert!(copied.iter().any(|c| c == needed), "{needed} is not copied: {copied:?}");
    }
    // The build script links the binary (packed relocations: less memory at every start).
    assert!(copied.iter().any(|c| c == "build.rs"), "build.rs is not copied: {copied:?}");
    // Cargo reads every [[bench]] target's file while building anything.
    assert!(copied.iter().any(|c| c == "benches"), "Cargo.toml names benches; they must be in the build");
    for target in ["target", ".git", ".env", "data"] {
        assert!(ignored.iter().any(|p| p == target), "{target} stays out of the build context");
    }
}

#[test]
fn the_runtime_stage_runs_postflow_unprivileged_with_its_settings_volume_and_health_check() {
    let stages = stages();
    let (_, runtime) = stages.last().unwrap();
    let user = &one(runtime, "USER").args;
    assert!(!["root", "0", "root:root", "0:0"].contains(&user.as_str()), "not root: {user}");

    let env = env_of(runtime);
    let known: Vec<String> =
        Cli::command().get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
    for key in env.keys() {
        assert!(known.contains(key), "ENV {key} is no postflow setting (known: {known:?})");
    }
    let workdir = &one(runtime, "WORKDIR").args;
    assert_eq!(env["CONFIG_DIR"], *workdir, "the configuration is copied into the working folder");
    for folder in ["flows", "formats", "prompts"] {
        assert!(
            runtime.iter().any(|i| i.keyword == "COPY" && i.args == format!("{folder} ./{folder}")),
            "{folder}/ is baked into CONFIG_DIR"
        );
    }
    let database = Path::new(&env["DATABASE_URL"]);
    let volumes = exec_form(&one(runtime, "VOLUME").args);
    assert!(volumes.iter().any(|v| database.parent() == Some(Path::new(v))), "the store is on the volume {volumes:?}");
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains(&format!("chown postflow:postflow {}", volumes[0]))),
        "the volume belongs to the user"
    );
    let addr: std::net::SocketAddr = env["HTTP_ADDR"].parse().unwrap();
    assert!(addr.ip().is_unspecified(), "reachable from outside the container: {addr}");
    assert_eq!(one(runtime, "EXPOSE").args, addr.port().to_string());
    assert_eq!(env["LOG_FORMAT"], "json");

    let health = &one(runtime, "HEALTHCHECK").args;
    let command = exec_form(health.split_once("CMD ").expect("HEALTHCHECK … CMD [...]").1);
    let parsed = Cli::try_parse_from(&command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(matches!(parsed.command, Command::Health { ready: false }), "the health check asks /healthz");

    let mut run = exec_form(&one(runtime, "ENTRYPOINT").args);
    run.extend(exec_form(&one(runtime, "CMD").args));
    assert_eq!(run, ["postflow", "run"]);
    assert!(matches!(Cli::try_parse_from(&run).unwrap().command, Command::Run(_)));
}
