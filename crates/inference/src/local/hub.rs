//! Downloading model files from the Hugging Face Hub (`corral models pull <repo> [--file F]`).
//!
//! - **Endpoint and token.** [`HubConfig::from_env`] reads `HF_ENDPOINT` (default
//!   <https://huggingface.co>) and `HF_TOKEN` (sent as `Authorization: Bearer …` to the endpoint
//!   only; it is never logged, and redirects to another host drop it).
//! - **What is pulled.** With a file name, that file. Without one, the repo's listing
//!   (`GET {endpoint}/api/models/{repo}/revision/{rev}`) decides, see [`select_files`]: the GGUF
//!   model (all shards of a split one; with several quantisations, a preferred one such as
//!   `Q4_K_M`), else a sentence-transformers set (configs, tokenizer, safetensors weights,
//!   `N_Pooling/config.json`, …). Files come from the commit the listing names, so a set is never
//!   mixed across commits.
//! - **Where.** `dest_root/<owner>/<name>/<file>`; [`default_models_dir`] is
//!   `$CORRAL_CACHE/models`, else `~/.cache/corral/models`. A file is written to `<file>.part` and
//!   renamed once complete and verified; a file already there with the expected size is kept.
//! - **Resume.** A leftover `.part` is continued with `Range: bytes=N-`; a `206` appends, a `200`
//!   (server ignoring ranges) starts over, a `416` drops the stale part and starts over.
//! - **Verification.** A `HEAD` of `{endpoint}/{repo}/resolve/{rev}/{file}` (redirects not
//!   followed, so the Hub's own headers are seen) gives `x-linked-etag` (the sha256 of an LFS or
//!   Xet file), `x-linked-size` and `x-repo-commit`. The download (which follows the Hub's redirect
//!   to its CDN) is hashed as it is written and checked against that sha256 — or against `etag`
//!   when that is a 64-hex sha256; small git-stored files only get a size check. On a mismatch the
//!   file is deleted (a mismatch after a resume retries once from zero).
//!
//! Why not the `hf-hub` crate (1.0): it brings `reqwest` 0.13 beside our 0.12, makes `hf-xet`
//! (and with it aws-lc-sys, ~590 crates in all) a mandatory dependency, truncates rather than
//! resumes partial downloads, and does not check the sha256 of what it downloads. The part we need
//! is a few HTTP requests, written here on the workspace's `reqwest`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{self, HeaderMap};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The public Hub, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The revision pulled when none is given.
pub const DEFAULT_REVISION: &str = "main";
/// GGUF quantisations picked, in this order, when a repo offers several.
pub const PREFERRED_QUANTS: &[&str] = &["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q8_0", "Q4_0"];

/// Same-host redirects (a renamed repo) followed when asking for a file's metadata.
const MAX_METADATA_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next bytes of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const WRITE_BUFFER: usize = 1 << 20;
/// Error bodies are cut to this many characters.
const MAX_ERROR_BODY: usize = 500;

/// Where the Hub is and who we are to it.
#[derive(Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Base URL, without a trailing slash (`https://huggingface.co`, a mirror, a test server).
    pub endpoint: String,
    /// Access token for private and gated repos.
    pub token: Option<String>,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HubConfig {
    /// A config for `endpoint`, without a token.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        Self {
            endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same config, sending `token`.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// `HF_ENDPOINT` and `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`) from the environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let endpoint =
            non_empty(lookup("HF_ENDPOINT")).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let token = non_empty(lookup("HF_TOKEN"))
            .or_else(|| non_empty(lookup("HUGGING_FACE_HUB_TOKEN")))
            .map(|t| t.trim().to_owned());
        Self {
            token,
            ..Self::new(endpoint)
        }
    }
}

/// `$CORRAL_CACHE/models`, else `~/.cache/corral/models`; `None` without either variable or a home.
pub fn default_models_dir() -> Option<PathBuf> {
    models_dir_from(|name| std::env::var_os(name))
}

/// As [`default_models_dir`], reading variables through `lookup`.
pub fn models_dir_from(lookup: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| lookup(name).filter(|v| !v.is_empty());
    if let Some(cache) = set("CORRAL_CACHE") {
        return Some(PathBuf::from(cache).join("models"));
    }
    let home = set("HOME").or_else(|| set("USERPROFILE"))?;
    Some(PathBuf::from(home).join(".cache/corral/models"))
}

/// Progress of a pull, file by file (the CLI drives a progress bar with it).
///
/// For each file: `start`, then `advance` for every chunk written, then `finish`. `start` is
/// called again for the same file when a download has to begin anew (`already_have` 0).
pub trait PullProgress: Send + Sync {
    /// A file begins: its size when known, and the bytes already on disk (a resumed `.part`, or the
    /// whole file when it is already there).
    fn start(&self, file: &str, total_bytes: Option<u64>, already_have: u64);
    /// `bytes` more bytes were written.
    fn advance(&self, bytes: u64);
    /// The file is complete and verified.
    fn finish(&self, file: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl PullProgress for NoProgress {
    fn start(&self, _file: &str, _total_bytes: Option<u64>, _already_have: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self, _file: &str) {}
}

/// Why a pull failed. Every message names the repo, file or URL concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error(
        "invalid Hugging Face repo id {repo:?}: {reason} (expected owner/name, e.g. BAAI/bge-small-en-v1.5)"
    )]
    InvalidRepo { repo: String, reason: &'static str },
    #[error("repo {repo}: refusing file path {file:?}: {reason}")]
    InvalidFile {
        repo: String,
        file: String,
        reason: &'static str,
    },
    #[error("{what} not found on the Hub (HTTP 404 from {url})")]
    NotFound { what: String, url: String },
    #[error("{what}: access denied (HTTP {status} from {url}); {hint}")]
    Unauthorized {
        what: String,
        status: u16,
        url: String,
        hint: String,
    },
    #[error("{what}: HTTP {status} from {url}: {body}")]
    Status {
        what: String,
        status: u16,
        url: String,
        body: String,
    },
    #[error(
        "cannot connect to {url} (Hub endpoint {endpoint}; set HF_ENDPOINT to change it): {detail}"
    )]
    Connect {
        endpoint: String,
        url: String,
        detail: String,
    },
    #[error("{what}: request to {url} failed: {detail}")]
    Transport {
        what: String,
        url: String,
        detail: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error(
        "repo {repo}: nothing to pull by default (no GGUF, no sentence-transformers safetensors set); pass --file with one of: {files}"
    )]
    NoModelFiles { repo: String, files: String },
    #[error(
        "repo {repo} has several GGUF models and none of the preferred quantisations ({preferred}); pass --file with one of: {candidates}"
    )]
    AmbiguousGguf {
        repo: String,
        preferred: String,
        candidates: String,
    },
    #[error(
        "repo {repo}: file {file}: sha256 mismatch (the Hub says {expected}, the download has {actual}); the download was deleted, pull again"
    )]
    ChecksumMismatch {
        repo: String,
        file: String,
        expected: String,
        actual: String,
    },
    #[error(
        "repo {repo}: file {file}: expected {expected} bytes, the download has {actual}; the download was deleted, pull again"
    )]
    SizeMismatch {
        repo: String,
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The part of the Hub's model info that a pull needs.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    /// The commit the revision points at.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

/// One file of a repo.
#[derive(Debug, Clone, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
}

/// What a `HEAD` of a resolve URL says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMetadata {
    /// `x-linked-size`, else `content-length`.
    pub size: Option<u64>,
    /// Lower-case hex sha256, when the Hub gives one (`x-linked-etag`, or a 64-hex `etag`).
    pub sha256: Option<String>,
    /// `x-repo-commit`.
    pub commit: Option<String>,
}

/// Downloads from one Hub endpoint.
#[derive(Debug, Clone)]
pub struct HubClient {
    config: HubConfig,
    /// Follows redirects (the Hub sends LFS downloads to its CDN).
    http: Client,
    /// Follows none, so the Hub's own `x-linked-*` headers are seen.
    metadata_http: Client,
}

impl HubClient {
    /// A client for `config`'s endpoint. Opens no connection.
    pub fn new(config: HubConfig) -> Result<Self, HubError> {
        let builder = || {
            Client::builder()
                .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
        };
        let build_error = |error: reqwest::Error| HubError::Transport {
            what: "building the HTTP client".to_owned(),
            url: config.endpoint.clone(),
            detail: reqwest_detail(&error),
        };
        let http = builder().build().map_err(build_error)?;
        let metadata_http = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(build_error)?;
        Ok(Self {
            config,
            http,
            metadata_http,
        })
    }

    /// A client for the endpoint and token in the environment ([`HubConfig::from_env`]).
    pub fn from_env() -> Result<Self, HubError> {
        Self::new(HubConfig::from_env())
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{file}`.
    pub fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        let file: Vec<String> = file.split('/').map(encode_segment).collect();
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.config.endpoint,
            encode_segment(revision),
            file.join("/")
        )
    }

    /// The repo's commit and files at `revision`.
    pub async fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo, HubError> {
        validate_repo(repo)?;
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.config.endpoint,
            encode_segment(revision)
        );
        let what = format!("repo {repo} at revision {revision}");
        tracing::debug!(%url, "listing Hub repo");
        let response = self
            .send(self.authorized(self.http.get(&url)), &url, &what)
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(self
                .status_error(response, &url, &what, repo, revision, None)
                .await);
        }
        let body = response.bytes().await.map_err(|e| HubError::Transport {
            what: what.clone(),
            url: url.clone(),
            detail: reqwest_detail(&e),
        })?;
        serde_json::from_slice(&body).map_err(|e| HubError::Protocol {
            url,
            reason: format!("the model info is not the expected JSON: {e}"),
        })
    }

    /// Size, sha256 and commit of `file`, from a `HEAD` of its resolve URL.
    pub async fn file_metadata(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<FileMetadata, HubError> {
        validate_repo(repo)?;
        validate_file(repo, file)?;
        let what = format!("file {file} in repo {repo} at revision {revision}");
        let mut url = self.resolve_url(repo, revision, file);
        for _ in 0..=MAX_METADATA_REDIRECTS {
            tracing::debug!(%url, "HEAD");
            let request = self
                .metadata_http
                .head(&url)
                .header(header::ACCEPT_ENCODING, "identity");
            let response = self.send(self.authorized(request), &url, &what).await?;
            let status = response.status();
            let headers = response.headers();
            let linked_etag = header_text(headers, "x-linked-etag");
            if status.is_redirection() && linked_etag.is_none() {
                // A renamed repo redirects to its new name on the same host: ask there. Any other
                // redirect without metadata is the download itself; take what headers there are.
                if let Some(next) = same_origin_location(&url, headers) {
                    url = next;
                    continue;
                }
            }
            if status.is_success() || status.is_redirection() {
                let size = header_text(headers, "x-linked-size")
                    .or_else(|| {
                        status
                            .is_success()
                            .then(|| header_text(headers, header::CONTENT_LENGTH.as_str()))
                            .flatten()
                    })
                    .and_then(|s| s.parse().ok());
                let etag = linked_etag.or_else(|| header_text(headers, header::ETAG.as_str()));
                return Ok(FileMetadata {
                    size,
                    sha256: etag.as_deref().and_then(sha256_from_etag),
                    commit: header_text(headers, "x-repo-commit"),
                });
            }
            return Err(self
                .status_error(response, &url, &what, repo, revision, Some(file))
                .await);
        }
        Err(HubError::Protocol {
            url,
            reason: format!("more than {MAX_METADATA_REDIRECTS} redirects"),
        })
    }

    /// Pulls `file`, or without one the model files [`select_files`] picks from the repo's
    /// listing, into `dest_root/<owner>/<name>/`. Returns the local paths, in pull order.
    pub async fn pull(
        &self,
        repo: &str,
        revision: Option<&str>,
        file: Option<&str>,
        dest_root: &Path,
        progress: &dyn PullProgress,
    ) -> Result<Vec<PathBuf>, HubError> {
        validate_repo(repo)?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        let (revision, files) = match file {
            Some(file) => (revision.to_owned(), vec![file.to_owned()]),
            None => {
                let info = self.repo_info(repo, revision).await?;
                let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
                let picked = select_files(repo, &names)?;
                let commit = info.sha.filter(|sha| is_hex(sha, 40));
                (commit.unwrap_or_else(|| revision.to_owned()), picked)
            }
        };
        let mut paths = Vec::with_capacity(files.len());
        for file in &files {
            paths.push(
                self.download_file(repo, &revision, file, dest_root, progress)
                    .await?,
            );
        }
        Ok(paths)
    }

    /// Downloads one file to `dest_root/<owner>/<name>/<file>` (resuming, verifying, see the
    /// module docs) and returns that path.
    pub async fn download_file(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        dest_root: &Path,
        progress: &dyn PullProgress,
    ) -> Result<PathBuf, HubError> {
        let target = local_path(dest_root, repo, file)?;
        let meta = self.file_metadata(repo, revision, file).await?;
        if let Ok(existing) = tokio::fs::metadata(&target).await
            && existing.is_file()
            && meta.size.is_none_or(|size| size == existing.len())
        {
            tracing::debug!(path = %target.display(), "already downloaded");
            progress.start(file, Some(existing.len()), existing.len());
            progress.finish(file);
            return Ok(target);
        }
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| io_error(parent, source))?;
        }
        // Download from the commit the HEAD saw, so data and metadata match.
        let url = self.resolve_url(repo, meta.commit.as_deref().unwrap_or(revision), file);
        let part = part_path(&target);
        for attempt in 0..2 {
            let outcome = self
                .fetch(&url, repo, file, &part, meta.size, progress)
                .await?;
            let mismatch = if let Some(expected) = meta.size
                && outcome.len != expected
            {
                Some(HubError::SizeMismatch {
                    repo: repo.to_owned(),
                    file: file.to_owned(),
                    expected,
                    actual: outcome.len,
                })
            } else if let Some(expected) = &meta.sha256
                && *expected != outcome.sha256
            {
                Some(HubError::ChecksumMismatch {
                    repo: repo.to_owned(),
                    file: file.to_owned(),
                    expected: expected.clone(),
                    actual: outcome.sha256,
                })
            } else {
                None
            };
            if let Some(error) = mismatch {
                remove_if_present(&part).await?;
                if outcome.resumed && attempt == 0 {
                    tracing::warn!(%repo, %file, %error, "resumed download did not verify; starting over");
                    continue;
                }
                return Err(error);
            }
            tokio::fs::rename(&part, &target)
                .await
                .map_err(|source| io_error(&target, source))?;
            progress.finish(file);
            tracing::info!(path = %target.display(), bytes = outcome.len, verified = meta.sha256.is_some(), "downloaded");
            return Ok(target);
        }
        Err(HubError::Protocol {
            url,
            reason: format!("{file} did not verify after starting over"),
        })
    }

    /// Fetches `url` into `part`, continuing what is there; hashes the whole file.
    async fn fetch(
        &self,
        url: &str,
        repo: &str,
        file: &str,
        part: &Path,
        total: Option<u64>,
        progress: &dyn PullProgress,
    ) -> Result<Fetched, HubError> {
        let what = format!("file {file} in repo {repo}");
        let mut have = match tokio::fs::metadata(part).await {
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };
        if total.is_some_and(|total| have > total) {
            remove_if_present(part).await?;
            have = 0;
        }
        if have > 0 && total == Some(have) {
            progress.start(file, total, have);
            return Ok(Fetched {
                len: have,
                sha256: hash_file(part).await?,
                resumed: true,
            });
        }
        let response = loop {
            let mut request = self.authorized(self.http.get(url));
            if have > 0 {
                tracing::debug!(%url, from = have, "resuming download");
                request = request.header(header::RANGE, format!("bytes={have}-"));
            }
            let response = self.send(request, url, &what).await?;
            if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
                remove_if_present(part).await?;
                have = 0;
                continue;
            }
            break response;
        };
        let status = response.status();
        let resumed = have > 0 && status == StatusCode::PARTIAL_CONTENT;
        if resumed {
            let start = header_text(response.headers(), header::CONTENT_RANGE.as_str())
                .and_then(|range| content_range_start(&range));
            if start.is_some_and(|start| start != have) {
                return Err(HubError::Protocol {
                    url: url.to_owned(),
                    reason: format!("asked for bytes from {have}, got {start:?}"),
                });
            }
        } else if status.is_success() {
            have = 0;
        } else {
            return Err(self
                .status_error(response, url, &what, repo, "", Some(file))
                .await);
        }
        let total = total.or_else(|| response.content_length().map(|len| len + have));
        let mut hasher = Sha256::new();
        let out = if resumed {
            hash_into(part, &mut hasher).await?;
            tokio::fs::OpenOptions::new().append(true).open(part).await
        } else {
            tokio::fs::File::create(part).await
        }
        .map_err(|source| io_error(part, source))?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, out);
        progress.start(file, total, have);
        let mut len = have;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| HubError::Transport {
                what: format!(
                    "{what}: download interrupted after {len} bytes (kept in {}; pull again to resume)",
                    part.display()
                ),
                url: url.to_owned(),
                detail: reqwest_detail(&e),
            })?;
            out.write_all(&chunk)
                .await
                .map_err(|source| io_error(part, source))?;
            hasher.update(&chunk);
            len += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        out.flush().await.map_err(|source| io_error(part, source))?;
        out.into_inner()
            .sync_all()
            .await
            .map_err(|source| io_error(part, source))?;
        Ok(Fetched {
            len,
            sha256: hex::encode(hasher.finalize()),
            resumed,
        })
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.config.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(
        &self,
        request: RequestBuilder,
        url: &str,
        what: &str,
    ) -> Result<Response, HubError> {
        request.send().await.map_err(|error| {
            let detail = reqwest_detail(&error);
            let url = error
                .url()
                .map(|u| {
                    let mut u = u.clone();
                    u.set_query(None);
                    u.to_string()
                })
                .unwrap_or_else(|| url.to_owned());
            if error.is_connect() {
                HubError::Connect {
                    endpoint: self.config.endpoint.clone(),
                    url,
                    detail,
                }
            } else {
                HubError::Transport {
                    what: what.to_owned(),
                    url,
                    detail,
                }
            }
        })
    }

    /// The error for a non-success `response`, refined by the Hub's `x-error-code`.
    async fn status_error(
        &self,
        response: Response,
        url: &str,
        what: &str,
        repo: &str,
        revision: &str,
        file: Option<&str>,
    ) -> HubError {
        let status = response.status();
        let code = header_text(response.headers(), "x-error-code").unwrap_or_default();
        let message = header_text(response.headers(), "x-error-message");
        let url = url.to_owned();
        let at = if revision.is_empty() {
            String::new()
        } else {
            format!(" at revision {revision}")
        };
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let hint = match (&self.config.token, code.as_str()) {
                    (None, _) => {
                        "the repo may be private or gated, or not exist: set HF_TOKEN to a Hugging Face access token that can read it (https://huggingface.co/settings/tokens)"
                    }
                    (Some(_), "GatedRepo") => {
                        "HF_TOKEN was sent, but this gated repo's conditions have not been accepted for its account: accept them on the model page"
                    }
                    (Some(_), _) if status == StatusCode::UNAUTHORIZED => {
                        "HF_TOKEN was sent but rejected: check that it is valid"
                    }
                    (Some(_), _) => {
                        "HF_TOKEN was sent but has no access to this repo (for a fine-grained token, allow reading it)"
                    }
                };
                HubError::Unauthorized {
                    what: what.to_owned(),
                    status: status.as_u16(),
                    url,
                    hint: hint.to_owned(),
                }
            }
            StatusCode::NOT_FOUND => {
                let what = match (code.as_str(), file) {
                    ("RepoNotFound", _) => format!("repo {repo}"),
                    ("RevisionNotFound", _) => format!("revision {revision} of repo {repo}"),
                    ("EntryNotFound", Some(file)) => format!("file {file} in repo {repo}{at}"),
                    (_, Some(file)) => format!("repo {repo} or its file {file}{at}"),
                    (_, None) => format!("repo {repo}{at}"),
                };
                HubError::NotFound { what, url }
            }
            _ => {
                let body = match message {
                    Some(message) => message,
                    None => response.text().await.unwrap_or_default(),
                };
                let mut body: String = body.trim().chars().take(MAX_ERROR_BODY).collect();
                if body.is_empty() {
                    body = status.canonical_reason().unwrap_or("no detail").to_owned();
                }
                HubError::Status {
                    what: what.to_owned(),
                    status: status.as_u16(),
                    url,
                    body,
                }
            }
        }
    }
}

/// Pulls with the endpoint and token from the environment; see [`HubClient::pull`].
pub async fn pull(
    repo: &str,
    revision: Option<&str>,
    file: Option<&str>,
    dest_root: &Path,
    progress: &dyn PullProgress,
) -> Result<Vec<PathBuf>, HubError> {
    HubClient::from_env()?
        .pull(repo, revision, file, dest_root, progress)
        .await
}

/// The files a pull without `--file` takes from a repo's listing.
///
/// GGUF first: a repo with one GGUF model (its shards, when split as `-00001-of-00003.gguf`)
/// gives that; with several, the first of [`PREFERRED_QUANTS`] that names exactly one; `mmproj`
/// projector files are left out unless there is nothing else. Otherwise a sentence-transformers /
/// safetensors set: `config.json`, tokenizer files, `modules.json` and the sentence-transformers
/// configs, the top-level `.safetensors` (and index), and `config.json` / `.safetensors` inside
/// numbered module folders (`1_Pooling/config.json`, `2_Dense/…`). Every name is checked as a
/// relative path without `..`.
pub fn select_files(repo: &str, files: &[String]) -> Result<Vec<String>, HubError> {
    for file in files {
        validate_file(repo, file)?;
    }
    let ggufs: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    if !ggufs.is_empty() {
        return select_gguf(repo, &ggufs);
    }
    select_safetensors_set(repo, files)
}

fn select_gguf(repo: &str, ggufs: &[&str]) -> Result<Vec<String>, HubError> {
    let is_projector = |f: &&str| basename(f).to_ascii_lowercase().starts_with("mmproj");
    let models: Vec<&str> = ggufs.iter().copied().filter(|f| !is_projector(f)).collect();
    let models = if models.is_empty() {
        ggufs.to_vec()
    } else {
        models
    };
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for file in models {
        groups
            .entry(split_group(file))
            .or_default()
            .push(file.to_owned());
    }
    if groups.len() > 1 {
        let chosen = PREFERRED_QUANTS.iter().find_map(|quant| {
            let mut matching = groups
                .keys()
                .filter(|key| key.to_ascii_uppercase().contains(quant));
            match (matching.next(), matching.next()) {
                (Some(key), None) => Some(key.clone()),
                _ => None,
            }
        });
        let Some(chosen) = chosen else {
            return Err(HubError::AmbiguousGguf {
                repo: repo.to_owned(),
                preferred: PREFERRED_QUANTS.join(", "),
                candidates: groups.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        groups.retain(|key, _| *key == chosen);
    }
    let mut picked: Vec<String> = groups.into_values().flatten().collect();
    picked.sort();
    Ok(picked)
}

/// `dir/model-Q4_K_M-00001-of-00003.gguf` → `dir/model-Q4_K_M.gguf`; other names unchanged.
fn split_group(file: &str) -> String {
    let Some(stem) = file.get(..file.len().saturating_sub(5)) else {
        return file.to_owned();
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((left, count)) = stem.rsplit_once("-of-")
        && digits(count)
        && let Some((prefix, index)) = left.rsplit_once('-')
        && digits(index)
    {
        return format!("{prefix}.gguf");
    }
    file.to_owned()
}

const TRANSFORMERS_ROOT_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "model.safetensors.index.json",
];

fn select_safetensors_set(repo: &str, files: &[String]) -> Result<Vec<String>, HubError> {
    let is_module_dir = |dir: &str| {
        dir.split_once('_').is_some_and(|(n, name)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        })
    };
    let picked: Vec<String> = files
        .iter()
        .filter(|file| match file.split_once('/') {
            None => {
                TRANSFORMERS_ROOT_FILES.contains(&file.as_str()) || file.ends_with(".safetensors")
            }
            Some((dir, name)) => {
                is_module_dir(dir)
                    && !name.contains('/')
                    && (name == "config.json" || name.ends_with(".safetensors"))
            }
        })
        .cloned()
        .collect();
    let has_weights = picked
        .iter()
        .any(|f| !f.contains('/') && f.ends_with(".safetensors"));
    if !has_weights || !picked.iter().any(|f| f == "config.json") {
        const SHOWN: usize = 40;
        let mut listed = files.iter().take(SHOWN).cloned().collect::<Vec<_>>();
        if files.len() > SHOWN {
            listed.push(format!("… ({} more)", files.len() - SHOWN));
        }
        return Err(HubError::NoModelFiles {
            repo: repo.to_owned(),
            files: if listed.is_empty() {
                "(the repo lists no files)".to_owned()
            } else {
                listed.join(", ")
            },
        });
    }
    Ok(picked)
}

/// `dest_root/<owner>/<name>/<file>`, after checking both names.
pub fn local_path(dest_root: &Path, repo: &str, file: &str) -> Result<PathBuf, HubError> {
    validate_repo(repo)?;
    validate_file(repo, file)?;
    let mut path = dest_root.to_path_buf();
    path.extend(repo.split('/'));
    path.extend(file.split('/'));
    Ok(path)
}

fn validate_repo(repo: &str) -> Result<(), HubError> {
    let invalid = |reason| {
        Err(HubError::InvalidRepo {
            repo: repo.to_owned(),
            reason,
        })
    };
    if repo.is_empty() {
        return invalid("it is empty");
    }
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 {
        return invalid("it has more than one '/'");
    }
    for part in parts {
        if part.is_empty() || part == "." || part == ".." || part.len() > 96 {
            return invalid("a name is empty, '.', '..' or too long");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return invalid("names may only hold letters, digits, '-', '_' and '.'");
        }
    }
    Ok(())
}

fn validate_file(repo: &str, file: &str) -> Result<(), HubError> {
    let invalid = |reason| {
        Err(HubError::InvalidFile {
            repo: repo.to_owned(),
            file: file.to_owned(),
            reason,
        })
    };
    if file.is_empty() {
        return invalid("it is empty");
    }
    if file.contains(['\\', '\0', ':']) {
        return invalid("it holds '\\', ':' or NUL");
    }
    if file
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return invalid("it is absolute or has an empty, '.' or '..' component");
    }
    if file.ends_with(".part") {
        return invalid("'.part' names are kept for partial downloads");
    }
    Ok(())
}

struct Fetched {
    len: u64,
    sha256: String,
    resumed: bool,
}

fn part_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

fn basename(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

fn io_error(path: &Path, source: std::io::Error) -> HubError {
    HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

async fn remove_if_present(path: &Path) -> Result<(), HubError> {
    match tokio::fs::remove_file(path).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_error(path, error)),
        _ => Ok(()),
    }
}

async fn hash_into(path: &Path, hasher: &mut Sha256) -> Result<(), HubError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|source| io_error(path, source))?;
    let mut buffer = vec![0; WRITE_BUFFER];
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|source| io_error(path, source))?;
        if read == 0 {
            return Ok(());
        }
        hasher.update(buffer.get(..read).unwrap_or_default());
    }
}

async fn hash_file(path: &Path) -> Result<String, HubError> {
    let mut hasher = Sha256::new();
    hash_into(path, &mut hasher).await?;
    Ok(hex::encode(hasher.finalize()))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `"abc…"` or `W/"abc…"` → `abc…` when it is a 64-hex sha256.
fn sha256_from_etag(etag: &str) -> Option<String> {
    let etag = etag.trim().trim_start_matches("W/").trim_matches('"');
    is_hex(etag, 64).then(|| etag.to_ascii_lowercase())
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `bytes 100-199/200` → 100.
fn content_range_start(range: &str) -> Option<u64> {
    let range = range.trim().strip_prefix("bytes")?.trim_start();
    range.split_once('-')?.0.trim().parse().ok()
}

/// The `Location` of a redirect, resolved against `url`, when it stays on the same origin.
fn same_origin_location(url: &str, headers: &HeaderMap) -> Option<String> {
    let base = reqwest::Url::parse(url).ok()?;
    let next = base
        .join(&header_text(headers, header::LOCATION.as_str())?)
        .ok()?;
    (next.origin() == base.origin()).then(|| next.to_string())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (so `refs/pr/1` → `refs%2Fpr%2F1`).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What went wrong in a reqwest error: its causes (its own message only repeats the URL).
fn reqwest_detail(error: &reqwest::Error) -> String {
    std::error::Error::source(error).map_or_else(|| error.to_string(), error_chain)
}

/// An error and its causes, `: `-joined (reqwest's own message leaves out "connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
