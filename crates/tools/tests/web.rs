//! `http_fetch` and `web_search` against scripted HTTP/1.1 servers on loopback: the address
//! policy (loopback, private targets reached by redirect, metadata addresses — each checked by
//! the server seeing no connection at all), size and time limits, redirects, text extraction and
//! charsets; and the exact requests the search backends get, with realistic answers and errors.

#![cfg(feature = "web")]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use corral_core::{
    CapabilityError, ErrorKind, NoToolContext, Tool, ToolError, ToolOutput, ToolRuntimeProvider,
};
use corral_tools::web::{
    HttpFetch, HttpFetchConfig, HttpFetchProvider, NameResolver, SearchBackend, WebSearch,
    WebSearchConfig, WebSearchProvider,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// A scripted server: every connection is one request; the handler picks the reply by request.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// Path and query, as sent.
    target: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
enum Reply {
    /// A response with `Content-Length`.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A response whose body ends when the connection closes (no `Content-Length`).
    CloseDelimited {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Headers claiming `Content-Length: length`, then nothing: a body that never comes.
    PromisesBody { length: u64 },
    /// Reads the request and never answers.
    Stall,
}

impl Reply {
    fn typed(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::Full {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }
    fn html(body: &str) -> Self {
        Self::typed("text/html; charset=utf-8", body)
    }
    fn json(status: u16, body: &Value) -> Self {
        Self::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }
    fn status(status: u16, content_type: &str, body: &str) -> Self {
        Self::Full {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
        }
    }
    fn redirect(location: &str) -> Self {
        Self::Full {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }
    fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Self::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Request>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Server {
    async fn start(ip: &str, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind((ip, 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let accept = tokio::spawn({
            let connections = Arc::clone(&connections);
            let requests = Arc::clone(&requests);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(answer(stream, Arc::clone(&handler), Arc::clone(&requests)));
                }
            }
        });
        Self {
            addr,
            connections,
            requests,
            accept,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    fn port(&self) -> u16 {
        self.addr.port()
    }
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn answer(mut stream: TcpStream, handler: Handler, requests: Arc<Mutex<Vec<Request>>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let reply = handler(&request);
    requests.lock().expect("lock").push(request);
    let (head, body) = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            (head, body)
        }
        Reply::CloseDelimited { content_type, body } => (
            format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"),
            body,
        ),
        Reply::PromisesBody { length } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        Reply::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
    };
    let head = format!("{head}Connection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 || buffer.len() > 64 * 1024 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Host names from a fixed table: lets a test make a name resolve to any address.
struct Table(HashMap<&'static str, Vec<IpAddr>>);

#[async_trait]
impl NameResolver for Table {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0.get(host).cloned().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no such host {host}"))
        })
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

// ---------------------------------------------------------------------------------------------
// http_fetch
// ---------------------------------------------------------------------------------------------

fn fetcher(config: HttpFetchConfig) -> HttpFetch {
    HttpFetchProvider::new(config)
        .expect("valid config")
        .tool()
        .expect("tool")
}

fn allowing_loopback() -> HttpFetchConfig {
    HttpFetchConfig {
        allow: vec!["127.0.0.1/32".into()],
        ..HttpFetchConfig::default()
    }
}

async fn fetch(tool: &HttpFetch, url: &str) -> Result<ToolOutput, ToolError> {
    tool.call(json!({ "url": url })).await
}

/// The message of a refusal (`ToolError::Failed`), failing the test on anything else.
fn refused(result: Result<ToolOutput, ToolError>) -> String {
    match result {
        Err(ToolError::Failed(message)) => {
            assert!(message.starts_with("refused to fetch "), "{message}");
            message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn failed(result: Result<ToolOutput, ToolError>) -> String {
    match result {
        Err(ToolError::Failed(message)) => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Corral field guide</title>
  <style>body { color: red; }</style>
  <script>var secret = "do not show";</script>
</head>
<body>
  <nav hidden>Hidden navigation</nav>
  <h1>Herding tools</h1>
  <p>A corral keeps the <b>herd</b> together.</p>
  <p>Fences &amp; gates.</p>
  <script>console.log("nor this")</script>
</body>
</html>"#;

#[tokio::test]
async fn loopback_targets_are_refused_before_any_connection() {
    let server = Server::start("127.0.0.1", |_| Reply::html(PAGE)).await;
    let tool = fetcher(HttpFetchConfig::default());
    let port = server.port();
    for (url, needle) in [
        (
            format!("http://127.0.0.1:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://localhost:{port}/"),
            "`localhost` resolves to 127.0.0.1",
        ),
        (format!("http://[::1]:{port}/"), "::1 is a loopback address"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "carries the IPv4 address 127.0.0.1",
        ),
        (format!("http://[::ffff:7f00:1]:{port}/"), "loopback"),
        (format!("http://[64:ff9b::7f00:1]:{port}/"), "loopback"),
        // Other spellings of 127.0.0.1, which the URL parser normalises as browsers do.
        (
            format!("http://2130706433:{port}/"),
            "127.0.0.1 is a loopback",
        ),
        (
            format!("http://0x7f.0.0.1:{port}/"),
            "127.0.0.1 is a loopback",
        ),
        (format!("http://127.1:{port}/"), "127.0.0.1 is a loopback"),
        (format!("http://0.0.0.0:{port}/"), "unspecified"),
    ] {
        let message = refused(fetch(&tool, &url).await);
        assert!(message.contains(needle), "{url}: {message}");
        assert!(message.contains("`allow` list"), "{message}");
    }
    assert_eq!(server.connections(), 0, "the server saw a connection");
}

#[tokio::test]
async fn private_and_metadata_targets_are_refused() {
    // Nothing listens on these; the refusal comes first, so no connection is ever tried.
    let tool = fetcher(HttpFetchConfig::default());
    for (url, needle) in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        (
            "http://[fd00:ec2::254]/latest/meta-data/",
            "private-network",
        ),
        ("http://10.0.0.1/", "private-network"),
        ("http://192.168.1.1/admin", "private-network"),
        ("http://172.16.5.4/", "private-network"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://[::ffff:a9fe:a9fe]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://192.0.2.1/", "documentation"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "cloud metadata service",
        ),
    ] {
        let message = refused(fetch(&tool, url).await);
        assert!(message.contains(needle), "{url}: {message}");
    }
}

#[tokio::test]
async fn metadata_names_are_refused_whatever_they_resolve_to() {
    let server = Server::start("127.0.0.1", |_| Reply::html(PAGE)).await;
    // Even where the name resolves to an allowed address, it is refused by name.
    let table = Table(HashMap::from([(
        "metadata.google.internal",
        vec![ip("127.0.0.1")],
    )]));
    let tool = HttpFetchProvider::new(allowing_loopback())
        .expect("valid")
        .with_resolver(Arc::new(table))
        .tool()
        .expect("tool");
    let url = format!("http://metadata.google.internal:{}/", server.port());
    let message = refused(fetch(&tool, &url).await);
    assert!(message.contains("cloud metadata service"), "{message}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn an_allowed_loopback_page_is_read_as_text() {
    let server = Server::start("127.0.0.1", |_| Reply::html(PAGE)).await;
    let tool = fetcher(allowing_loopback());
    let url = server.url("/guide");
    let output = fetch(&tool, &url).await.expect("fetched");
    let content = &output.content;
    assert!(
        content.starts_with("Title: Corral field guide\n"),
        "{content}"
    );
    assert!(content.contains(&format!("URL: {url}\n")), "{content}");
    assert!(content.contains("Herding tools"), "{content}");
    assert!(
        content.contains("A corral keeps the herd together."),
        "{content}"
    );
    assert!(content.contains("Fences & gates."), "{content}");
    for hidden in ["do not show", "nor this", "color: red", "Hidden navigation"] {
        assert!(!content.contains(hidden), "{hidden:?} leaked: {content}");
    }
    assert!(!content.contains("[Cut here"), "{content}");
    assert_eq!(output.metadata["title"], "Corral field guide");
    assert_eq!(output.metadata["final_url"], url.as_str());
    assert_eq!(output.metadata["status"], 200);
    assert_eq!(output.metadata["content_type"], "text/html");
    assert_eq!(output.metadata["truncated"], false);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].target, "/guide");
    let agent = requests[0].header("user-agent").unwrap_or_default();
    assert!(agent.starts_with("corral-http-fetch/"), "{agent}");
    assert!(
        requests[0]
            .header("accept")
            .unwrap_or_default()
            .contains("text/html")
    );
}

#[tokio::test]
async fn long_text_is_cut_with_a_note() {
    let long = format!(
        "<html><title>Long</title><body><p>{}</p></body></html>",
        "word ".repeat(2000)
    );
    let server = Server::start("127.0.0.1", move |_| Reply::html(&long)).await;
    let tool = fetcher(HttpFetchConfig {
        max_chars: 500,
        ..allowing_loopback()
    });
    // The call asks for more than the cap: the cap wins.
    let output = tool
        .call(json!({ "url": server.url("/"), "max_chars": 100_000 }))
        .await
        .expect("fetched");
    assert!(
        output.content.contains("[Cut here: this is the first"),
        "{}",
        output.content
    );
    assert!(
        output.content.contains("of 9999 characters"),
        "{}",
        output.content
    );
    assert_eq!(output.metadata["truncated"], true);
    assert!(
        output.content.chars().count() < 700,
        "{}",
        output.content.len()
    );
    // A call may ask for less.
    let output = tool
        .call(json!({ "url": server.url("/"), "max_chars": 20 }))
        .await
        .expect("fetched");
    assert!(
        output.content.contains("\nword word word word\n"),
        "{}",
        output.content
    );
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused() {
    let inner = Server::start("127.0.0.2", |_| Reply::html(PAGE)).await;
    let target = format!("http://127.0.0.2:{}/secret", inner.port());
    let outer = Server::start("127.0.0.1", move |_| Reply::redirect(&target)).await;
    let tool = fetcher(allowing_loopback());
    let message = refused(fetch(&tool, &outer.url("/go")).await);
    assert!(
        message.contains(&format!(
            "it redirected to http://127.0.0.2:{}/secret",
            inner.port()
        )),
        "{message}"
    );
    assert!(
        message.contains("127.0.0.2 is a loopback address"),
        "{message}"
    );
    assert_eq!(outer.requests().len(), 1);
    assert_eq!(inner.connections(), 0, "the private server was reached");
}

#[tokio::test]
async fn a_redirect_to_a_name_that_resolves_to_a_blocked_address_is_refused() {
    let inner = Server::start("127.0.0.2", |_| Reply::html(PAGE)).await;
    let target = format!("http://internal.test:{}/secret", inner.port());
    let outer = Server::start("127.0.0.1", move |_| Reply::redirect(&target)).await;
    let table = Table(HashMap::from([("internal.test", vec![ip("127.0.0.2")])]));
    let tool = HttpFetchProvider::new(allowing_loopback())
        .expect("valid")
        .with_resolver(Arc::new(table))
        .tool()
        .expect("tool");
    let message = refused(fetch(&tool, &outer.url("/go")).await);
    assert!(
        message.contains("`internal.test` resolves to 127.0.0.2, a loopback address"),
        "{message}"
    );
    assert_eq!(outer.requests().len(), 1);
    assert_eq!(inner.connections(), 0, "the private server was reached");
    // The same name asked for directly.
    let message = refused(fetch(&tool, &format!("http://internal.test:{}/", inner.port())).await);
    assert!(message.contains("resolves to 127.0.0.2"), "{message}");
    assert_eq!(inner.connections(), 0);
}

#[tokio::test]
async fn names_resolve_through_the_guard_which_keeps_only_allowed_addresses() {
    let server = Server::start("127.0.0.1", |_| Reply::html(PAGE)).await;
    let table = Table(HashMap::from([
        // A blocked address first: it is dropped and the allowed one is used.
        ("mixed.test", vec![ip("127.0.0.2"), ip("127.0.0.1")]),
        ("wiki.corp.test", vec![ip("127.0.0.1")]),
    ]));
    let tool = HttpFetchProvider::new(allowing_loopback())
        .expect("valid")
        .with_resolver(Arc::new(table))
        .tool()
        .expect("tool");
    let url = format!("http://mixed.test:{}/page", server.port());
    let output = fetch(&tool, &url).await.expect("fetched");
    assert!(
        output.content.contains("Herding tools"),
        "{}",
        output.content
    );
    assert_eq!(
        server.requests()[0].header("host"),
        Some(format!("mixed.test:{}", server.port()).as_str())
    );

    // A name on the allow list is not checked by address.
    let table = Table(HashMap::from([("wiki.corp.test", vec![ip("127.0.0.1")])]));
    let by_name = HttpFetchProvider::new(HttpFetchConfig {
        allow: vec!["*.corp.test".into()],
        ..HttpFetchConfig::default()
    })
    .expect("valid")
    .with_resolver(Arc::new(table))
    .tool()
    .expect("tool");
    let url = format!("http://wiki.corp.test:{}/", server.port());
    fetch(&by_name, &url).await.expect("allowed by name");
    // …but the address itself is still refused.
    refused(fetch(&by_name, &server.url("/")).await);
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    // `/hop/N` redirects to `/hop/N-1`; `/hop/0` is the page.
    let server = Server::start("127.0.0.1", |request| {
        let n: u32 = request
            .path()
            .trim_start_matches("/hop/")
            .parse()
            .unwrap_or(0);
        if n == 0 {
            Reply::html(PAGE)
        } else {
            Reply::redirect(&format!("/hop/{}", n - 1))
        }
    })
    .await;
    let tool = fetcher(HttpFetchConfig {
        max_redirects: 2,
        ..allowing_loopback()
    });
    let output = fetch(&tool, &server.url("/hop/2")).await.expect("two hops");
    assert!(
        output
            .content
            .contains(&format!("URL: {}\n", server.url("/hop/0"))),
        "{}",
        output.content
    );
    assert!(
        output
            .content
            .contains(&format!("(redirected from {})", server.url("/hop/2")))
    );
    assert_eq!(server.requests().len(), 3);

    let message = refused(fetch(&tool, &server.url("/hop/3")).await);
    assert!(
        message.contains("redirected more than 2 times"),
        "{message}"
    );
    // /hop/3, /hop/2, /hop/1 were requested; /hop/0 never was.
    let targets: Vec<String> = server
        .requests()
        .iter()
        .skip(3)
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["/hop/3", "/hop/2", "/hop/1"]);
}

#[tokio::test]
async fn other_schemes_are_refused_as_arguments_and_as_redirects() {
    let tool = fetcher(allowing_loopback());
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/",
    ] {
        match fetch(&tool, url).await {
            Err(ToolError::InvalidArguments { field, message }) => {
                assert_eq!(field.as_deref(), Some("url"));
                assert!(message.contains("only http and https"), "{message}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let server = Server::start("127.0.0.1", |_| Reply::redirect("file:///etc/passwd")).await;
    let message = refused(fetch(&tool, &server.url("/")).await);
    assert!(
        message.contains("it redirected to file:///etc/passwd"),
        "{message}"
    );
    assert!(
        message.contains("`file:` URLs are not fetched"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_arguments_name_the_field() {
    let tool = fetcher(HttpFetchConfig::default());
    match tool.call(json!({ "url": 5 })).await {
        Err(ToolError::InvalidArguments { field, message }) => {
            assert_eq!(field.as_deref(), Some("url"));
            assert!(message.contains("expected a string"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match tool.call(json!({})).await {
        Err(ToolError::InvalidArguments { message, .. }) => {
            assert!(message.contains("missing field `url`"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match tool
        .call(json!({ "url": "https://example.com", "max_chars": 0 }))
        .await
    {
        Err(ToolError::InvalidArguments { field, .. }) => {
            assert_eq!(field.as_deref(), Some("max_chars"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bodies_over_the_size_cap_are_refused() {
    let server = Server::start("127.0.0.1", |request| match request.path() {
        // Content-Length says too much: refused without waiting for the body (which never comes).
        "/announced" => Reply::PromisesBody {
            length: 10 * 1024 * 1024,
        },
        // No Content-Length: the cap is met while streaming.
        "/streamed" => Reply::CloseDelimited {
            content_type: "text/plain",
            body: vec![b'a'; 5000],
        },
        _ => Reply::typed("text/plain", vec![b'a'; 1024]),
    })
    .await;
    let tool = fetcher(HttpFetchConfig {
        max_bytes: 1024,
        timeout_s: 10.0,
        ..allowing_loopback()
    });
    let started = Instant::now();
    let message = failed(fetch(&tool, &server.url("/announced")).await);
    assert!(
        message.contains("too large to fetch: the limit is 1.0 KiB"),
        "{message}"
    );
    assert!(
        message.contains("10.0 MiB (its Content-Length)"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the body"
    );
    let message = failed(fetch(&tool, &server.url("/streamed")).await);
    assert!(message.contains("too large to fetch"), "{message}");
    // Exactly at the cap is fine.
    let output = fetch(&tool, &server.url("/exact"))
        .await
        .expect("at the cap");
    assert_eq!(output.metadata["characters"], 1024);
}

#[tokio::test]
async fn a_slow_server_runs_into_the_time_limit() {
    let server = Server::start("127.0.0.1", |_| Reply::Stall).await;
    let tool = fetcher(HttpFetchConfig {
        timeout_s: 0.3,
        ..allowing_loopback()
    });
    let started = Instant::now();
    let error = fetch(&tool, &server.url("/slow"))
        .await
        .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(error.kind(), ErrorKind::Timeout);
    let message = error.to_string();
    assert!(message.contains(&server.url("/slow")), "{message}");
    assert!(message.contains("within 0.3 s"), "{message}");
}

#[tokio::test]
async fn charsets_come_from_the_content_type_or_the_page() {
    let server = Server::start("127.0.0.1", |request| match request.path() {
        "/latin1.txt" => Reply::typed("text/plain; charset=windows-1252", b"caf\xe9 cr\xe8me".to_vec()),
        "/latin1.html" => Reply::typed(
            "text/html; charset=ISO-8859-1",
            b"<html><title>Men\xfa</title><p>Jalape\xf1o</p></html>".to_vec(),
        ),
        // No charset in the header; the page's <meta> says it.
        "/meta.html" => Reply::typed(
            "text/html",
            b"<html><head><meta charset=\"windows-1252\"><title>Caf\xe9</title></head><p>na\xefve</p></html>".to_vec(),
        ),
        "/sjis.txt" => Reply::typed("text/plain; charset=Shift_JIS", b"\x93\xfa\x96\x7b".to_vec()),
        "/broken-sjis.txt" => Reply::typed("text/plain; charset=shift_jis", b"ok \x82\xff".to_vec()),
        "/broken-utf8.txt" => Reply::typed("text/plain", b"caf\xe9".to_vec()),
        "/data.json" => Reply::typed("application/json", r#"{"name": "Zoë", "n": 1}"#),
        "/report.pdf" => Reply::typed("application/pdf", b"%PDF-1.7 ...".to_vec()),
        "/binary" => Reply::typed("text/plain", b"PK\x03\x04\x00\x00".to_vec()),
        "/empty.html" => Reply::html("<html><head><script>render()</script></head><body></body></html>"),
        _ => Reply::status(404, "text/html", "<h1>Not here</h1>"),
    })
    .await;
    let tool = fetcher(allowing_loopback());
    let text = |output: ToolOutput| output.content;

    let content = text(
        fetch(&tool, &server.url("/latin1.txt"))
            .await
            .expect("latin1"),
    );
    assert!(content.ends_with("\n\ncafé crème"), "{content}");
    let content = text(
        fetch(&tool, &server.url("/latin1.html"))
            .await
            .expect("latin1 html"),
    );
    assert!(content.starts_with("Title: Menú\n"), "{content}");
    assert!(content.contains("Jalapeño"), "{content}");
    let content = text(fetch(&tool, &server.url("/meta.html")).await.expect("meta"));
    assert!(content.starts_with("Title: Café\n"), "{content}");
    assert!(content.contains("naïve"), "{content}");
    let content = text(fetch(&tool, &server.url("/sjis.txt")).await.expect("sjis"));
    assert!(content.ends_with("日本"), "{content}");
    let content = text(fetch(&tool, &server.url("/data.json")).await.expect("json"));
    assert!(content.ends_with(r#"{"name": "Zoë", "n": 1}"#), "{content}");

    let message = failed(fetch(&tool, &server.url("/broken-sjis.txt")).await);
    assert!(message.contains("is not valid Shift_JIS text"), "{message}");
    let message = failed(fetch(&tool, &server.url("/broken-utf8.txt")).await);
    assert!(message.contains("is not valid UTF-8 text"), "{message}");
    let message = failed(fetch(&tool, &server.url("/report.pdf")).await);
    assert!(
        message.contains("is `application/pdf`, which http_fetch cannot read"),
        "{message}"
    );
    let message = failed(fetch(&tool, &server.url("/binary")).await);
    assert!(message.contains("is binary data"), "{message}");
    let message = failed(fetch(&tool, &server.url("/empty.html")).await);
    assert!(message.contains("has no readable text"), "{message}");

    let error = fetch(&tool, &server.url("/missing"))
        .await
        .expect_err("404");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "{} answered HTTP 404 Not Found",
            server.url("/missing")
        )),
        "{message}"
    );
    match error {
        ToolError::Provider(e) => {
            assert_eq!(e.status, Some(404));
            assert_eq!(e.body.as_deref(), Some("<h1>Not here</h1>"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_provider_builds_the_tool_with_group_params() {
    let server = Server::start("127.0.0.1", |_| Reply::typed("text/plain", "x".repeat(300))).await;
    let provider = HttpFetchProvider::new(allowing_loopback()).expect("valid");
    let tools = provider
        .tools(&json!({ "max_chars": 100 }), &NoToolContext)
        .await
        .expect("tools");
    assert_eq!(tools.len(), 1);
    let spec = tools[0].spec();
    assert_eq!(spec.name, "http_fetch");
    assert_eq!(spec.parameters["properties"]["url"]["type"], "string");
    assert_eq!(spec.parameters["required"], json!(["url"]));
    let output = tools[0]
        .call(json!({ "url": server.url("/") }))
        .await
        .expect("fetched");
    assert!(
        output.content.contains("first 100 of 300 characters"),
        "{}",
        output.content
    );

    let error = provider
        .tools(&json!({ "max_char": 100 }), &NoToolContext)
        .await
        .err()
        .expect("unknown param");
    assert!(
        error.to_string().contains("unknown field `max_char`"),
        "{error}"
    );
    assert!(provider.tools(&Value::Null, &NoToolContext).await.is_ok());
}

// ---------------------------------------------------------------------------------------------
// web_search
// ---------------------------------------------------------------------------------------------

const KEY: &str = "BSA-test-key-0123456789";

fn searcher(backend: SearchBackend, server: &Server, max_results: usize) -> WebSearch {
    WebSearchProvider::new(WebSearchConfig {
        base_url: Some(server.url("")),
        max_results,
        timeout_s: 5.0,
        ..WebSearchConfig::new(backend, KEY)
    })
    .expect("valid config")
    .tool()
    .expect("tool")
}

/// A Brave Search API answer, trimmed from the documented response shape.
fn brave_answer() -> Value {
    json!({
        "query": {
            "original": "rust async runtime",
            "show_strict_warning": false,
            "is_navigational": false,
            "is_news_breaking": false,
            "spellcheck_off": true,
            "country": "us",
            "bad_results": false,
            "should_fallback": false,
            "postal_code": "",
            "city": "",
            "header_country": "",
            "more_results_available": true,
            "state": ""
        },
        "mixed": {
            "type": "mixed",
            "main": [
                {"type": "web", "index": 0, "all": false},
                {"type": "web", "index": 1, "all": false},
                {"type": "web", "index": 2, "all": false}
            ],
            "top": [],
            "side": []
        },
        "type": "search",
        "web": {
            "type": "search",
            "results": [
                {
                    "title": "Tokio - An asynchronous <strong>Rust</strong> runtime",
                    "url": "https://tokio.rs/",
                    "is_source_local": false,
                    "is_source_both": false,
                    "description": "Tokio is an event-driven, non-blocking I/O platform for writing <strong>asynchronous</strong> applications with the <strong>Rust</strong> programming language.",
                    "page_age": "2024-11-02T10:12:33",
                    "profile": {
                        "name": "Tokio",
                        "url": "https://tokio.rs/",
                        "long_name": "tokio.rs",
                        "img": "https://imgs.search.brave.com/abc/favicon.ico"
                    },
                    "language": "en",
                    "family_friendly": true,
                    "type": "search_result",
                    "subtype": "generic",
                    "is_live": false,
                    "meta_url": {
                        "scheme": "https",
                        "netloc": "tokio.rs",
                        "hostname": "tokio.rs",
                        "favicon": "https://imgs.search.brave.com/abc/favicon.ico",
                        "path": ""
                    },
                    "age": "November 2, 2024"
                },
                {
                    "title": "Asynchronous Programming in <strong>Rust</strong>",
                    "url": "https://rust-lang.github.io/async-book/",
                    "description": "What is <strong>asynchronous</strong> programming, and why would you use it? Getting started&#x2026; <strong>async</strong>&#x2F;.await &amp; futures.",
                    "type": "search_result",
                    "subtype": "generic",
                    "meta_url": {"scheme": "https", "netloc": "rust-lang.github.io", "hostname": "rust-lang.github.io", "path": "› async-book"},
                    "extra_snippets": ["An extra snippet that is not used."]
                },
                {
                    "title": "smol - A small and fast async runtime",
                    "url": "https://github.com/smol-rs/smol",
                    "description": "A small and fast <strong>async</strong> runtime for <strong>Rust</strong>.",
                    "type": "search_result"
                }
            ],
            "family_friendly": true
        }
    })
}

/// A Tavily answer, as its documentation shows one.
fn tavily_answer() -> Value {
    json!({
        "query": "rust async runtime",
        "follow_up_questions": null,
        "answer": null,
        "images": [],
        "results": [
            {
                "title": "Tokio - An asynchronous Rust runtime",
                "url": "https://tokio.rs/",
                "content": "Tokio is an asynchronous runtime for the Rust programming language. It provides the building blocks needed for writing network applications.",
                "score": 0.86,
                "raw_content": null
            },
            {
                "title": "async-std",
                "url": "https://async.rs/",
                "content": "Async version of the Rust standard library &amp; more",
                "score": 0.71,
                "raw_content": null
            }
        ],
        "response_time": 1.09
    })
}

#[tokio::test]
async fn brave_gets_the_documented_request_and_its_answer_is_normalised() {
    let server = Server::start("127.0.0.1", |_| Reply::json(200, &brave_answer())).await;
    let tool = searcher(SearchBackend::Brave, &server, 5);
    let output = tool
        .call(json!({ "query": "  rust async runtime ", "max_results": 2 }))
        .await
        .expect("searched");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.target,
        "/res/v1/web/search?q=rust+async+runtime&count=2"
    );
    assert_eq!(request.header("x-subscription-token"), Some(KEY));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(request.header("authorization"), None);
    assert!(request.body.is_empty());

    assert_eq!(
        output.content,
        "Web results for \"rust async runtime\":\n\
         \n1. Tokio - An asynchronous Rust runtime\n   https://tokio.rs/\n   Tokio is an \
         event-driven, non-blocking I/O platform for writing asynchronous applications with the \
         Rust programming language.\n\
         \n2. Asynchronous Programming in Rust\n   https://rust-lang.github.io/async-book/\n   \
         What is asynchronous programming, and why would you use it? Getting started… async/.await \
         & futures.\n"
    );
    assert_eq!(output.metadata["backend"], "brave");
    assert_eq!(output.metadata["query"], "rust async runtime");
    assert_eq!(
        output.metadata["results"],
        json!([
            {
                "title": "Tokio - An asynchronous Rust runtime",
                "url": "https://tokio.rs/",
                "snippet": "Tokio is an event-driven, non-blocking I/O platform for writing asynchronous applications with the Rust programming language."
            },
            {
                "title": "Asynchronous Programming in Rust",
                "url": "https://rust-lang.github.io/async-book/",
                "snippet": "What is asynchronous programming, and why would you use it? Getting started… async/.await & futures."
            }
        ])
    );
}

#[tokio::test]
async fn the_result_count_is_capped_by_the_config() {
    let server = Server::start("127.0.0.1", |_| Reply::json(200, &brave_answer())).await;
    let tool = searcher(SearchBackend::Brave, &server, 3);
    let output = tool
        .call(json!({ "query": "rust", "max_results": 50 }))
        .await
        .expect("searched");
    assert_eq!(
        server.requests()[0].target,
        "/res/v1/web/search?q=rust&count=3"
    );
    assert_eq!(output.metadata["results"].as_array().map(Vec::len), Some(3));
    let output = tool
        .call(json!({ "query": "rust" }))
        .await
        .expect("searched");
    assert_eq!(
        server.requests()[1].target,
        "/res/v1/web/search?q=rust&count=3"
    );
    assert!(
        output
            .content
            .contains("\n3. smol - A small and fast async runtime\n")
    );
    // Characters that need escaping travel escaped.
    tool.call(json!({ "query": "c++ & rust/async?" }))
        .await
        .expect("searched");
    assert_eq!(
        server.requests()[2].target,
        "/res/v1/web/search?q=c%2B%2B+%26+rust%2Fasync%3F&count=3"
    );
}

#[tokio::test]
async fn tavily_gets_the_documented_request_and_its_answer_is_normalised() {
    let server = Server::start("127.0.0.1", |_| Reply::json(200, &tavily_answer())).await;
    let tool = searcher(SearchBackend::Tavily, &server, 5);
    let output = tool
        .call(json!({ "query": "rust async runtime" }))
        .await
        .expect("searched");
    let requests = server.requests();
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/search");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-subscription-token"), None);
    let body: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    assert_eq!(
        body,
        json!({
            "query": "rust async runtime",
            "max_results": 5,
            "search_depth": "basic",
            "include_answer": false,
            "include_raw_content": false,
            "include_images": false
        })
    );
    assert_eq!(
        output.metadata["results"],
        json!([
            {
                "title": "Tokio - An asynchronous Rust runtime",
                "url": "https://tokio.rs/",
                "snippet": "Tokio is an asynchronous runtime for the Rust programming language. It provides the building blocks needed for writing network applications."
            },
            {
                "title": "async-std",
                "url": "https://async.rs/",
                "snippet": "Async version of the Rust standard library & more"
            }
        ])
    );
    assert!(
        output
            .content
            .starts_with("Web results for \"rust async runtime\":\n\n1. Tokio")
    );
    assert!(
        output
            .content
            .contains("\n2. async-std\n   https://async.rs/\n")
    );
}

#[tokio::test]
async fn empty_results_say_so() {
    let server = Server::start("127.0.0.1", |request| {
        if request.method == "GET" {
            // Brave leaves `web` out when nothing matched.
            Reply::json(
                200,
                &json!({"type": "search", "query": {"original": "zxqv"}}),
            )
        } else {
            Reply::json(
                200,
                &json!({"query": "zxqv", "results": [], "response_time": 0.4}),
            )
        }
    })
    .await;
    for backend in [SearchBackend::Brave, SearchBackend::Tavily] {
        let output = searcher(backend, &server, 5)
            .call(json!({ "query": "zxqv" }))
            .await
            .expect("searched");
        assert_eq!(output.content, "No web results for \"zxqv\".");
        assert_eq!(output.metadata["results"], json!([]));
    }
}

/// The error of one search against a server that always gives `reply`.
async fn search_error(backend: SearchBackend, reply: Reply) -> ToolError {
    let server = Server::start("127.0.0.1", move |_| reply.clone()).await;
    searcher(backend, &server, 5)
        .call(json!({ "query": "rust" }))
        .await
        .expect_err("fails")
}

fn provider_error(error: &ToolError) -> &corral_core::ProviderError {
    match error {
        ToolError::Provider(e) => e,
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_key_is_an_auth_error_that_never_shows_the_key() {
    // A server that echoes the key back in its error body.
    let body = json!({"type": "ErrorResponse", "error": {
        "code": "SUBSCRIPTION_TOKEN_INVALID",
        "detail": format!("The provided subscription token {KEY} is invalid."),
        "status": 401
    }});
    let error = search_error(SearchBackend::Brave, Reply::json(401, &body)).await;
    assert_eq!(error.kind(), ErrorKind::Auth);
    let message = error.to_string();
    assert!(
        message.contains("the brave API key was refused (HTTP 401)"),
        "{message}"
    );
    assert!(message.contains("check the `api_key`"), "{message}");
    assert!(!message.contains(KEY), "{message}");
    let raw = provider_error(&error);
    assert_eq!(raw.status, Some(401));
    assert!(!raw.body.as_deref().unwrap_or_default().contains(KEY));
    assert!(!format!("{error:?}").contains(KEY));

    let body = json!({"detail": {"error": "Unauthorized: missing or invalid API key."}});
    let error = search_error(SearchBackend::Tavily, Reply::json(403, &body)).await;
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error
            .to_string()
            .contains("the tavily API key was refused (HTTP 403): Unauthorized")
    );
}

#[tokio::test]
async fn rate_limits_carry_the_wait() {
    let reply = Reply::json(429, &json!({"detail": {"error": "Too many requests"}}))
        .with_header("Retry-After", "7");
    let error = search_error(SearchBackend::Tavily, reply).await;
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let message = error.to_string();
    assert!(
        message.contains("tavily rate-limited the search (HTTP 429)"),
        "{message}"
    );
    assert!(message.contains("try again in 7 s"), "{message}");

    // Brave says which window ran out in its own headers: here the monthly quota.
    let reply = Reply::json(429, &json!({"type": "ErrorResponse", "error": {"code": "RATE_LIMITED", "detail": "Request rate limit exceeded for plan.", "status": 429}}))
        .with_header("X-RateLimit-Limit", "1, 2000")
        .with_header("X-RateLimit-Remaining", "0, 0")
        .with_header("X-RateLimit-Reset", "1, 1419704");
    let error = search_error(SearchBackend::Brave, reply).await;
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1_419_704)));
    let message = error.to_string();
    assert!(
        message.contains("Request rate limit exceeded for plan."),
        "{message}"
    );
    assert!(
        message.contains("quota is used up until it resets in 16 days"),
        "{message}"
    );
}

#[tokio::test]
async fn server_errors_are_transient_and_other_statuses_are_named() {
    let error = search_error(
        SearchBackend::Brave,
        Reply::status(503, "text/html", "<h1>busy</h1>"),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert!(
        error
            .to_string()
            .contains("brave had a server error (HTTP 503)"),
        "{error}"
    );
    let body = json!({"type": "ErrorResponse", "error": {"code": "VALIDATION", "detail": "Unable to validate request parameter(s)", "status": 422}});
    let error = search_error(SearchBackend::Brave, Reply::json(422, &body)).await;
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(
        error
            .to_string()
            .contains("brave rejected the search (HTTP 422): Unable to validate"),
        "{error}"
    );
}

#[tokio::test]
async fn a_malformed_answer_names_the_backend() {
    let error = search_error(SearchBackend::Brave, Reply::html("<html>captcha</html>")).await;
    assert_eq!(error.kind(), ErrorKind::Permanent);
    let message = error.to_string();
    assert!(
        message.contains("brave answered with a body that is not its search results JSON"),
        "{message}"
    );
    assert_eq!(
        provider_error(&error).body.as_deref(),
        Some("<html>captcha</html>")
    );
    let error = search_error(
        SearchBackend::Tavily,
        Reply::json(200, &json!({"results": "none"})),
    )
    .await;
    assert!(
        error
            .to_string()
            .contains("tavily answered with a body that is not"),
        "{error}"
    );
    let error = search_error(
        SearchBackend::Brave,
        Reply::json(200, &json!({"unexpected": true})),
    )
    .await;
    assert!(
        error
            .to_string()
            .contains("brave answered with a body that is not"),
        "{error}"
    );
}

#[tokio::test]
async fn a_slow_search_times_out() {
    let server = Server::start("127.0.0.1", |_| Reply::Stall).await;
    let tool = WebSearchProvider::new(WebSearchConfig {
        base_url: Some(server.url("")),
        timeout_s: 0.3,
        ..WebSearchConfig::new(SearchBackend::Tavily, KEY)
    })
    .expect("valid")
    .tool()
    .expect("tool");
    let error = tool
        .call(json!({ "query": "rust" }))
        .await
        .expect_err("times out");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(
        error
            .to_string()
            .contains("tavily did not answer within 0.3 s"),
        "{error}"
    );
}

#[tokio::test]
async fn search_arguments_and_params_are_checked() {
    let server = Server::start("127.0.0.1", |_| Reply::json(200, &brave_answer())).await;
    let provider = WebSearchProvider::new(WebSearchConfig {
        base_url: Some(server.url("")),
        ..WebSearchConfig::new(SearchBackend::Brave, KEY)
    })
    .expect("valid");
    let tools = provider
        .tools(&json!({ "max_results": 2 }), &NoToolContext)
        .await
        .expect("tools");
    let tool = &tools[0];
    assert_eq!(tool.spec().name, "web_search");
    assert_eq!(tool.spec().parameters["required"], json!(["query"]));
    match tool.call(json!({ "query": "   " })).await {
        Err(ToolError::InvalidArguments { field, .. }) => {
            assert_eq!(field.as_deref(), Some("query"))
        }
        other => panic!("{other:?}"),
    }
    match tool.call(json!({ "query": ["a"] })).await {
        Err(ToolError::InvalidArguments { field, .. }) => {
            assert_eq!(field.as_deref(), Some("query"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.connections(), 0);
    tool.call(json!({ "query": "rust" }))
        .await
        .expect("searched");
    assert_eq!(
        server.requests()[0].target,
        "/res/v1/web/search?q=rust&count=2"
    );
}
