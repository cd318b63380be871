//! The `postflow` binary.

fn main() -> std::process::ExitCode {
    postflow::cli::main()
}
