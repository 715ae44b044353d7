//! AWS Bedrock through its Converse and ConverseStream APIs: text, images and tools for the Llama
//! 3.2 models there (and any other model Converse serves).
//!
//! Requests are signed with SigV4 by AWS's own `aws-sigv4` crate, or carry a Bedrock API key as a
//! bearer token. The streamed answer comes in AWS event-stream frames, decoded by
//! `aws-smithy-eventstream`. Transport, error classification and stream bookkeeping are the remote
//! client's; only the wire format and the framing are Bedrock's own.

mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::Message as Frame;
use bytes::BytesMut;
use corral_core::{
    ChatError, ChatModel, ChatRequest, ChatResponse, ChatStream, EmbedError, Embedder, ErrorKind,
    InferenceProvider, async_trait, lenient,
};
use serde::Deserialize;

use crate::remote::{Auth, Client, Endpoint, Secret, Signer, Timeouts};
use crate::stream::{Framing, Said};

/// The provider type in `corral.toml`.
pub const PROVIDER_TYPE: &str = "remote::bedrock";

/// The Hugging Face ids of the Llama 3.2 models → Bedrock's model ids, used through the
/// cross-region inference profile of the configured region's geography (`us.meta.llama3-2-…`).
/// Any other name (a model id, a profile, an ARN) is passed through as it is.
const MODELS: &[(&str, &str)] = &[
    (
        "meta-llama/Llama-3.2-1B-Instruct",
        "meta.llama3-2-1b-instruct-v1:0",
    ),
    (
        "meta-llama/Llama-3.2-3B-Instruct",
        "meta.llama3-2-3b-instruct-v1:0",
    ),
    (
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "meta.llama3-2-11b-instruct-v1:0",
    ),
    (
        "meta-llama/Llama-3.2-90B-Vision-Instruct",
        "meta.llama3-2-90b-instruct-v1:0",
    ),
];

/// The `config` table of a `remote::bedrock` provider. Credentials left out come from the standard
/// AWS environment variables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockConfig {
    /// The AWS region (else `AWS_REGION`, then `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Another endpoint than `https://bedrock-runtime.<region>.amazonaws.com` (a VPC endpoint, a proxy).
    pub endpoint: Option<String>,
    /// Else `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<Secret>,
    /// Else `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    /// For temporary credentials; else `AWS_SESSION_TOKEN`.
    pub session_token: Option<Secret>,
    /// A Bedrock API key, used instead of SigV4; else `AWS_BEARER_TOKEN_BEDROCK`.
    pub api_key: Option<Secret>,
    #[serde(default, deserialize_with = "lenient::option")]
    pub connect_timeout_secs: Option<f64>,
    #[serde(default, deserialize_with = "lenient::option")]
    pub read_timeout_secs: Option<f64>,
    #[serde(default, deserialize_with = "lenient::option")]
    pub request_timeout_secs: Option<f64>,
    /// More model-name mappings (ours → Bedrock's model or inference-profile ids).
    #[serde(default)]
    pub models: BTreeMap<String, String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// SigV4 over each request, for the `bedrock` service in one region.
#[derive(Debug)]
struct SigV4 {
    region: String,
    access_key_id: Option<Secret>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
}

impl Signer for SigV4 {
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let (Some(key_id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) else {
            return Err(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                        (and AWS_SESSION_TOKEN for temporary ones), or a Bedrock API key in \
                        AWS_BEARER_TOKEN_BEDROCK"
                    .into(),
            );
        };
        let identity: Identity = Credentials::new(
            key_id.expose(),
            secret.expose(),
            self.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "corral-config",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("bedrock")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("cannot set up SigV4 signing: {e}"))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("cannot sign the request: {e}"))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| format!("cannot sign the request: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }
}

/// Bedrock as an inference provider.
#[derive(Debug, Clone)]
pub struct BedrockProvider {
    client: Arc<Client>,
    models: BTreeMap<String, String>,
}

impl BedrockProvider {
    /// Builds the provider from its config and the process environment; cheap, no network.
    /// Errors name the config key at fault.
    pub fn new(config: BedrockConfig) -> Result<Self, String> {
        Self::with_env(config, &env)
    }

    /// Builds the provider, reading environment variables through `env`.
    ///
    /// Credentials come from one source, never mixed: a Bedrock API key set in the config; else
    /// SigV4 keys set in the config (key id, secret and session token together); else the
    /// environment, where `AWS_BEARER_TOKEN_BEDROCK` wins over `AWS_ACCESS_KEY_ID` and friends.
    pub fn with_env(
        config: BedrockConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let set = |secret: Option<Secret>| secret.filter(|s| !s.expose().is_empty());
        let from_env = |name: &str| env(name).filter(|v| !v.is_empty()).map(Secret::new);
        let region = config
            .region
            .filter(|r| !r.is_empty())
            .or_else(|| env("AWS_REGION").filter(|v| !v.is_empty()))
            .or_else(|| env("AWS_DEFAULT_REGION").filter(|v| !v.is_empty()))
            .ok_or("`region` is required (or set AWS_REGION)")?;
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!("`region` {region:?} is not an AWS region name"));
        }
        let base_url = config
            .endpoint
            .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
        let config_key_id = set(config.access_key_id);
        let (api_key, signer): (Option<Secret>, Option<Box<dyn Signer>>) = match set(config.api_key)
        {
            Some(key) => (Some(key), None),
            None if config_key_id.is_some() => {
                let signer = SigV4 {
                    region: region.clone(),
                    access_key_id: config_key_id,
                    secret_access_key: set(config.secret_access_key),
                    session_token: set(config.session_token),
                };
                (None, Some(Box::new(signer)))
            }
            None => match from_env("AWS_BEARER_TOKEN_BEDROCK") {
                Some(key) => (Some(key), None),
                None => {
                    let signer = SigV4 {
                        region: region.clone(),
                        access_key_id: from_env("AWS_ACCESS_KEY_ID"),
                        secret_access_key: from_env("AWS_SECRET_ACCESS_KEY"),
                        session_token: from_env("AWS_SESSION_TOKEN"),
                    };
                    (None, Some(Box::new(signer)))
                }
            },
        };
        let endpoint = Endpoint {
            provider: PROVIDER_TYPE.to_string(),
            base_url,
            auth: Auth::Bearer,
            api_key,
            api_key_hint: Some("AWS_BEARER_TOKEN_BEDROCK".into()),
            query: Vec::new(),
            headers: BTreeMap::new(),
            timeouts: Timeouts::from_config(
                config.connect_timeout_secs,
                config.read_timeout_secs,
                config.request_timeout_secs,
            )?,
            signer,
        };
        // Bedrock serves the Llama 3.2 models on demand only through cross-region inference
        // profiles, named by the region's geography.
        let geography = match region.split('-').next() {
            Some("us") => Some("us"),
            Some("eu") => Some("eu"),
            Some("ap") => Some("apac"),
            _ => None,
        };
        let mut models: BTreeMap<String, String> = MODELS
            .iter()
            .map(|(ours, theirs)| {
                let id = geography.map_or_else(|| theirs.to_string(), |g| format!("{g}.{theirs}"));
                (ours.to_string(), id)
            })
            .collect();
        models.extend(config.models);
        Ok(Self {
            client: Arc::new(Client::new(endpoint)?),
            models,
        })
    }

    /// A chat model handle; no request is made until it is used.
    pub fn chat(&self, model: &str) -> BedrockChatModel {
        let id = self.models.get(model).map_or(model, String::as_str);
        BedrockChatModel {
            client: self.client.clone(),
            path: format!("model/{}", encode_path_segment(id)),
        }
    }
}

/// Percent-encodes a model id or ARN for the URL path (`:` and `/` included), as Bedrock expects.
fn encode_path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl InferenceProvider for BedrockProvider {
    async fn chat_model(&self, name: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        Ok(Arc::new(self.chat(name)))
    }

    async fn embedder(&self, name: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        Err(EmbedError::InvalidRequest(format!(
            "{PROVIDER_TYPE} serves chat models through Converse only; `{name}` cannot embed here"
        )))
    }
}

/// A chat model on Bedrock.
#[derive(Debug, Clone)]
pub struct BedrockChatModel {
    client: Arc<Client>,
    /// `model/<encoded id>`.
    path: String,
}

#[async_trait]
impl ChatModel for BedrockChatModel {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        let body = wire::converse_body(request).map_err(ChatError::InvalidRequest)?;
        let text = self
            .client
            .post(&format!("{}/converse", self.path), &body)
            .await?;
        wire::parse_response(&text)
            .map_err(|e| self.client.malformed("Converse response", &e).into())
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        let body = wire::converse_body(request).map_err(ChatError::InvalidRequest)?;
        self.client
            .stream_framed(
                &format!("{}/converse-stream", self.path),
                &body,
                EventStream::default(),
            )
            .await
    }
}

/// No ConverseStream event comes near this; a longer "frame" is a body that is not an event stream.
const MAX_FRAME: usize = 16 << 20;

/// AWS event-stream frames, as ConverseStream sends them.
#[derive(Default)]
struct EventStream {
    decoder: MessageFrameDecoder,
    buffer: BytesMut,
    /// Bytes received since the last whole frame: non-zero at the end means a frame was cut.
    unframed: usize,
}

fn header<'a>(frame: &'a Frame, name: &str) -> Option<&'a str> {
    frame
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

impl Framing for EventStream {
    type Event = Frame;

    fn feed(&mut self, bytes: &[u8]) -> (Vec<Frame>, Option<String>) {
        self.buffer.extend_from_slice(bytes);
        self.unframed += bytes.len();
        let mut frames = Vec::new();
        loop {
            if self.unframed > MAX_FRAME {
                let problem = format!("an event-stream frame longer than {MAX_FRAME} bytes");
                return (frames, Some(problem));
            }
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(frame)) => {
                    frames.push(frame);
                    self.unframed = self.buffer.len();
                }
                Ok(DecodedFrame::Incomplete) => return (frames, None),
                Err(e) => return (frames, Some(format!("not a valid event-stream frame: {e}"))),
            }
        }
    }

    fn content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn finish(&mut self) -> Result<Option<Frame>, String> {
        if self.unframed > 0 {
            return Err(format!(
                "the body ended inside an event-stream frame ({} bytes)",
                self.unframed
            ));
        }
        Ok(None)
    }

    fn interpret(&mut self, frame: Frame, number: usize) -> Said {
        match header(&frame, ":message-type") {
            Some("event") => {}
            Some("exception") => {
                let exception = header(&frame, ":exception-type").unwrap_or("unknown");
                let message = serde_json::from_slice::<serde_json::Value>(frame.payload())
                    .ok()
                    .and_then(|v| {
                        v.get("message")
                            .or_else(|| v.get("Message"))
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| String::from_utf8_lossy(frame.payload()).into_owned());
                return Said::Failed(
                    exception_kind(exception, &message),
                    format!("{exception}: {message}"),
                );
            }
            Some("error") => {
                let code = header(&frame, ":error-code").unwrap_or("unknown");
                let message = header(&frame, ":error-message").unwrap_or("");
                return Said::Failed(ErrorKind::Transient, format!("{code}: {message}"));
            }
            other => {
                return Said::Failed(
                    ErrorKind::Permanent,
                    format!("malformed stream event #{number}: message type {other:?}"),
                );
            }
        }
        let Some(event_type) = header(&frame, ":event-type") else {
            return Said::Failed(
                ErrorKind::Permanent,
                format!("malformed stream event #{number}: no :event-type"),
            );
        };
        match wire::stream_event(event_type, frame.payload()) {
            Ok(deltas) => Said::Deltas(deltas),
            Err(problem) => Said::Failed(
                ErrorKind::Permanent,
                format!("malformed stream event #{number} ({event_type}): {problem}"),
            ),
        }
    }
}

/// ConverseStream's exceptions, by what retrying can do about them.
fn exception_kind(exception: &str, message: &str) -> ErrorKind {
    match exception {
        "throttlingException" => ErrorKind::RateLimited,
        "internalServerException" | "serviceUnavailableException" | "modelStreamErrorException" => {
            ErrorKind::Transient
        }
        "validationException" if message.to_ascii_lowercase().contains("too long") => {
            ErrorKind::ContextLengthExceeded
        }
        "validationException" => ErrorKind::InvalidRequest,
        _ => ErrorKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_and_arns_are_encoded_for_the_path() {
        assert_eq!(
            encode_path_segment("meta.llama3-2-3b-instruct-v1:0"),
            "meta.llama3-2-3b-instruct-v1%3A0"
        );
        assert_eq!(
            encode_path_segment(
                "arn:aws:bedrock:us-west-2:123:inference-profile/us.meta.llama3-2-3b-instruct-v1:0"
            ),
            "arn%3Aaws%3Abedrock%3Aus-west-2%3A123%3Ainference-profile%2Fus.meta.llama3-2-3b-instruct-v1%3A0"
        );
    }

    #[test]
    fn a_region_is_required_and_checked() {
        let config = BedrockConfig {
            region: Some("us-west-2; rm".into()),
            ..BedrockConfig::default()
        };
        assert!(BedrockProvider::new(config).is_err());
    }
}
