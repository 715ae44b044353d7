//! What an MCP tool result becomes: the text the model reads and the extras the caller keeps.
//!
//! Text parts are joined with newlines. A model cannot read base64, so an image, a piece of
//! audio, an embedded resource or a resource link becomes one bracketed line saying what it is
//! (MIME type, size, URI), and the part itself, as the server sent it, goes into
//! `metadata["attachments"]` for the caller. An embedded *text* resource is text, so its text
//! follows its line. `structuredContent` goes into `metadata["structured_content"]`, and into the
//! text as JSON when the result has no text part of its own.

use corral_core::ToolOutput;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

/// A successful result, for the model and the caller.
pub(super) fn tool_output(result: CallToolResult) -> ToolOutput {
    let rendered = render(&result.content);
    let mut content = rendered.lines.join("\n");
    let mut metadata = serde_json::Map::new();
    if let Some(structured) = result.structured_content {
        if rendered.text_parts == 0 {
            let json = serde_json::to_string(&structured).unwrap_or_default();
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(&json);
        }
        metadata.insert("structured_content".into(), structured);
    }
    if !rendered.attachments.is_empty() {
        metadata.insert("attachments".into(), Value::Array(rendered.attachments));
    }
    ToolOutput { content, metadata }
}

/// The message of a result the server marked `isError`: its text, or a description of what it
/// holds when it has no text.
pub(super) fn error_message(result: &CallToolResult) -> String {
    let rendered = render(&result.content);
    let message = rendered.lines.join("\n");
    if !message.trim().is_empty() {
        return message;
    }
    match &result.structured_content {
        Some(structured) => serde_json::to_string(structured).unwrap_or_default(),
        None => "the tool reported an error without saying what went wrong".into(),
    }
}

struct Rendered {
    lines: Vec<String>,
    text_parts: usize,
    attachments: Vec<Value>,
}

fn render(blocks: &[ContentBlock]) -> Rendered {
    let mut rendered = Rendered {
        lines: Vec::with_capacity(blocks.len()),
        text_parts: 0,
        attachments: Vec::new(),
    };
    for block in blocks {
        let line = match block {
            ContentBlock::Text(text) => {
                rendered.text_parts += 1;
                rendered.lines.push(text.text.clone());
                continue;
            }
            ContentBlock::Image(image) => format!(
                "[image: {}, {}]",
                image.mime_type,
                size(base64_len(&image.data))
            ),
            ContentBlock::Audio(audio) => format!(
                "[audio: {}, {}]",
                audio.mime_type,
                size(base64_len(&audio.data))
            ),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents {
                    uri,
                    mime_type,
                    text,
                    ..
                } => {
                    let line = format!(
                        "[resource {uri}: {}, {}]\n{text}",
                        mime_type.as_deref().unwrap_or("text"),
                        size(text.len() as u64)
                    );
                    rendered
                        .attachments
                        .extend(serde_json::to_value(block).ok());
                    rendered.lines.push(line);
                    continue;
                }
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => format!(
                    "[resource {uri}: {}, {}]",
                    mime_type.as_deref().unwrap_or("binary"),
                    size(base64_len(blob))
                ),
                _ => "[a resource of a kind this client does not show; see the attachments]"
                    .to_string(),
            },
            ContentBlock::ResourceLink(link) => {
                let mut line = format!("[resource link {}: {}", link.uri, link.name);
                if let Some(description) = &link.description {
                    line.push_str(&format!(" ({description})"));
                }
                if let Some(mime_type) = &link.mime_type {
                    line.push_str(&format!(", {mime_type}"));
                }
                if let Some(bytes) = link.size {
                    line.push_str(&format!(", {}", size(bytes)));
                }
                line.push(']');
                line
            }
            // A kind of content from a newer protocol version than rmcp's.
            _ => "[content of a kind this client does not show; see the attachments]".to_string(),
        };
        rendered
            .attachments
            .extend(serde_json::to_value(block).ok());
        rendered.lines.push(line);
    }
    rendered
}

/// The decoded length of base64 text, without decoding it.
fn base64_len(data: &str) -> u64 {
    let significant = data
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .count() as u64;
    significant * 3 / 4
}

fn size(bytes: u64) -> String {
    if bytes == 1 {
        "1 byte".into()
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(value: Value) -> CallToolResult {
        serde_json::from_value(value).expect("a CallToolResult")
    }

    #[test]
    fn text_parts_are_joined() {
        let out = tool_output(result(json!({"content": [
            {"type": "text", "text": "one"},
            {"type": "text", "text": "two"}
        ]})));
        assert_eq!(out.content, "one\ntwo");
        assert!(out.metadata.is_empty());
    }

    #[test]
    fn binary_parts_are_described_and_kept_for_the_caller() {
        let out = tool_output(result(json!({"content": [
            {"type": "text", "text": "Here:"},
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
            {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
            {"type": "resource", "resource": {"uri": "demo://t/1", "mimeType": "text/plain", "text": "hi"}},
            {"type": "resource", "resource": {"uri": "demo://b/1", "blob": "AAE="}},
            {"type": "resource_link", "uri": "demo://r/2", "name": "Doc 2", "mimeType": "text/plain", "size": 10}
        ]})));
        assert_eq!(
            out.content,
            "Here:\n[image: image/png, 5 bytes]\n[audio: audio/wav, 3 bytes]\n\
             [resource demo://t/1: text/plain, 2 bytes]\nhi\n[resource demo://b/1: binary, 2 bytes]\n\
             [resource link demo://r/2: Doc 2, text/plain, 10 bytes]"
        );
        let attachments = out.metadata["attachments"].as_array().expect("array");
        assert_eq!(attachments.len(), 5);
        assert_eq!(attachments[0]["data"], "aGVsbG8=");
        assert_eq!(attachments[0]["type"], "image");
    }

    #[test]
    fn structured_content_goes_to_metadata_and_to_the_text_when_there_is_none() {
        let with_text = tool_output(result(json!({
            "content": [{"type": "text", "text": "{\"t\":1}"}],
            "structuredContent": {"t": 1}
        })));
        assert_eq!(with_text.content, "{\"t\":1}");
        assert_eq!(with_text.metadata["structured_content"], json!({"t": 1}));
        let without = tool_output(result(
            json!({"content": [], "structuredContent": {"t": 1}}),
        ));
        assert_eq!(without.content, "{\"t\":1}");
    }

    #[test]
    fn an_error_result_says_what_it_holds() {
        let text = result(json!({"content": [{"type": "text", "text": "boom"}], "isError": true}));
        assert_eq!(error_message(&text), "boom");
        let empty = result(json!({"content": [], "isError": true}));
        assert!(error_message(&empty).contains("without saying"));
    }
}
