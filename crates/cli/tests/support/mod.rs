//! What the CLI tests share.

use std::path::Path;

use assert_cmd::Command;

/// `corral` run in `dir`, with no config or log filter from the environment.
pub fn corral(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("corral").expect("the corral binary is built");
    cmd.current_dir(dir)
        .env_remove("CORRAL_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}
