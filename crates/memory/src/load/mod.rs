//! Loaders: files in, [`Extracted`] text out. One module per format (PDF, Markdown, HTML, plain
//! text), the directory walker that finds the files, and the errors that say what is wrong with
//! which file.
//!
//! Files are untrusted input: every problem is a [`LoadError`] naming the file, and the PDF
//! parser, which can panic or hang on bad files, runs on its own thread with a time limit.

mod builder;
mod html;
mod isolate;
mod markdown;
mod pdf;
mod plain;
mod walk;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::text::Extracted;

pub use pdf::PDF_THREAD_NAME;
pub use walk::{IGNORE_FILE, SkipReason, Skipped, WalkOptions, Walked, walk};

/// 50 MiB: the default for [`LoadOptions::max_file_bytes`] and [`WalkOptions::max_file_bytes`].
pub const DEFAULT_MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;

/// The formats the loaders read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Pdf,
    Markdown,
    Html,
    Text,
}

// Extensions of each format, lower case.
const PDF_EXTENSIONS: &[&str] = &["pdf"];
const MARKDOWN_EXTENSIONS: &[&str] = &["md", "markdown", "mdown", "mkd", "mkdn"];
const HTML_EXTENSIONS: &[&str] = &["html", "htm", "xhtml"];
const TEXT_EXTENSIONS: &[&str] = &[
    "txt", "text", "rst", "csv", "tsv", "log", "adoc", "asciidoc", "org", "tex",
];
const EXTENSIONS: [(Format, &[&str]); 4] = [
    (Format::Pdf, PDF_EXTENSIONS),
    (Format::Markdown, MARKDOWN_EXTENSIONS),
    (Format::Html, HTML_EXTENSIONS),
    (Format::Text, TEXT_EXTENSIONS),
];

/// File names without an extension that are plain text by convention (upper case).
const TEXT_NAMES: &[&str] = &[
    "README",
    "LICENSE",
    "LICENCE",
    "COPYING",
    "NOTICE",
    "AUTHORS",
    "CHANGELOG",
    "CHANGES",
    "INSTALL",
    "NEWS",
];

impl Format {
    /// The format of a file, by its extension (case-insensitive), or `None` for a type the
    /// loaders do not read. A few extension-less names (`README`, `LICENSE`, …) are plain text.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension() {
            Some(ext) => Self::from_extension(&ext.to_str()?.to_ascii_lowercase()),
            None => {
                let name = path.file_name()?.to_str()?.to_ascii_uppercase();
                TEXT_NAMES.contains(&name.as_str()).then_some(Format::Text)
            }
        }
    }

    fn from_extension(ext: &str) -> Option<Format> {
        EXTENSIONS
            .iter()
            .find(|(_, extensions)| extensions.contains(&ext))
            .map(|(format, _)| *format)
    }

    /// The format as chunk metadata has it (`format = "pdf"` in a filter).
    pub fn id(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Text => "text",
        }
    }

    /// The format's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pdf => "PDF",
            Format::Markdown => "Markdown",
            Format::Html => "HTML",
            Format::Text => "text",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits that keep one bad file from stalling an ingestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Larger files are not read ([`LoadProblem::TooLarge`]). Default 50 MiB.
    pub max_file_bytes: u64,
    /// How long the PDF parser may take on one file ([`LoadProblem::PdfTimedOut`]). Default 60 s.
    pub pdf_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            pdf_timeout: Duration::from_secs(60),
        }
    }
}

/// A file, loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub path: PathBuf,
    pub format: Format,
    pub extracted: Extracted,
    /// SHA-256 of the file's bytes, lower-case hex: tells an unchanged file on re-ingestion.
    pub content_hash: String,
    /// PDF pages lost to a parser failure, for the ingestion summary (also logged as warnings).
    pub unreadable_pages: Vec<UnreadablePage>,
}

/// A page of a PDF whose text could not be read, in a document whose other pages were. Its
/// section is there, empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("page {page}: {problem}")]
pub struct UnreadablePage {
    pub page: u32,
    pub problem: String,
}

/// A file that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct LoadError {
    pub path: PathBuf,
    pub problem: LoadProblem,
}

/// What is wrong with a file. Each message reads after the file's name (`<path>: <message>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadProblem {
    #[error("cannot read it: {message}")]
    Io {
        kind: io::ErrorKind,
        message: String,
    },
    #[error(
        "it is {} ({size} bytes), over the {} limit on file size",
        human_size(*size),
        human_size(*limit)
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("it is a binary file, not text (NUL byte at offset {offset})")]
    Binary { offset: usize },
    #[error("it is not valid UTF-8 (invalid byte at offset {offset}); convert it to UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("it has no text (empty or only whitespace)")]
    Empty,
    #[error(
        "the PDF is password-protected; remove the password (for example `qpdf --decrypt`) and \
         load it again"
    )]
    PdfEncrypted,
    #[error(
        "the PDF has no extractable text on its {pages} page(s) (scanned images or blank pages?); \
         it needs OCR first"
    )]
    PdfNoText { pages: u32 },
    #[error("the PDF is damaged or not a PDF: {0}")]
    PdfCorrupt(String),
    #[error("the PDF parser crashed on it: {0}")]
    PdfPanicked(String),
    #[error(
        "reading the PDF took longer than the {}-second limit, so it was abandoned",
        limit.as_secs_f64()
    )]
    PdfTimedOut { limit: Duration },
    #[error("unsupported file type {}; supported: {}", describe_type(extension.as_deref()), supported_types())]
    Unsupported { extension: Option<String> },
}

impl LoadProblem {
    pub(crate) fn io(error: &io::Error) -> Self {
        LoadProblem::Io {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    pub(crate) fn unsupported(path: &Path) -> Self {
        LoadProblem::Unsupported {
            extension: path.extension().map(|e| e.to_string_lossy().into_owned()),
        }
    }
}

fn describe_type(extension: Option<&str>) -> String {
    match extension {
        Some(ext) => format!("`.{ext}`"),
        None => "(no extension)".to_owned(),
    }
}

fn supported_types() -> String {
    let extensions = EXTENSIONS.iter().flat_map(|(_, e)| e.iter().copied());
    extensions.collect::<Vec<_>>().join(", ")
}

/// `12.3 MiB`, `512 bytes`: sizes in messages.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// Loads one file: reads it (refusing one over `options.max_file_bytes`), hashes it and extracts
/// its text by its [`Format`]. Every problem is a [`LoadError`] naming `path`.
pub fn load_file(path: &Path, options: &LoadOptions) -> Result<Loaded, LoadError> {
    if Format::from_path(path).is_none() {
        return Err(LoadError {
            path: path.to_owned(),
            problem: LoadProblem::unsupported(path),
        });
    }
    let bytes = read_limited(path, options.max_file_bytes).map_err(|problem| LoadError {
        path: path.to_owned(),
        problem,
    })?;
    load_bytes(path, bytes, options)
}

/// [`load_file`] for bytes already in memory (a download, an archive member): `path` names the
/// document, gives its format by extension, and appears in errors; nothing is read from it.
pub fn load_bytes(path: &Path, bytes: Vec<u8>, options: &LoadOptions) -> Result<Loaded, LoadError> {
    let fail = |problem| LoadError {
        path: path.to_owned(),
        problem,
    };
    let format = Format::from_path(path).ok_or_else(|| fail(LoadProblem::unsupported(path)))?;
    let size = bytes.len() as u64;
    if size > options.max_file_bytes {
        return Err(fail(LoadProblem::TooLarge {
            size,
            limit: options.max_file_bytes,
        }));
    }
    let content_hash = format!("{:x}", Sha256::digest(&bytes));
    tracing::debug!(path = %path.display(), %format, size, "loading");
    let (extracted, unreadable_pages) = extract_all(format, bytes, options).map_err(fail)?;
    Ok(Loaded {
        path: path.to_owned(),
        format,
        extracted,
        content_hash,
        unreadable_pages,
    })
}

/// Extracts the text of bytes in a known format: the core of [`load_bytes`], for a caller that
/// reads and hashes files itself. `options.max_file_bytes` is not checked here, and PDF pages
/// that could not be read are only logged (as warnings); [`load_bytes`] lists them in
/// [`Loaded::unreadable_pages`].
pub fn extract(
    format: Format,
    bytes: Vec<u8>,
    options: &LoadOptions,
) -> Result<Extracted, LoadProblem> {
    extract_all(format, bytes, options).map(|(extracted, _)| extracted)
}

fn extract_all(
    format: Format,
    bytes: Vec<u8>,
    options: &LoadOptions,
) -> Result<(Extracted, Vec<UnreadablePage>), LoadProblem> {
    let (extracted, unreadable) = match format {
        Format::Pdf => pdf::extract(bytes, options.pdf_timeout)?,
        Format::Markdown => (markdown::extract(&bytes)?, Vec::new()),
        Format::Html => (html::extract(&bytes)?, Vec::new()),
        Format::Text => (plain::extract(&bytes)?, Vec::new()),
    };
    debug_assert_eq!(extracted.check(), Ok(()));
    Ok((extracted, unreadable))
}

/// Reads a whole file, but no more than `limit` bytes: the size is checked before reading and
/// again while reading, for a file that grows in between.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, LoadProblem> {
    let file = File::open(path).map_err(|e| LoadProblem::io(&e))?;
    let metadata = file.metadata().map_err(|e| LoadProblem::io(&e))?;
    if metadata.is_dir() {
        return Err(LoadProblem::Io {
            kind: io::ErrorKind::IsADirectory,
            message: "it is a directory".to_owned(),
        });
    }
    let size = metadata.len();
    if size > limit {
        return Err(LoadProblem::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| LoadProblem::io(&e))?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(LoadProblem::TooLarge { size: read, limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension_ignoring_case() {
        let cases = [
            ("a/report.PDF", Some(Format::Pdf)),
            ("notes.md", Some(Format::Markdown)),
            ("notes.markdown", Some(Format::Markdown)),
            ("page.htm", Some(Format::Html)),
            ("page.XHTML", Some(Format::Html)),
            ("data.csv", Some(Format::Text)),
            ("server.log", Some(Format::Text)),
            ("guide.rst", Some(Format::Text)),
            ("README", Some(Format::Text)),
            ("docs/License", Some(Format::Text)),
            ("photo.png", None),
            ("Makefile", None),
            ("archive.tar.gz", None),
            (".hidden", None),
        ];
        for (path, want) in cases {
            assert_eq!(Format::from_path(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn messages_name_the_file_and_the_problem() {
        let error = LoadError {
            path: PathBuf::from("docs/big.pdf"),
            problem: LoadProblem::TooLarge {
                size: 60 * 1024 * 1024,
                limit: DEFAULT_MAX_FILE_BYTES,
            },
        };
        assert_eq!(
            error.to_string(),
            "docs/big.pdf: it is 60.0 MiB (62914560 bytes), over the 50.0 MiB limit on file size"
        );
        let error = LoadError {
            path: PathBuf::from("x.bin"),
            problem: LoadProblem::unsupported(Path::new("x.bin")),
        };
        assert!(
            error
                .to_string()
                .starts_with("x.bin: unsupported file type `.bin`; supported: pdf, md"),
            "{error}"
        );
        let timed_out = LoadProblem::PdfTimedOut {
            limit: Duration::from_millis(1500),
        };
        assert_eq!(
            timed_out.to_string(),
            "reading the PDF took longer than the 1.5-second limit, so it was abandoned"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
