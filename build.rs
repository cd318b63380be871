//! Build script: links the `postflow` binary with packed relative relocations (DT_RELR) where the
//! toolchain and the C library support them. The binary's 174,000 relocations then take 50 KiB
//! instead of 4 MiB, which the loader reads at every start and which stayed resident (about
//! 3.6 MiB of an idle process). A probe program is linked and run first: with an older GNU ld
//! (< 2.38) or glibc (< 2.36), or when cross-compiling, the binary is linked as before.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    if target_os == "linux" && target_env == "gnu" && native && packed_relocations_work() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the linker (Cargo's `target.linker`, else `$CC`, else `cc`) links a program with
/// packed relocations without a complaint, and it runs.
fn packed_relocations_work() -> bool {
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return false };
    let source = out_dir.join("relr_probe.c");
    let program = out_dir.join("relr_probe");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").or_else(|_| std::env::var("CC")).unwrap_or_else(|_| "cc".to_string());
    let linked = Command::new(linker)
        .arg("-fPIE")
        .arg("-pie")
        .arg("-Wl,-z,pack-relative-relocs")
        .arg(&source)
        .arg("-o")
        .arg(&program)
        .output();
    match linked {
        // An ld that does not know the option warns and ignores it.
        Ok(output) if output.status.success() && output.stderr.is_empty() => {
            Command::new(&program).status().is_ok_and(|status| status.success())
        }
        _ => false,
    }
}
