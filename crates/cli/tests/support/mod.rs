//! What the CLI tests share.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// `corral` run in `dir`, with no config or log filter from the environment.
#[allow(dead_code)]
pub fn corral(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("corral").expect("the corral binary is built");
    cmd.current_dir(dir)
        .env_remove("CORRAL_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}

/// The cache the set-up scripts fill: `$CORRAL_CACHE`, else `~/.cache/corral`.
#[allow(dead_code)]
pub fn cache() -> PathBuf {
    std::env::var_os("CORRAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/corral")))
        .expect("a cache dir")
}

/// `path`, which the set-up `script` provides; a clear failure when it is missing.
#[allow(dead_code)]
pub fn needed(path: PathBuf, script: &str) -> PathBuf {
    assert!(path.exists(), "no {}: run {script}", path.display());
    path
}
