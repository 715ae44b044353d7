//! The session with one MCP server: starting it or reaching it, the handshake, reconnecting after
//! it went away, calls under their time limits, and what goes wrong, in errors that name the server.
//!
//! A stdio server is started in a process group of its own, so that killing it also kills what it
//! started (`npx` starts a shell that starts `node`); the group is killed when the connection is
//! dropped. Its stderr is read line by line into `tracing` (debug) and the last lines are kept,
//! because when a server dies during the handshake its stderr is the only account of why.

use std::collections::{BTreeMap, VecDeque};
use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use corral_core::{ErrorKind, ProviderError, ToolError, ToolOutput};
use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ErrorCode, Implementation,
};
use rmcp::service::{ClientInitializeError, NotificationContext, RunningService, serve_client};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::worker::WorkerQuitReason;
use rmcp::transport::{DynamicTransportError, StreamableHttpClientTransport};
use rmcp::{ClientHandler, RoleClient, ServiceError};
use tokio::io::AsyncReadExt;

use super::PROVIDER_TYPE;
use super::content;
use super::http::{HttpClient, describe_reqwest_error};

/// Where the server is.
pub(super) enum Endpoint {
    Stdio(StdioServer),
    Http(HttpServer),
}

/// A server we start and talk to over its stdin and stdout.
pub(super) struct StdioServer {
    pub(super) command: String,
    pub(super) args: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) cwd: Option<PathBuf>,
}

/// A server reached over streamable HTTP.
pub(super) struct HttpServer {
    url: reqwest::Url,
    headers: HeaderMap,
}

/// Headers the transport sets itself; a configured value would break the session.
const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

impl HttpServer {
    /// Checks the `url` and `headers` of the config; the error names the key.
    pub(super) fn new(url: &str, headers: &BTreeMap<String, String>) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(url).map_err(|e| format!("`url` is not a URL ({e}): {url:?}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`url` must be an http:// or https:// URL, not {}://…",
                url.scheme()
            ));
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`headers`: {name:?} is not a valid HTTP header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!(
                    "`headers`: {name} is set by the MCP transport itself and cannot be configured"
                ));
            }
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                format!("`headers`: the value of {name} is not a valid HTTP header value")
            })?;
            // Keeps tokens out of reqwest's debug output.
            value.set_sensitive(true);
            map.insert(header, value);
        }
        Ok(Self { url, headers: map })
    }
}

/// One configured server and the current session with it, shared by the provider and its tools.
pub(super) struct Server {
    label: String,
    endpoint: Endpoint,
    call_timeout: Duration,
    connect_timeout: Duration,
    /// The session, made on first use and made again when found closed. Held across the connect,
    /// so that callers arriving together start one server, not one each.
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Server {
    pub(super) fn new(
        endpoint: Endpoint,
        call_timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            label: label(&endpoint),
            endpoint,
            call_timeout,
            connect_timeout,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// How errors and logs name the server: its command line, or its URL without the query.
    pub(super) fn label(&self) -> &str {
        &self.label
    }

    /// Every tool the server offers, all pages of them.
    pub(super) async fn list_tools(&self) -> Result<Vec<rmcp::model::Tool>, ToolError> {
        let connection = self.connection().await?;
        let listing = connection.service.peer().list_all_tools();
        match tokio::time::timeout(self.call_timeout, listing).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(e)) => Err(ToolError::Provider(
                self.service_error("listing its tools", e),
            )),
            Err(_) => Err(ToolError::Provider(self.error(
                ErrorKind::Timeout,
                format!(
                    "did not list its tools within {}",
                    seconds(self.call_timeout)
                ),
            ))),
        }
    }

    /// Calls the tool `name`: its result, or what went wrong in the terms of [`ToolError`].
    pub(super) async fn call_tool(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ToolOutput, ToolError> {
        let connection = self.connection().await?;
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let started = Instant::now();
        // A call abandoned at the time limit is cancelled on the server (rmcp sends
        // `notifications/cancelled` when the request future is dropped).
        let outcome = tokio::time::timeout(
            self.call_timeout,
            connection.service.peer().call_tool(params),
        )
        .await;
        tracing::debug!(
            server = %self.label,
            tool = name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "MCP tool call finished"
        );
        match outcome {
            Err(_) => Err(ToolError::Timeout(self.call_timeout)),
            Ok(Ok(result)) if result.is_error == Some(true) => {
                Err(ToolError::Failed(content::error_message(&result)))
            }
            Ok(Ok(result)) => Ok(content::tool_output(result)),
            Ok(Err(ServiceError::McpError(error))) if error.code == ErrorCode::INVALID_PARAMS => {
                Err(ToolError::InvalidArguments {
                    field: None,
                    message: error.message.into_owned(),
                })
            }
            Ok(Err(ServiceError::Timeout { timeout })) => Err(ToolError::Timeout(timeout)),
            Ok(Err(e)) => Err(ToolError::Provider(
                self.service_error(&format!("calling `{name}`"), e),
            )),
        }
    }

    /// The open session, connecting (again) when there is none.
    async fn connection(&self) -> Result<Arc<Connection>, ProviderError> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            if connection.is_open() {
                return Ok(Arc::clone(connection));
            }
            tracing::warn!(server = %self.label, "the MCP server closed the session; connecting again");
        }
        // Dropping the old session kills what is left of its process before a new one starts.
        *current = None;
        let started = Instant::now();
        let connection = match tokio::time::timeout(self.connect_timeout, self.connect()).await {
            Ok(connection) => connection?,
            Err(_) => {
                return Err(self.error(
                    ErrorKind::Timeout,
                    format!(
                        "did not finish the MCP handshake within {} (`connect_timeout_s`)",
                        seconds(self.connect_timeout)
                    ),
                ));
            }
        };
        let connection = Arc::new(connection);
        tracing::info!(
            server = %self.label,
            name = connection.server_name().as_deref().unwrap_or("unnamed"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "connected to MCP server"
        );
        *current = Some(Arc::clone(&connection));
        Ok(connection)
    }

    async fn connect(&self) -> Result<Connection, ProviderError> {
        match &self.endpoint {
            Endpoint::Stdio(server) => self.connect_stdio(server).await,
            Endpoint::Http(server) => self.connect_http(server).await,
        }
    }

    async fn connect_stdio(&self, server: &StdioServer) -> Result<Connection, ProviderError> {
        if let Some(cwd) = &server.cwd
            && !cwd.is_dir()
        {
            return Err(self.error(
                ErrorKind::Permanent,
                format!(
                    "cannot start: its working directory `{}` (`cwd`) is not a directory",
                    cwd.display()
                ),
            ));
        }
        let mut command = tokio::process::Command::new(&server.command);
        command
            .args(&server.args)
            .envs(&server.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &server.cwd {
            command.current_dir(cwd);
        }
        let mut command = CommandWrap::from(command);
        #[cfg(unix)]
        command.wrap(process_wrap::tokio::ProcessGroup::leader());
        command.wrap(KillOnDrop);
        let mut child = command
            .spawn()
            .map_err(|e| self.spawn_error(&server.command, e))?;
        let stdin = child.stdin().take();
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        tracing::debug!(server = %self.label, pid = child.id(), "started MCP server");
        // From here on, returning early (or being cancelled by the connect timeout) kills it.
        let process = ServerProcess {
            child,
            label: self.label.clone(),
        };
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(self.error(
                ErrorKind::Permanent,
                "started, but its stdin or stdout could not be opened",
            ));
        };
        let (stderr_tail, stderr_reader) = match stderr {
            Some(stderr) => {
                let (tail, reader) = StderrTail::follow(stderr, self.label.clone());
                (tail, Some(reader))
            }
            None => (StderrTail::default(), None),
        };
        match serve_client(Client::new(&self.label), (stdout, stdin)).await {
            Ok(service) => Ok(Connection {
                service,
                _process: Some(process),
            }),
            Err(e) => {
                // A server that died during the handshake has said why on stderr; let the reader
                // catch up with it before the error is made.
                if let Some(reader) = stderr_reader {
                    let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
                }
                let mut error = self.init_error(&e, ErrorKind::Permanent);
                let tail = stderr_tail.lines();
                if !tail.is_empty() {
                    error.message.push_str("; the end of its stderr:\n");
                    error.message.push_str(&tail.join("\n"));
                }
                drop(process);
                Err(error)
            }
        }
    }

    async fn connect_http(&self, server: &HttpServer) -> Result<Connection, ProviderError> {
        let client = reqwest::Client::builder()
            .default_headers(server.headers.clone())
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|e| {
                self.error(
                    ErrorKind::Permanent,
                    format!(
                        "cannot set up an HTTP client: {}",
                        describe_reqwest_error(&e)
                    ),
                )
            })?;
        let config = StreamableHttpClientTransportConfig::with_uri(server.url.as_str());
        let transport = StreamableHttpClientTransport::with_client(HttpClient::new(client), config);
        match serve_client(Client::new(&self.label), transport).await {
            Ok(service) => Ok(Connection {
                service,
                _process: None,
            }),
            Err(e) => Err(self.init_error(&e, ErrorKind::Transient)),
        }
    }

    fn spawn_error(&self, command: &str, error: std::io::Error) -> ProviderError {
        let problem = match error.kind() {
            std::io::ErrorKind::NotFound if command.contains('/') => {
                format!("the command `{command}` does not exist")
            }
            std::io::ErrorKind::NotFound => {
                format!("the command `{command}` was not found on PATH")
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("the command `{command}` may not be run (permission denied)")
            }
            _ => format!("the command `{command}` could not be run: {error}"),
        };
        self.error(ErrorKind::Permanent, format!("cannot start: {problem}"))
    }

    fn init_error(&self, error: &ClientInitializeError, otherwise: ErrorKind) -> ProviderError {
        let (kind, retry_after) = classify(error).unwrap_or((otherwise, None));
        let mut e = self.error(
            kind,
            format!("the MCP handshake failed: {}", describe(error)),
        );
        e.retry_after = retry_after;
        e
    }

    fn service_error(&self, doing: &str, error: ServiceError) -> ProviderError {
        let (kind, retry_after) = match &error {
            // The server answered with a JSON-RPC error: asking again will not change its mind.
            ServiceError::McpError(_) | ServiceError::UnexpectedResponse => {
                (ErrorKind::Permanent, None)
            }
            ServiceError::TransportClosed | ServiceError::Cancelled { .. } => {
                (ErrorKind::Transient, None)
            }
            ServiceError::Timeout { .. } => (ErrorKind::Timeout, None),
            other => classify(other).unwrap_or((ErrorKind::Transient, None)),
        };
        let problem = match &error {
            ServiceError::McpError(data) => {
                format!("error {} from the server: {}", data.code.0, data.message)
            }
            ServiceError::TransportClosed => "the server closed the connection".into(),
            other => describe(other),
        };
        let mut e = self.error(kind, format!("{doing} failed: {problem}"));
        e.retry_after = retry_after;
        e
    }

    fn error(&self, kind: ErrorKind, problem: impl fmt::Display) -> ProviderError {
        ProviderError::new(kind, format!("MCP server `{}`: {problem}", self.label))
            .with_provider(PROVIDER_TYPE)
    }
}

/// A session: rmcp's running client and, for a stdio server, the process behind it.
struct Connection {
    // Dropped first: cancels rmcp's session task, which closes the server's stdin.
    service: RunningService<RoleClient, Client>,
    // Dropped second: kills the process group. Held for that alone.
    _process: Option<ServerProcess>,
}

impl Connection {
    fn is_open(&self) -> bool {
        !self.service.is_closed() && !self.service.peer().is_transport_closed()
    }

    fn server_name(&self) -> Option<String> {
        let info = self.service.peer().peer_info()?;
        let server = info.server_info.as_ref()?;
        Some(format!("{} {}", server.name, server.version))
    }
}

/// A started stdio server, its process group killed on drop.
struct ServerProcess {
    child: Box<dyn ChildWrapper>,
    label: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL to the whole group, synchronously: a drop cannot wait for a polite exit, and an
        // orphaned server would outlive us. tokio reaps the killed child (kill-on-drop).
        match self.child.start_kill() {
            Ok(()) => {
                tracing::debug!(server = %self.label, pid = self.child.id(), "stopped MCP server")
            }
            // Already gone: the server exited on its own.
            Err(e) => tracing::debug!(server = %self.label, "MCP server already stopped ({e})"),
        }
    }
}

/// The last lines a server wrote to stderr.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    const LINES: usize = 20;
    const LINE_BYTES: usize = 2000;

    /// Reads `stderr` to its end, logging each line, and keeps the last ones.
    fn follow(
        mut stderr: tokio::process::ChildStderr,
        label: String,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let tail = Self::default();
        let kept = tail.clone();
        let reader = tokio::spawn(async move {
            let mut line = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let read = match stderr.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                for &byte in &buffer[..read] {
                    if byte == b'\n' {
                        kept.push(&label, &line);
                        line.clear();
                    } else if line.len() < Self::LINE_BYTES {
                        // A longer line is cut: it is only for reading.
                        line.push(byte);
                    }
                }
            }
            if !line.is_empty() {
                kept.push(&label, &line);
            }
        });
        (tail, reader)
    }

    fn push(&self, label: &str, line: &[u8]) {
        let line = String::from_utf8_lossy(line).trim_end().to_string();
        if line.is_empty() {
            return;
        }
        tracing::debug!(server = %label, "stderr: {line}");
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == Self::LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn lines(&self) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect()
    }
}

/// Our side of the MCP session: who we are, and what we do with the server's notifications.
struct Client {
    server: Arc<str>,
}

impl Client {
    fn new(server: &str) -> Self {
        Self {
            server: server.into(),
        }
    }
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("corral", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        // Tool groups are built once; a changed list shows in groups built from now on.
        tracing::debug!(server = %self.server, "the MCP server's tool list changed");
    }
}

fn label(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Stdio(server) => {
            let mut label = server.command.clone();
            for arg in &server.args {
                label.push(' ');
                if arg.is_empty() || arg.contains(char::is_whitespace) {
                    label.push_str(&format!("{arg:?}"));
                } else {
                    label.push_str(arg);
                }
            }
            if label.chars().count() > 160 {
                label = label.chars().take(159).collect::<String>() + "…";
            }
            label
        }
        Endpoint::Http(server) => {
            // The query and any user:password may hold credentials.
            let mut url = server.url.clone();
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

type HttpError = StreamableHttpError<reqwest::Error>;

/// The cause under `error`. rmcp's wrappers hold the transport's error without offering it as a
/// `source`, so they are opened here by hand.
fn cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(ClientInitializeError::TransportError { error, .. }) = error.downcast_ref() {
        return Some(error);
    }
    if let Some(ServiceError::TransportSend(error)) = error.downcast_ref() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<DynamicTransportError>() {
        return Some(error.error.as_ref());
    }
    if let Some(WorkerQuitReason::Fatal { error, .. }) =
        error.downcast_ref::<WorkerQuitReason<HttpError>>()
    {
        return Some(error);
    }
    if let Some(StreamableHttpError::Client(error)) = error.downcast_ref::<HttpError>() {
        return Some(error);
    }
    error.source()
}

/// What went wrong, for a person: the first error under the wrappers that says something about
/// the server (an HTTP failure, an I/O error) rather than about rmcp's types, with its causes.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(error) = error.downcast_ref::<reqwest::Error>() {
            return describe_reqwest_error(error);
        }
        if let Some(error) = error.downcast_ref::<HttpError>()
            && !matches!(error, StreamableHttpError::Client(_))
        {
            return error.to_string();
        }
        if let Some(error) = error.downcast_ref::<std::io::Error>() {
            return error.to_string();
        }
        current = cause(error);
    }
    error.to_string()
}

/// What kind of failure lies under a transport error, when the HTTP layer says: a status, a
/// refused connection, a challenge for credentials.
fn classify(error: &(dyn StdError + 'static)) -> Option<(ErrorKind, Option<Duration>)> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(error) = error.downcast_ref::<HttpError>()
            && let Some(found) = classify_http(error)
        {
            return Some(found);
        }
        if let Some(error) = error.downcast_ref::<reqwest::Error>() {
            return Some((classify_reqwest(error), None));
        }
        current = cause(error);
    }
    None
}

fn classify_http(error: &HttpError) -> Option<(ErrorKind, Option<Duration>)> {
    Some(match error {
        StreamableHttpError::HttpStatus(status) => (
            ErrorKind::from_http_status(status.status),
            status
                .retry_after
                .as_deref()
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        ),
        StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_) => {
            (ErrorKind::Auth, None)
        }
        StreamableHttpError::Client(error) => (classify_reqwest(error), None),
        StreamableHttpError::SessionExpired | StreamableHttpError::UnexpectedEndOfStream => {
            (ErrorKind::Transient, None)
        }
        _ => return None,
    })
}

fn classify_reqwest(error: &reqwest::Error) -> ErrorKind {
    if error.is_timeout() {
        ErrorKind::Timeout
    } else if let Some(status) = error.status() {
        ErrorKind::from_http_status(status.as_u16())
    } else {
        // Refused, reset, DNS: the server is not there now, and may be later.
        ErrorKind::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_command_or_the_url_without_secrets() {
        let stdio = Endpoint::Stdio(StdioServer {
            command: "npx".into(),
            args: vec!["-y".into(), "@scope/server".into(), "/a dir".into()],
            env: BTreeMap::new(),
            cwd: None,
        });
        assert_eq!(label(&stdio), r#"npx -y @scope/server "/a dir""#);
        let http = HttpServer::new(
            "https://u:p@mcp.example.com/mcp?key=secret",
            &BTreeMap::new(),
        )
        .expect("valid");
        assert_eq!(label(&Endpoint::Http(http)), "https://mcp.example.com/mcp");
    }
}
