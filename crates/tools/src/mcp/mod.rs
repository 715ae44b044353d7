//! MCP servers as tool groups: the `mcp` tool runtime provider.
//!
//! One `[[providers.tool_runtime]] type = "mcp"` entry names one Model Context Protocol server,
//! either a program we start and speak to over its stdin/stdout (`command`, `args`, `env`, `cwd`)
//! or a server reached over streamable HTTP (`url`, `headers`). Each `[[tool_groups]]` entry that
//! uses the provider becomes the server's tools, optionally narrowed by `tools = ["name", …]`.
//!
//! This module owns the config, the provider and the group parameters; `connection` owns the
//! session with the server (starting, reconnecting, killing the child), `http` carries MCP over
//! our reqwest 0.12 client, and `content` turns a tool result into what the model reads.
//! The protocol itself (JSON-RPC, the handshake, pagination) is the `rmcp` crate's.

mod connection;
mod content;
mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_core::{
    ErrorKind, ProviderError, Tool, ToolContext, ToolError, ToolOutput, ToolRuntimeProvider,
    ToolSpec,
};
use serde::Deserialize;

use connection::{Endpoint, HttpServer, Server, StdioServer};

/// The provider type in `[[providers.tool_runtime]] type = "mcp"`.
pub const PROVIDER_TYPE: &str = "mcp";

/// The `config` table of an `mcp` tool runtime provider: one MCP server, reached either over stdio
/// (`command`) or over streamable HTTP (`url`).
///
/// ```toml
/// [[providers.tool_runtime]]
/// id = "files"
/// type = "mcp"
/// config = { command = "npx", args = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"] }
///
/// [[providers.tool_runtime]]
/// id = "search"
/// type = "mcp"
/// config = { url = "https://mcp.example.com/mcp", headers = { Authorization = "Bearer ${env.MCP_TOKEN}" } }
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// The program that runs a stdio server; looked up on `PATH` when it has no `/`.
    #[serde(default)]
    pub command: Option<String>,
    /// Arguments for `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables added to ours for `command`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory for `command`; ours when absent.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// The endpoint of a streamable-HTTP server (`http://` or `https://`).
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP headers sent with every request to `url`, such as `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds one tool call may take before it fails with a timeout (default 60).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Seconds to start the server (or reach it) and finish the MCP handshake (default 60: a first
    /// `npx` run may download the server).
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: f64,
}

fn default_timeout_s() -> f64 {
    60.0
}

fn default_connect_timeout_s() -> f64 {
    60.0
}

// Written by hand so that `env` values and `headers` (tokens) never reach a log.
impl fmt::Debug for McpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpConfig")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_s", &self.timeout_s)
            .field("connect_timeout_s", &self.connect_timeout_s)
            .finish()
    }
}

/// No server yet (set `command` or `url`), and the default time limits.
impl Default for McpConfig {
    fn default() -> Self {
        Self {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            timeout_s: default_timeout_s(),
            connect_timeout_s: default_connect_timeout_s(),
        }
    }
}

impl McpConfig {
    /// A stdio server started as `command args…`.
    pub fn stdio(
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            command: Some(command.into()),
            args: args.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A streamable-HTTP server at `url`.
    pub fn http(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }
}

/// A tool runtime whose tools are one MCP server's.
///
/// Building it checks the config and nothing else. The server is started (or reached) on the
/// first [`ToolRuntimeProvider::tools`] call; that one connection is shared by every group and
/// tool of the provider, and replaced by a new one when a later call finds it closed (the server
/// exited or dropped the session). A stdio server's whole process group is killed when the
/// provider and every tool it handed out have been dropped.
pub struct McpProvider {
    server: Arc<Server>,
}

impl fmt::Debug for McpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpProvider")
            .field("server", &self.server.label())
            .finish_non_exhaustive()
    }
}

impl McpProvider {
    /// Checks `config`; starts nothing and connects to nothing.
    pub fn new(config: McpConfig) -> Result<Self, ProviderError> {
        let call_timeout = seconds(config.timeout_s, "timeout_s")?;
        let connect_timeout = seconds(config.connect_timeout_s, "connect_timeout_s")?;
        let endpoint = match (config.command, config.url) {
            (Some(command), None) => {
                if !config.headers.is_empty() {
                    return Err(invalid_config(
                        "`headers` are sent to a streamable-HTTP server (`url`), but this entry \
                         starts a stdio server (`command`); remove `headers`",
                    ));
                }
                if command.trim().is_empty() {
                    return Err(invalid_config("`command` is empty"));
                }
                Endpoint::Stdio(StdioServer {
                    command,
                    args: config.args,
                    env: config.env,
                    cwd: config.cwd,
                })
            }
            (None, Some(url)) => {
                let stdio_only: Vec<&str> = [
                    ("args", !config.args.is_empty()),
                    ("env", !config.env.is_empty()),
                    ("cwd", config.cwd.is_some()),
                ]
                .into_iter()
                .filter_map(|(key, set)| set.then_some(key))
                .collect();
                if !stdio_only.is_empty() {
                    return Err(invalid_config(format!(
                        "{} belong to a stdio server (`command`), but this entry reaches a \
                         streamable-HTTP server (`url`); remove them",
                        stdio_only
                            .iter()
                            .map(|key| format!("`{key}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Endpoint::Http(HttpServer::new(&url, &config.headers).map_err(invalid_config)?)
            }
            (Some(_), Some(_)) => {
                return Err(invalid_config(
                    "both `command` and `url` are set; an `mcp` provider talks to one server: \
                     keep `command` for a server started over stdio or `url` for a \
                     streamable-HTTP server",
                ));
            }
            (None, None) => {
                return Err(invalid_config(
                    "neither `command` nor `url` is set; give `command` (and `args`) for a server \
                     started over stdio, or `url` for a streamable-HTTP server",
                ));
            }
        };
        Ok(Self {
            server: Arc::new(Server::new(endpoint, call_timeout, connect_timeout)),
        })
    }
}

#[async_trait]
impl ToolRuntimeProvider for McpProvider {
    async fn tools(
        &self,
        params: &serde_json::Value,
        _context: &dyn ToolContext,
    ) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        let params = GroupParams::parse(params)?;
        let listed = self.server.list_tools().await?;
        let wanted: Option<BTreeSet<&str>> = params
            .tools
            .as_ref()
            .map(|names| names.iter().map(String::as_str).collect());
        if let Some(wanted) = &wanted {
            let offered: BTreeSet<&str> = listed.iter().map(|tool| tool.name.as_ref()).collect();
            let unknown: Vec<&str> = wanted.difference(&offered).copied().collect();
            if !unknown.is_empty() {
                return Err(ToolError::InvalidArguments {
                    field: Some("tools".into()),
                    message: format!(
                        "MCP server `{}` has no tool named {}; it offers: {}",
                        self.server.label(),
                        quoted(unknown.iter().copied()),
                        quoted(offered.iter().copied()),
                    ),
                });
            }
        }
        let tools: Vec<Arc<dyn Tool>> = listed
            .into_iter()
            .filter(|tool| {
                wanted
                    .as_ref()
                    .is_none_or(|wanted| wanted.contains(tool.name.as_ref()))
            })
            .map(|tool| {
                let spec = ToolSpec {
                    name: tool.name.to_string(),
                    // A model chooses tools by their descriptions; the title is the next best.
                    description: tool
                        .description
                        .as_deref()
                        .map(str::to_owned)
                        .or_else(|| tool.title.clone())
                        .unwrap_or_default(),
                    parameters: serde_json::Value::Object((*tool.input_schema).clone()),
                };
                Arc::new(McpTool {
                    server: Arc::clone(&self.server),
                    spec,
                }) as Arc<dyn Tool>
            })
            .collect();
        tracing::debug!(
            server = %self.server.label(),
            tools = tools.len(),
            "MCP tool group ready"
        );
        Ok(tools)
    }
}

/// The `params` of a `[[tool_groups]]` entry served by an `mcp` provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupParams {
    /// Only these of the server's tools; all of them when absent.
    #[serde(default)]
    tools: Option<Vec<String>>,
}

impl GroupParams {
    fn parse(params: &serde_json::Value) -> Result<Self, ToolError> {
        if params.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(params.clone()).map_err(|e| ToolError::InvalidArguments {
            field: None,
            message: format!("MCP tool group parameters: {e}"),
        })
    }
}

/// One tool of an MCP server.
struct McpTool {
    server: Arc<Server>,
    spec: ToolSpec,
}

impl fmt::Debug for McpTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpTool")
            .field("server", &self.server.label())
            .field("name", &self.spec.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let arguments = match arguments {
            serde_json::Value::Object(arguments) => arguments,
            // Models often send nothing at all for a tool without parameters.
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(ToolError::InvalidArguments {
                    field: None,
                    message: format!(
                        "the arguments of `{}` must be a JSON object, not {}",
                        self.spec.name,
                        json_kind(&other)
                    ),
                });
            }
        };
        self.server.call_tool(&self.spec.name, arguments).await
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn quoted<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(|name| format!("`{name}`")).collect();
    if names.is_empty() {
        "no tools".into()
    } else {
        names.join(", ")
    }
}

fn seconds(value: f64, key: &str) -> Result<Duration, ProviderError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid_config(format!(
            "`{key}` must be a positive number of seconds, not {value}"
        )));
    }
    Ok(Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX))
}

fn invalid_config(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidRequest, message).with_provider(PROVIDER_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: serde_json::Value) -> Result<McpConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn refused(value: serde_json::Value) -> String {
        let config = config(value).expect("parses");
        match McpProvider::new(config) {
            Ok(provider) => panic!("expected a config error, got {provider:?}"),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::InvalidRequest);
                e.message
            }
        }
    }

    #[test]
    fn a_stdio_or_an_http_server_builds_without_starting_anything() {
        let stdio = config(json!({"command": "definitely-not-a-real-program", "args": ["x"]}))
            .expect("parses");
        assert_eq!(stdio.timeout_s, 60.0);
        McpProvider::new(stdio).expect("builds: nothing is spawned yet");
        let http = config(json!({
            "url": "http://127.0.0.1:9/mcp",
            "headers": {"Authorization": "Bearer secret"},
            "timeout_s": 5
        }))
        .expect("parses");
        let provider = McpProvider::new(http).expect("builds: nothing is reached yet");
        assert!(!format!("{provider:?}").contains("secret"));
    }

    #[test]
    fn exactly_one_of_command_and_url_is_required() {
        let neither = refused(json!({}));
        assert!(
            neither.contains("`command`") && neither.contains("`url`"),
            "{neither}"
        );
        let both = refused(json!({"command": "x", "url": "http://localhost/mcp"}));
        assert!(both.contains("both `command` and `url`"), "{both}");
        let mixed = refused(json!({"url": "http://localhost/mcp", "args": ["a"], "cwd": "/"}));
        assert!(mixed.contains("`args`, `cwd`"), "{mixed}");
        let headers = refused(json!({"command": "x", "headers": {"A": "b"}}));
        assert!(headers.contains("`headers`"), "{headers}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(refused(json!({"command": " "})).contains("`command` is empty"));
        assert!(refused(json!({"command": "x", "timeout_s": 0})).contains("`timeout_s`"));
        let url = refused(json!({"url": "ftp://example.com"}));
        assert!(url.contains("`url`") && url.contains("ftp"), "{url}");
        let header = refused(json!({"url": "http://h/mcp", "headers": {"bad name": "x"}}));
        assert!(header.contains("bad name"), "{header}");
        let reserved = refused(json!({"url": "http://h/mcp", "headers": {"Mcp-Session-Id": "x"}}));
        assert!(reserved.contains("Mcp-Session-Id"), "{reserved}");
        let unknown = config(json!({"command": "x", "argz": []})).expect_err("unknown key");
        assert!(unknown.to_string().contains("argz"), "{unknown}");
    }

    #[test]
    fn group_parameters_take_only_a_tool_list() {
        assert!(
            GroupParams::parse(&json!(null))
                .expect("none")
                .tools
                .is_none()
        );
        let some = GroupParams::parse(&json!({"tools": ["echo"]})).expect("list");
        assert_eq!(some.tools, Some(vec!["echo".to_string()]));
        match GroupParams::parse(&json!({"tool": ["echo"]})) {
            Err(ToolError::InvalidArguments { message, .. }) => {
                assert!(message.contains("tool"), "{message}")
            }
            other => panic!("expected invalid arguments, got {other:?}"),
        }
    }
}
