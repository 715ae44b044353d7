//! The directory walker: which files under the given roots to load, and which were passed over
//! and why. It follows ripgrep's rules (with the `ignore` crate): `.gitignore`, `.ignore` and
//! `.corralignore` files are honoured, in a git repository or not; hidden files and directories are
//! skipped; a root that is a file is always taken, whatever the ignore files say.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ignore::WalkBuilder;

use super::{DEFAULT_MAX_FILE_BYTES, Format, LoadProblem};

/// The name of Corral's own ignore file, with `.gitignore` syntax.
pub const IGNORE_FILE: &str = ".corralignore";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkOptions {
    /// Larger files are skipped ([`SkipReason::TooLarge`]). Default 50 MiB, as for loading.
    pub max_file_bytes: u64,
    /// Follow symbolic links (loops are detected and reported). Default: no; links are reported
    /// as skipped.
    pub follow_links: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            follow_links: false,
        }
    }
}

/// What a walk found, each list sorted by path and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walked {
    /// Files to load, with their format.
    pub files: Vec<(PathBuf, Format)>,
    /// Files (and roots) passed over, and why. Files excluded by ignore rules, and hidden ones,
    /// are left out silently, as a user asked for that.
    pub skipped: Vec<Skipped>,
}

/// A path the walk passed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("no such file or directory")]
    Missing,
    #[error("cannot read it: {0}")]
    Unreadable(String),
    #[error("{}", LoadProblem::TooLarge { size: *size, limit: *limit })]
    TooLarge { size: u64, limit: u64 },
    #[error("{}", LoadProblem::Unsupported { extension: extension.clone() })]
    Unsupported { extension: Option<String> },
    #[error("it is a symbolic link, which is not followed")]
    Symlink,
    #[error("it is not a regular file or a directory")]
    NotAFile,
}

/// Finds the files to load under `roots`. Never fails: every problem, a missing root included, is
/// a [`Skipped`] entry. The order is sorted by path, whatever the order of `roots`.
pub fn walk(roots: &[PathBuf], options: &WalkOptions) -> Walked {
    let mut walked = Walked::default();
    for root in roots {
        match fs::metadata(root) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                walked.skip(root, SkipReason::Missing)
            }
            Err(error) => walked.skip(root, SkipReason::Unreadable(error.to_string())),
            Ok(meta) if meta.is_dir() => walk_dir(root, options, &mut walked),
            // Named explicitly: taken even if hidden or ignored, as ripgrep does.
            Ok(meta) if meta.is_file() => walked.consider(root, meta.len(), options),
            Ok(_) => walked.skip(root, SkipReason::NotAFile),
        }
    }
    walked.files.sort();
    walked.files.dedup_by(|a, b| a.0 == b.0);
    walked.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    walked.skipped.dedup_by(|a, b| a.path == b.path);
    walked
}

fn walk_dir(root: &Path, options: &WalkOptions, walked: &mut Walked) {
    let walker = WalkBuilder::new(root)
        .standard_filters(true)
        .hidden(true)
        .ignore(true)
        .git_ignore(true)
        .git_exclude(true)
        // The user's global gitignore would make results depend on the machine.
        .git_global(false)
        .require_git(false)
        .parents(true)
        .add_custom_ignore_filename(IGNORE_FILE)
        .follow_links(options.follow_links)
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                let path = error_path(&error).unwrap_or(root).to_owned();
                tracing::warn!(path = %path.display(), %error, "walk error");
                walked.skip(&path, SkipReason::Unreadable(error.to_string()));
                continue;
            }
        };
        if let Some(error) = entry.error() {
            // A bad line in an ignore file: the walk goes on without it.
            tracing::warn!(path = %entry.path().display(), %error, "ignore file problem");
        }
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if file_type.is_dir() {
            continue;
        }
        if file_type.is_symlink() {
            walked.skip(path, SkipReason::Symlink);
            continue;
        }
        if !file_type.is_file() {
            walked.skip(path, SkipReason::NotAFile);
            continue;
        }
        match entry.metadata() {
            Ok(meta) => walked.consider(path, meta.len(), options),
            Err(error) => walked.skip(path, SkipReason::Unreadable(error.to_string())),
        }
    }
}

/// The path an `ignore` error is about, if it names one.
fn error_path(error: &ignore::Error) -> Option<&Path> {
    match error {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::Loop { child, .. } => Some(child),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Partial(errors) => errors.iter().find_map(error_path),
        _ => None,
    }
}

impl Walked {
    fn skip(&mut self, path: &Path, reason: SkipReason) {
        tracing::debug!(path = %path.display(), %reason, "skipped");
        self.skipped.push(Skipped {
            path: path.to_owned(),
            reason,
        });
    }

    /// A regular file: taken if its type is supported and its size within the limit.
    fn consider(&mut self, path: &Path, size: u64, options: &WalkOptions) {
        let Some(format) = Format::from_path(path) else {
            let extension = path.extension().map(|e| e.to_string_lossy().into_owned());
            return self.skip(path, SkipReason::Unsupported { extension });
        };
        if size > options.max_file_bytes {
            let limit = options.max_file_bytes;
            return self.skip(path, SkipReason::TooLarge { size, limit });
        }
        self.files.push((path.to_owned(), format));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_after_the_path() {
        let skipped = Skipped {
            path: PathBuf::from("docs/scan.tiff"),
            reason: SkipReason::Unsupported {
                extension: Some("tiff".into()),
            },
        };
        assert!(
            skipped
                .to_string()
                .starts_with("docs/scan.tiff: unsupported file type `.tiff`; supported: pdf"),
            "{skipped}"
        );
        let skipped = Skipped {
            path: PathBuf::from("nowhere"),
            reason: SkipReason::Missing,
        };
        assert_eq!(skipped.to_string(), "nowhere: no such file or directory");
    }
}
