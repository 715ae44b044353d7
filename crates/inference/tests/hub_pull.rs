//! `local::hub` against a loopback Hub: a server for the API and `resolve` URLs, which redirects
//! LFS files to a second, CDN-like server that honours `Range`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use corral_inference::local::hub::{
    self, HubClient, HubConfig, HubError, NoProgress, PullProgress,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const REPO: &str = "acme/tiny-model";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

// ---------- a tiny HTTP/1.1 server ----------

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;
type Log = Arc<Mutex<Vec<Request>>>;

/// Serves `handler` on a loopback port, one request per connection; returns its base URL and log.
async fn serve(handler: Handler) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&raw).into_owned();
                let mut lines = text.split("\r\n");
                let mut first = lines.next().expect("request line").split(' ');
                let method = first.next().expect("request line part").to_owned();
                let path = first.next().expect("request line part").to_owned();
                let headers = lines
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let request = Request {
                    method,
                    path,
                    headers,
                };
                let response = handler(&request);
                seen.lock().expect("lock").push(request.clone());
                let mut head = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", response.status);
                if !response
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                {
                    head.push_str(&format!("content-length: {}\r\n", response.body.len()));
                }
                for (name, value) in &response.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                if request.method != "HEAD" {
                    let _ = stream.write_all(&response.body).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, log)
}

// ---------- a fake Hub ----------

#[derive(Clone)]
struct FakeFile {
    path: String,
    content: Vec<u8>,
    lfs: bool,
}

fn lfs(path: &str, content: Vec<u8>) -> FakeFile {
    FakeFile {
        path: path.to_owned(),
        content,
        lfs: true,
    }
}

fn git(path: &str, content: &str) -> FakeFile {
    FakeFile {
        path: path.to_owned(),
        content: content.as_bytes().to_vec(),
        lfs: false,
    }
}

#[derive(Default, Clone)]
struct Options {
    /// Bearer token the Hub requires.
    token: Option<String>,
    /// The CDN answers a range request with the whole file (200).
    cdn_ignores_range: bool,
    /// The CDN serves bytes that do not match the advertised sha256.
    corrupt: bool,
}

struct FakeHub {
    endpoint: String,
    hub_log: Log,
    cdn_log: Log,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic, incompressible-looking bytes.
fn blob(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed) | 0x9e37_0000;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

async fn fake_hub(files: Vec<FakeFile>, options: Options) -> FakeHub {
    let files = Arc::new(files);
    let cdn_files = files.clone();
    let cdn_options = options.clone();
    let (cdn, cdn_log) = serve(Arc::new(move |req: &Request| {
        let Some(sha) = req.path.strip_prefix("/blobs/") else {
            return Response::new(404, "no such blob");
        };
        let Some(file) = cdn_files.iter().find(|f| sha256(&f.content) == sha) else {
            return Response::new(404, "no such blob");
        };
        let mut content = file.content.clone();
        if cdn_options.corrupt {
            content[0] ^= 0xff;
        }
        let len = content.len();
        let from = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse::<usize>().ok());
        match from {
            Some(from) if !cdn_options.cdn_ignores_range => {
                if from >= len {
                    return Response::new(416, "")
                        .header("content-range", format!("bytes */{len}"));
                }
                Response::new(206, content[from..].to_vec())
                    .header("content-range", format!("bytes {from}-{}/{len}", len - 1))
            }
            _ => Response::new(200, content),
        }
    }))
    .await;

    let (endpoint, hub_log) = serve(Arc::new(move |req: &Request| {
        if let Some(token) = &options.token
            && req.header("authorization") != Some(&format!("Bearer {token}"))
        {
            return Response::new(
                401,
                r#"{"error":"Invalid credentials in Authorization header"}"#,
            )
            .header(
                "x-error-message",
                "Invalid credentials in Authorization header",
            );
        }
        let not_found = |code: &str| Response::new(404, "{}").header("x-error-code", code);
        let revision_ok = |rev: &str| rev == "main" || rev == COMMIT;
        if let Some(rest) = req.path.strip_prefix("/api/models/") {
            let Some((repo, rev)) = rest.split_once("/revision/") else {
                return not_found("RepoNotFound");
            };
            if repo != REPO {
                return not_found("RepoNotFound");
            }
            if !revision_ok(rev) {
                return not_found("RevisionNotFound");
            }
            let siblings: Vec<_> = files
                .iter()
                .map(|f| serde_json::json!({ "rfilename": f.path }))
                .collect();
            let body = serde_json::json!({ "id": REPO, "sha": COMMIT, "siblings": siblings });
            return Response::new(200, body.to_string()).header("content-type", "application/json");
        }
        let Some((repo, rest)) = req.path[1..].split_once("/resolve/") else {
            return not_found("RepoNotFound");
        };
        if repo != REPO {
            return not_found("RepoNotFound");
        }
        let (rev, path) = rest.split_once('/').expect("revision/path");
        if !revision_ok(rev) {
            return not_found("RevisionNotFound");
        }
        let Some(file) = files.iter().find(|f| f.path == path) else {
            return not_found("EntryNotFound");
        };
        let sha = sha256(&file.content);
        if file.lfs {
            Response::new(302, "")
                .header("location", format!("{cdn}/blobs/{sha}"))
                .header("x-linked-etag", format!("\"{sha}\""))
                .header("x-linked-size", file.content.len().to_string())
                .header("x-repo-commit", COMMIT)
                .header("etag", "\"0000000000000000000000000000000000000000\"")
        } else {
            let response = Response::new(200, file.content.clone())
                .header("etag", "\"1111111111111111111111111111111111111111\"")
                .header("x-repo-commit", COMMIT);
            if req.method == "HEAD" {
                response.header("content-length", file.content.len().to_string())
            } else {
                response
            }
        }
    }))
    .await;
    FakeHub {
        endpoint,
        hub_log,
        cdn_log,
    }
}

impl FakeHub {
    fn client(&self) -> HubClient {
        HubClient::new(HubConfig::new(&self.endpoint)).expect("client")
    }
    fn cdn_requests(&self) -> Vec<Request> {
        self.cdn_log.lock().expect("lock").clone()
    }
    fn hub_requests(&self) -> Vec<Request> {
        self.hub_log.lock().expect("lock").clone()
    }
}

#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    advanced: Mutex<u64>,
}

impl PullProgress for Recorder {
    fn start(&self, file: &str, total: Option<u64>, have: u64) {
        self.events
            .lock()
            .expect("lock")
            .push(format!("start {file} {total:?} {have}"));
    }
    fn advance(&self, bytes: u64) {
        *self.advanced.lock().expect("lock") += bytes;
    }
    fn finish(&self, file: &str) {
        self.events
            .lock()
            .expect("lock")
            .push(format!("finish {file}"));
    }
}

fn model_dir(root: &Path) -> PathBuf {
    root.join("acme").join("tiny-model")
}

// ---------- tests ----------

#[tokio::test]
async fn pulls_the_gguf_and_verifies_its_sha256() {
    let gguf = blob(300_000, 1);
    let hub = fake_hub(
        vec![
            git("README.md", "# tiny"),
            lfs("tiny-Q4_K_M.gguf", gguf.clone()),
            git(".gitattributes", "*.gguf filter=lfs"),
        ],
        Options::default(),
    )
    .await;
    let dest = tempfile::tempdir().expect("temp dir");
    let progress = Recorder::default();
    let paths = hub
        .client()
        .pull(REPO, None, None, dest.path(), &progress)
        .await
        .expect("the pull succeeds");
    let expected = model_dir(dest.path()).join("tiny-Q4_K_M.gguf");
    assert_eq!(paths, vec![expected.clone()]);
    assert_eq!(std::fs::read(&expected).expect("downloaded file"), gguf);
    assert!(
        !dest
            .path()
            .join("acme/tiny-model/tiny-Q4_K_M.gguf.part")
            .exists()
    );
    assert_eq!(
        *progress.events.lock().expect("lock"),
        vec![
            format!("start tiny-Q4_K_M.gguf Some({}) 0", gguf.len()),
            "finish tiny-Q4_K_M.gguf".to_owned()
        ]
    );
    assert_eq!(*progress.advanced.lock().expect("lock"), gguf.len() as u64);
    // The download came through the CDN, from the listed commit, without a range.
    let cdn = hub.cdn_requests();
    assert_eq!(cdn.len(), 1);
    assert!(cdn[0].header("range").is_none());
    assert!(
        hub.hub_requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.contains(&format!("/resolve/{COMMIT}/")))
    );

    // A second pull finds the file and downloads nothing.
    let again = hub
        .client()
        .pull(REPO, None, None, dest.path(), &NoProgress)
        .await
        .expect("the pull succeeds");
    assert_eq!(again, vec![expected]);
    assert_eq!(hub.cdn_requests().len(), 1);
}

#[tokio::test]
async fn pulls_a_sentence_transformers_set() {
    let weights = blob(50_000, 2);
    let hub = fake_hub(
        vec![
            git("README.md", "# embedder"),
            git("config.json", r#"{"hidden_size": 8}"#),
            git("tokenizer.json", r#"{"model": {}}"#),
            git("modules.json", "[]"),
            git(
                "1_Pooling/config.json",
                r#"{"pooling_mode_mean_tokens": true}"#,
            ),
            lfs("model.safetensors", weights.clone()),
            lfs("onnx/model.onnx", blob(1000, 3)),
            lfs("pytorch_model.bin", blob(1000, 4)),
        ],
        Options::default(),
    )
    .await;
    let dest = tempfile::tempdir().expect("temp dir");
    let paths = hub
        .client()
        .pull(REPO, Some("main"), None, dest.path(), &NoProgress)
        .await
        .expect("the pull succeeds");
    let dir = model_dir(dest.path());
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(&dir)
                .expect("under the model dir")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "1_Pooling/config.json",
            "config.json",
            "model.safetensors",
            "modules.json",
            "tokenizer.json"
        ]
    );
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).expect("downloaded file"),
        weights
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("1_Pooling/config.json")).expect("downloaded file"),
        r#"{"pooling_mode_mean_tokens": true}"#
    );
}

#[tokio::test]
async fn resumes_a_partial_download_with_a_range_request() {
    let gguf = blob(200_000, 5);
    let hub = fake_hub(vec![lfs("model.gguf", gguf.clone())], Options::default()).await;
    let dest = tempfile::tempdir().expect("temp dir");
    let dir = model_dir(dest.path());
    std::fs::create_dir_all(&dir).expect("test setup");
    std::fs::write(dir.join("model.gguf.part"), &gguf[..80_000]).expect("test setup");
    let progress = Recorder::default();
    let paths = hub
        .client()
        .pull(REPO, None, Some("model.gguf"), dest.path(), &progress)
        .await
        .expect("the pull succeeds");
    assert_eq!(std::fs::read(&paths[0]).expect("downloaded file"), gguf);
    assert!(!dir.join("model.gguf.part").exists());
    let cdn = hub.cdn_requests();
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].header("range"), Some("bytes=80000-"));
    assert_eq!(
        progress.events.lock().expect("lock")[0],
        "start model.gguf Some(200000) 80000"
    );
    assert_eq!(*progress.advanced.lock().expect("lock"), 120_000);
}

#[tokio::test]
async fn starts_over_when_the_server_ignores_the_range() {
    let gguf = blob(100_000, 6);
    let hub = fake_hub(
        vec![lfs("model.gguf", gguf.clone())],
        Options {
            cdn_ignores_range: true,
            ..Options::default()
        },
    )
    .await;
    let dest = tempfile::tempdir().expect("temp dir");
    let dir = model_dir(dest.path());
    std::fs::create_dir_all(&dir).expect("test setup");
    std::fs::write(dir.join("model.gguf.part"), &gguf[..30_000]).expect("test setup");
    let paths = hub
        .client()
        .pull(REPO, None, Some("model.gguf"), dest.path(), &NoProgress)
        .await
        .expect("the pull succeeds");
    assert_eq!(std::fs::read(&paths[0]).expect("downloaded file"), gguf);
    assert_eq!(hub.cdn_requests()[0].header("range"), Some("bytes=30000-"));
}

#[tokio::test]
async fn a_stale_part_that_does_not_verify_is_downloaded_again() {
    let gguf = blob(100_000, 7);
    let hub = fake_hub(vec![lfs("model.gguf", gguf.clone())], Options::default()).await;
    let dest = tempfile::tempdir().expect("temp dir");
    let dir = model_dir(dest.path());
    std::fs::create_dir_all(&dir).expect("test setup");
    std::fs::write(dir.join("model.gguf.part"), blob(40_000, 99)).expect("test setup");
    let paths = hub
        .client()
        .pull(REPO, None, Some("model.gguf"), dest.path(), &NoProgress)
        .await
        .expect("the pull succeeds");
    assert_eq!(std::fs::read(&paths[0]).expect("downloaded file"), gguf);
    let ranges: Vec<_> = hub
        .cdn_requests()
        .iter()
        .map(|r| r.header("range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, vec![Some("bytes=40000-".to_owned()), None]);
}

#[tokio::test]
async fn a_sha256_mismatch_is_an_error_and_leaves_no_file() {
    let hub = fake_hub(
        vec![lfs("model.gguf", blob(10_000, 8))],
        Options {
            corrupt: true,
            ..Options::default()
        },
    )
    .await;
    let dest = tempfile::tempdir().expect("temp dir");
    let error = hub
        .client()
        .pull(REPO, None, None, dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails");
    assert!(
        matches!(error, HubError::ChecksumMismatch { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("model.gguf") && message.contains(REPO),
        "{message}"
    );
    let dir = model_dir(dest.path());
    assert!(!dir.join("model.gguf").exists());
    assert!(!dir.join("model.gguf.part").exists());
}

#[tokio::test]
async fn missing_repo_and_file_are_named() {
    let hub = fake_hub(vec![lfs("model.gguf", blob(100, 9))], Options::default()).await;
    let dest = tempfile::tempdir().expect("temp dir");
    let error = hub
        .client()
        .pull("acme/nope", None, None, dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails");
    let message = error.to_string();
    assert!(matches!(error, HubError::NotFound { .. }), "{error:?}");
    assert!(message.contains("repo acme/nope not found"), "{message}");

    let error = hub
        .client()
        .pull(REPO, None, Some("other.gguf"), dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails");
    let message = error.to_string();
    assert!(
        message.contains("file other.gguf in repo acme/tiny-model")
            && message.contains("not found"),
        "{message}"
    );

    let error = hub
        .client()
        .pull(REPO, Some("v9"), None, dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails");
    assert!(error.to_string().contains("revision v9"), "{error}");
}

#[tokio::test]
async fn unauthorized_says_to_set_hf_token_and_the_token_is_sent_to_the_hub_only() {
    let gguf = blob(5_000, 10);
    let hub = fake_hub(
        vec![lfs("model.gguf", gguf.clone())],
        Options {
            token: Some("hf_secret".to_owned()),
            ..Options::default()
        },
    )
    .await;
    let dest = tempfile::tempdir().expect("temp dir");
    let error = hub
        .client()
        .pull(REPO, None, None, dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails");
    let message = error.to_string();
    assert!(
        matches!(error, HubError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(
        message.contains("HF_TOKEN") && message.contains(REPO),
        "{message}"
    );

    let with_token =
        HubClient::new(HubConfig::new(&hub.endpoint).with_token("hf_secret")).expect("client");
    assert!(!format!("{:?}", with_token.config()).contains("hf_secret"));
    let paths = with_token
        .pull(REPO, None, None, dest.path(), &NoProgress)
        .await
        .expect("the pull succeeds");
    assert_eq!(std::fs::read(&paths[0]).expect("downloaded file"), gguf);
    assert!(
        hub.cdn_requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );

    let wrong =
        HubClient::new(HubConfig::new(&hub.endpoint).with_token("hf_wrong")).expect("client");
    let message = wrong
        .pull(REPO, None, None, dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails")
        .to_string();
    assert!(
        message.contains("HF_TOKEN was sent but rejected"),
        "{message}"
    );
}

#[tokio::test]
async fn connection_refused_names_the_endpoint() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let client = HubClient::new(HubConfig::new(&endpoint)).expect("client");
    let dest = tempfile::tempdir().expect("temp dir");
    let error = client
        .pull(REPO, None, None, dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails");
    let message = error.to_string();
    assert!(matches!(error, HubError::Connect { .. }), "{error:?}");
    assert!(
        message.contains(&endpoint) && message.contains("HF_ENDPOINT"),
        "{message}"
    );
}

#[tokio::test]
async fn hostile_listings_and_bad_names_are_refused() {
    let hub = fake_hub(
        vec![lfs("../escape.gguf", blob(10, 11))],
        Options::default(),
    )
    .await;
    let dest = tempfile::tempdir().expect("temp dir");
    let error = hub
        .client()
        .pull(REPO, None, None, dest.path(), &NoProgress)
        .await
        .expect_err("the pull fails");
    assert!(matches!(error, HubError::InvalidFile { .. }), "{error:?}");
    for repo in ["", "a/b/c", "../x", "a b/c"] {
        let error = hub
            .client()
            .pull(repo, None, None, dest.path(), &NoProgress)
            .await
            .expect_err("the pull fails");
        assert!(
            matches!(error, HubError::InvalidRepo { .. }),
            "{repo}: {error:?}"
        );
    }
    assert!(hub::local_path(dest.path(), REPO, "/etc/passwd").is_err());
}

#[test]
fn selection_prefers_one_quantisation_and_groups_shards() {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let picked = hub::select_files(
        REPO,
        &names(&[
            "m-Q2_K.gguf",
            "m-Q4_K_M.gguf",
            "m-Q8_0.gguf",
            "mmproj-f16.gguf",
        ]),
    )
    .expect("selects");
    assert_eq!(picked, ["m-Q4_K_M.gguf"]);

    let picked = hub::select_files(
        REPO,
        &names(&[
            "Q8_0/m-Q8_0-00002-of-00002.gguf",
            "Q8_0/m-Q8_0-00001-of-00002.gguf",
            "README.md",
        ]),
    )
    .expect("selects");
    assert_eq!(
        picked,
        [
            "Q8_0/m-Q8_0-00001-of-00002.gguf",
            "Q8_0/m-Q8_0-00002-of-00002.gguf"
        ]
    );

    let error = hub::select_files(REPO, &names(&["a-F16.gguf", "b-BF16.gguf"]))
        .expect_err("the pull fails");
    assert!(
        error.to_string().contains("a-F16.gguf, b-BF16.gguf")
            && error.to_string().contains("--file"),
        "{error}"
    );

    let error =
        hub::select_files(REPO, &names(&["README.md", "model.onnx"])).expect_err("the pull fails");
    assert!(matches!(error, HubError::NoModelFiles { .. }), "{error}");
}

#[test]
fn config_and_cache_dir_come_from_the_given_variables() {
    let config = HubConfig::from_lookup(|name| match name {
        "HF_ENDPOINT" => Some("http://mirror.local:8080/".to_owned()),
        "HF_TOKEN" => Some(" hf_abc ".to_owned()),
        _ => None,
    });
    assert_eq!(config.endpoint, "http://mirror.local:8080");
    assert_eq!(config.token.as_deref(), Some("hf_abc"));
    assert_eq!(
        HubConfig::from_lookup(|_| None),
        HubConfig::new(hub::DEFAULT_ENDPOINT)
    );
    let client = HubClient::new(config).expect("client");
    assert_eq!(
        client.resolve_url(REPO, "refs/pr/1", "sub dir/m.gguf"),
        "http://mirror.local:8080/acme/tiny-model/resolve/refs%2Fpr%2F1/sub%20dir/m.gguf"
    );

    let dir = hub::models_dir_from(|name| (name == "CORRAL_CACHE").then(|| "/c".into()));
    assert_eq!(dir, Some(PathBuf::from("/c/models")));
    let dir = hub::models_dir_from(|name| (name == "HOME").then(|| "/home/u".into()));
    assert_eq!(dir, Some(PathBuf::from("/home/u/.cache/corral/models")));
    assert_eq!(hub::models_dir_from(|_| None), None);
}

/// The free `pull` reads `HF_ENDPOINT` from the process environment. Setting variables in this
/// (multi-threaded) test process would race, so the test runs itself again as a child process
/// with the variable set; the child half is `env_child`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_endpoint_is_read_from_the_environment() {
    let gguf = blob(20_000, 12);
    let hub = fake_hub(vec![lfs("model.gguf", gguf.clone())], Options::default()).await;
    let dest = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let endpoint = hub.endpoint.clone();
    let dest_path = dest.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--exact", "env_child", "--nocapture", "--test-threads=1"])
            .env("HF_ENDPOINT", endpoint)
            .env("CORRAL_HUB_TEST_DEST", dest_path)
            .env_remove("HF_TOKEN")
            .env_remove("HUGGING_FACE_HUB_TOKEN")
            .output()
            .expect("child runs")
    })
    .await
    .expect("joins");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(model_dir(dest.path()).join("model.gguf")).expect("downloaded file"),
        gguf
    );
    assert!(!hub.hub_requests().is_empty());
}

#[tokio::test]
async fn env_child() {
    // Only does something when run by `hf_endpoint_is_read_from_the_environment`.
    let Some(dest) = std::env::var_os("CORRAL_HUB_TEST_DEST") else {
        return;
    };
    hub::pull(REPO, None, None, Path::new(&dest), &NoProgress)
        .await
        .expect("the child pull succeeds");
}
