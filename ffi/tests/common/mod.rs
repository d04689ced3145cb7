//! Building the C test programs against the library cargo built for this
//! test run (shared by `c_api.rs` and `adversarial.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn ffi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the `libshmring_ffi.so` built with this test: this
/// executable's `deps/` (the copy in the profile directory above it is
/// refreshed only by `cargo build`, and can be stale).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test's directory");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        if dir.join("libshmring_ffi.so").exists() {
            return dir.to_path_buf();
        }
    }
    panic!("no libshmring_ffi.so next to {} (cargo builds it with the test)", exe.display());
}

/// Compiles `sources` (paths under `ffi/`) into `NAME-PID` in cargo's
/// test scratch directory, linked to [`lib_dir`]'s library.
pub fn compile(name: &str, sources: &[&str], libs: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let lib = lib_dir();
    let output = Command::new("cc")
        .args(["-std=c99", "-O2", "-g", "-Wall", "-Wextra", "-pedantic", "-Werror"])
        .arg("-I")
        .arg(ffi_dir().join("include"))
        .args(sources.iter().map(|s| ffi_dir().join(s)))
        .arg("-L")
        .arg(&lib)
        .arg("-lshmring_ffi")
        .args(libs)
        // RPATH, not RUNPATH: cargo test sets LD_LIBRARY_PATH to target/debug
        // first, whose copy of the library can be stale, and RUNPATH loses to it.
        .arg("-Wl,--disable-new-dtags")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("running cc");
    assert!(output.status.success(), "cc {sources:?}: {}", String::from_utf8_lossy(&output.stderr));
    out
}
