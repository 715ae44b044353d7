//! What the text shields judge, and how their settings are read.

use corral_core::{Message, ShieldError};
use serde::de::DeserializeOwned;

/// The text of the message a shield judges: the last one.
pub(crate) fn judged(messages: &[Message]) -> Result<String, ShieldError> {
    messages
        .last()
        .map(Message::text)
        .ok_or_else(|| ShieldError::InvalidRequest("there are no messages to check".into()))
}

/// A shield's `params`, with the path of a bad field in the error.
pub(crate) fn params<T: DeserializeOwned>(
    shield: &str,
    kind: &str,
    params: &serde_json::Value,
) -> Result<T, ShieldError> {
    let value = if params.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        params.clone()
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        ShieldError::InvalidRequest(format!(
            "shield `{shield}` ({kind}): bad params{at}: {}",
            e.inner()
        ))
    })
}

/// A chat model's failure, as the shield that asked it reports it: an outage stays an outage (so
/// callers may retry), a timeout a timeout.
pub(crate) fn model_failed(model: &str, error: corral_core::ChatError) -> ShieldError {
    use corral_core::ChatError;
    match error {
        ChatError::Provider(e) => ShieldError::Provider(e),
        ChatError::StreamInterrupted { source, .. } => ShieldError::Provider(source),
        ChatError::Timeout(after) => ShieldError::Timeout(after),
        other => ShieldError::InvalidRequest(format!("model `{model}` failed: {other}")),
    }
}
