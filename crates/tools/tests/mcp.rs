//! The MCP client against the real reference server, `@modelcontextprotocol/server-everything`
//! from npm, over stdio and over streamable HTTP: listing, calls and their results, tool errors,
//! bad arguments, the allow-list, a server that dies, a command that does not exist, and no
//! process left behind.
//!
//! The server is installed by `scripts/fetch-mcp-servers.sh` under `$CORRAL_CACHE/mcp` (default
//! `~/.cache/corral/mcp`); `CORRAL_MCP_EVERYTHING` may name its `dist/index.js` instead. Without
//! it (or without `node`), the tests that need it say so and pass.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_core::{ErrorKind, NoToolContext, Tool, ToolError, ToolRuntimeProvider};
use corral_tools::mcp::{McpConfig, McpProvider};
use serde_json::{Value, json};

/// The entry point of the reference server, or `None` (with a line saying why) when it or `node`
/// is missing.
fn everything(test: &str) -> Option<PathBuf> {
    let entry = std::env::var_os("CORRAL_MCP_EVERYTHING")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("CORRAL_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/corral"))
                })?;
            Some(
                cache
                    .join("mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
            )
        });
    let entry = entry.unwrap_or_else(|| PathBuf::from("$HOME/.cache/corral/mcp (HOME is not set)"));
    if !entry.is_file() {
        eprintln!(
            "SKIPPED {test}: the MCP reference server is not installed at {}; run \
             scripts/fetch-mcp-servers.sh, or set CORRAL_MCP_EVERYTHING to its dist/index.js",
            entry.display()
        );
        return None;
    }
    if !node_runs() {
        eprintln!("SKIPPED {test}: `node` is not on PATH, and the MCP reference server needs it");
        return None;
    }
    Some(entry)
}

fn node_runs() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn stdio(entry: &Path) -> McpConfig {
    McpConfig::stdio("node", [entry.display().to_string(), "stdio".to_string()])
}

async fn group(provider: &McpProvider, params: Value) -> Vec<Arc<dyn Tool>> {
    provider
        .tools(&params, &NoToolContext)
        .await
        .expect("the server's tools")
}

/// The error building a group gives; a group that builds fails the test.
async fn group_error(provider: &McpProvider, params: Value) -> ToolError {
    match provider.tools(&params, &NoToolContext).await {
        Ok(tools) => panic!(
            "expected an error, got the tools {:?}",
            tools
                .iter()
                .map(|tool| tool.spec().name.clone())
                .collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

fn find<'a>(tools: &'a [Arc<dyn Tool>], name: &str) -> &'a Arc<dyn Tool> {
    tools
        .iter()
        .find(|tool| tool.spec().name == name)
        .unwrap_or_else(|| panic!("no tool `{name}`"))
}

/// A marker in a server's environment, so the test can find the server's processes.
fn marker(test: &str) -> String {
    format!("{test}-{}-{}", std::process::id(), nonce())
}

fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

const MARKER_VAR: &str = "CORRAL_MCP_TEST_MARKER";

/// The live (not zombie) processes whose environment holds `MARKER_VAR=marker`.
#[cfg(target_os = "linux")]
fn live_processes(marker: &str) -> Vec<u32> {
    let wanted = format!("{MARKER_VAR}={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| var == wanted.as_bytes())
            })
        })
        .filter(|pid| {
            // The state follows the last ')' of `pid (comm) S …`; a zombie is dead already.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next())
                    .is_some_and(|state| state != 'Z' && state != 'X')
            })
        })
        .collect()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stdio_server_lists_its_tools_and_answers_calls() {
    let Some(entry) = everything("stdio_server_lists_its_tools_and_answers_calls") else {
        return;
    };
    let marker = marker("calls");
    let mut config = stdio(&entry);
    config.env.insert(MARKER_VAR.into(), marker.clone());
    let provider = McpProvider::new(config).expect("builds");

    let tools = group(&provider, Value::Null).await;
    let names: Vec<&str> = tools.iter().map(|tool| tool.spec().name.as_str()).collect();
    for expected in [
        "echo",
        "get-sum",
        "get-env",
        "get-tiny-image",
        "get-structured-content",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let echo = find(&tools, "echo");
    assert_eq!(echo.spec().description, "Echoes back the input string");
    assert_eq!(echo.spec().parameters["type"], "object");
    assert_eq!(echo.spec().parameters["required"], json!(["message"]));

    let echoed = echo
        .call(json!({"message": "hello, corral"}))
        .await
        .expect("echoes");
    assert_eq!(echoed.content, "Echo: hello, corral");
    assert!(echoed.metadata.is_empty());
    let sum = find(&tools, "get-sum")
        .call(json!({"a": 2, "b": 40}))
        .await
        .expect("adds");
    assert_eq!(sum.content, "The sum of 2 and 40 is 42.");

    // The configured environment reaches the server.
    let env = find(&tools, "get-env")
        .call(Value::Null)
        .await
        .expect("env");
    assert!(env.content.contains(&marker), "{}", env.content);

    // Structured content is kept for the caller; an image is described and attached.
    let weather = find(&tools, "get-structured-content")
        .call(json!({"location": "New York"}))
        .await
        .expect("weather");
    let structured = &weather.metadata["structured_content"];
    assert!(structured["temperature"].is_number(), "{structured}");
    let image = find(&tools, "get-tiny-image")
        .call(json!({}))
        .await
        .expect("image");
    assert!(
        image.content.contains("[image: image/png, "),
        "{}",
        image.content
    );
    assert!(!image.content.contains("iVBOR"), "no base64 for the model");
    assert_eq!(image.metadata["attachments"][0]["type"], "image");
    assert_eq!(image.metadata["attachments"][0]["mimeType"], "image/png");

    // A second group shares the one server process.
    let again = group(&provider, json!({"tools": ["echo"]})).await;
    assert_eq!(again.len(), 1);
    #[cfg(target_os = "linux")]
    assert_eq!(live_processes(&marker).len(), 1);
}

#[tokio::test]
async fn tool_errors_and_bad_arguments_are_told_apart() {
    let Some(entry) = everything("tool_errors_and_bad_arguments_are_told_apart") else {
        return;
    };
    let provider = McpProvider::new(stdio(&entry)).expect("builds");
    let tools = group(&provider, json!({"tools": ["echo"]})).await;
    let echo = &tools[0];

    // The server ran the call and reported an error (`isError`): its text is the message.
    match echo.call(json!({"message": 42})).await {
        Err(ToolError::Failed(message)) => {
            assert!(message.contains("expected string"), "{message}")
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
    // Arguments that are not an object never reach the server.
    for bad in [json!("hello"), json!(["hello"]), json!(7)] {
        match echo.call(bad.clone()).await {
            Err(ToolError::InvalidArguments { message, .. }) => {
                assert!(message.contains("must be a JSON object"), "{message}")
            }
            other => panic!("expected invalid arguments for {bad}, got {other:?}"),
        }
    }
    // The session is still good.
    let echoed = echo
        .call(json!({"message": "still here"}))
        .await
        .expect("echoes");
    assert_eq!(echoed.content, "Echo: still here");
}

#[tokio::test]
async fn the_allow_list_selects_tools_and_names_unknown_ones() {
    let Some(entry) = everything("the_allow_list_selects_tools_and_names_unknown_ones") else {
        return;
    };
    let provider = McpProvider::new(stdio(&entry)).expect("builds");
    let tools = group(&provider, json!({"tools": ["get-sum", "echo"]})).await;
    let mut names: Vec<&str> = tools.iter().map(|tool| tool.spec().name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["echo", "get-sum"]);

    match group_error(&provider, json!({"tools": ["echo", "nope", "zilch"]})).await {
        ToolError::InvalidArguments { field, message } => {
            assert_eq!(field.as_deref(), Some("tools"));
            assert!(message.contains("`nope`, `zilch`"), "{message}");
            assert!(message.contains("it offers: `echo`"), "{message}");
        }
        other => panic!("expected unknown tools to be named, got {other:?}"),
    }
    match group_error(&provider, json!({"tool": ["echo"]})).await {
        ToolError::InvalidArguments { message, .. } => {
            assert!(message.contains("unknown field `tool`"), "{message}")
        }
        other => panic!("expected a parameter error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_call_times_out() {
    let Some(entry) = everything("a_slow_call_times_out") else {
        return;
    };
    let mut config = stdio(&entry);
    config.timeout_s = 0.5;
    let provider = McpProvider::new(config).expect("builds");
    let tools = group(
        &provider,
        json!({"tools": ["trigger-long-running-operation", "echo"]}),
    )
    .await;
    let slow = find(&tools, "trigger-long-running-operation");
    match slow.call(json!({"duration": 5, "steps": 5})).await {
        Err(ToolError::Timeout(after)) => assert_eq!(after, Duration::from_millis(500)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The timed-out call was cancelled on the server; the session carries on.
    let echoed = find(&tools, "echo")
        .call(json!({"message": "after"}))
        .await
        .expect("echoes");
    assert_eq!(echoed.content, "Echo: after");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_and_what_it_started_are_killed_on_drop_and_restarted_after_a_crash() {
    let test = "the_server_and_what_it_started_are_killed_on_drop_and_restarted_after_a_crash";
    let Some(entry) = everything(test) else {
        return;
    };
    // Started through a shell that stays alive, as `npx` does, so that node is a grandchild.
    let marker = marker("drop");
    let mut config = McpConfig::stdio(
        "sh",
        [
            "-c".to_string(),
            "node \"$0\" stdio; exit $?".to_string(),
            entry.display().to_string(),
        ],
    );
    config.env.insert(MARKER_VAR.into(), marker.clone());
    let provider = McpProvider::new(config).expect("builds");
    let tools = group(&provider, json!({"tools": ["echo"]})).await;
    let first = live_processes(&marker);
    assert_eq!(first.len(), 2, "the shell and node: {first:?}");

    // The server dies: the next calls start it again.
    for pid in &first {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    wait_until("the killed server is gone", Duration::from_secs(5), || {
        live_processes(&marker).is_empty()
    })
    .await;
    let mut answer = None;
    for _ in 0..3 {
        match tools[0].call(json!({"message": "again"})).await {
            Ok(output) => {
                answer = Some(output);
                break;
            }
            // The call that finds the session broken may fail; the next one reconnects.
            Err(ToolError::Provider(e)) if e.kind == ErrorKind::Transient => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("expected a reconnect, got {e:?}"),
        }
    }
    assert_eq!(
        answer.expect("answered after a restart").content,
        "Echo: again"
    );
    let second = live_processes(&marker);
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(
        second.iter().all(|pid| !first.contains(pid)),
        "{first:?} {second:?}"
    );

    drop(tools);
    drop(provider);
    wait_until(
        "the shell and node are killed when the provider is dropped",
        Duration::from_secs(5),
        || live_processes(&marker).is_empty(),
    )
    .await;
}

#[tokio::test]
async fn a_missing_command_is_named() {
    let provider = McpProvider::new(McpConfig::stdio("corral-no-such-mcp-server", ["--stdio"]))
        .expect("builds: nothing is started yet");
    match group_error(&provider, Value::Null).await {
        ToolError::Provider(e) => {
            assert_eq!(e.kind, ErrorKind::Permanent);
            assert!(
                e.message
                    .contains("the command `corral-no-such-mcp-server` was not found on PATH"),
                "{e}"
            );
        }
        other => panic!("expected a start error, got {other:?}"),
    }
    let absolute =
        McpProvider::new(McpConfig::stdio("/nonexistent/bin/server", ["x"])).expect("builds");
    let e = group_error(&absolute, Value::Null).await;
    assert!(
        e.to_string()
            .contains("`/nonexistent/bin/server` does not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_dies_at_start_shows_its_stderr() {
    if !node_runs() {
        eprintln!("SKIPPED a_server_that_dies_at_start_shows_its_stderr: `node` is not on PATH");
        return;
    }
    let provider = McpProvider::new(McpConfig::stdio(
        "node",
        [
            "-e",
            "console.error('config file missing: /etc/nowhere.json'); process.exit(3)",
        ],
    ))
    .expect("builds");
    match group_error(&provider, Value::Null).await {
        ToolError::Provider(e) => {
            assert!(e.message.starts_with("MCP server `node -e "), "{e}");
            assert!(e.message.contains("handshake failed"), "{e}");
            assert!(
                e.message.contains("config file missing: /etc/nowhere.json"),
                "{e}"
            );
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

/// The reference server in streamable-HTTP mode on a free loopback port, killed on drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    async fn start(entry: &Path, port: u16) -> Self {
        let child = Command::new("node")
            .arg(entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let server = Self { child, port };
        wait_until("the HTTP server listens", Duration::from_secs(15), || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        })
        .await;
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

#[tokio::test]
async fn streamable_http_server_lists_calls_and_survives_a_restart() {
    let Some(entry) = everything("streamable_http_server_lists_calls_and_survives_a_restart")
    else {
        return;
    };
    let port = free_port();
    let server = HttpServer::start(&entry, port).await;
    let mut config = McpConfig::http(server.url());
    config.headers.insert(
        "Authorization".into(),
        "Bearer not-checked-by-this-server".into(),
    );
    let provider = McpProvider::new(config).expect("builds");

    let tools = group(&provider, json!({"tools": ["echo", "get-sum"]})).await;
    assert_eq!(tools.len(), 2);
    let echoed = find(&tools, "echo")
        .call(json!({"message": "over http"}))
        .await
        .expect("echoes");
    assert_eq!(echoed.content, "Echo: over http");
    let sum = find(&tools, "get-sum")
        .call(json!({"a": 1.5, "b": 2}))
        .await
        .expect("adds");
    assert_eq!(sum.content, "The sum of 1.5 and 2 is 3.5.");
    match find(&tools, "echo").call(json!({})).await {
        Err(ToolError::Failed(message)) => assert!(message.contains("message"), "{message}"),
        other => panic!("expected the server's error, got {other:?}"),
    }

    // The server goes away: calls fail with an error naming it, and work again once it is back.
    drop(server);
    match find(&tools, "echo")
        .call(json!({"message": "anyone?"}))
        .await
    {
        Err(ToolError::Provider(e)) => {
            assert!(e.message.contains(&format!("127.0.0.1:{port}/mcp")), "{e}");
            assert!(e.kind.is_retryable(), "{e:?}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    let _server = HttpServer::start(&entry, port).await;
    let mut answer = None;
    for _ in 0..3 {
        match find(&tools, "echo").call(json!({"message": "back"})).await {
            Ok(output) => {
                answer = Some(output);
                break;
            }
            Err(ToolError::Provider(e)) if e.kind.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("expected a reconnect, got {e:?}"),
        }
    }
    assert_eq!(
        answer.expect("answered after the restart").content,
        "Echo: back"
    );
}

#[tokio::test]
async fn an_http_server_that_is_not_there_is_named() {
    let port = free_port();
    let mut config = McpConfig::http(format!("http://127.0.0.1:{port}/mcp?token=secret"));
    config.connect_timeout_s = 5.0;
    let provider = McpProvider::new(config).expect("builds");
    match group_error(&provider, Value::Null).await {
        ToolError::Provider(e) => {
            assert_eq!(e.kind, ErrorKind::Transient, "{e}");
            assert!(
                e.message
                    .contains(&format!("`http://127.0.0.1:{port}/mcp`")),
                "{e}"
            );
            assert!(!e.message.contains("secret"), "{e}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
}
