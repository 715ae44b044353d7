//! Chat messages: who says what, including images and tool calls.

use serde::{Deserialize, Serialize};

/// Who a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result (Llama 3 calls this role `ipython`; its chat format maps it).
    Tool,
}

/// One message of a conversation. Each role carries only what that role can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: Vec<ContentPart>,
    },
    Assistant {
        #[serde(default)]
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl Message {
    pub fn system(text: impl Into<String>) -> Self {
        Self::System {
            content: text.into(),
        }
    }

    pub fn user(text: impl Into<String>) -> Self {
        Self::User {
            content: vec![ContentPart::text(text)],
        }
    }

    /// A user message of several parts, e.g. a question and an image.
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        Self::User { content: parts }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self::Assistant {
            content: text.into(),
            tool_calls: Vec::new(),
        }
    }

    pub fn assistant_tool_calls(text: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self::Assistant {
            content: text.into(),
            tool_calls,
        }
    }

    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Self::System { .. } => Role::System,
            Self::User { .. } => Role::User,
            Self::Assistant { .. } => Role::Assistant,
            Self::Tool { .. } => Role::Tool,
        }
    }

    /// The message's text, with the text parts of a multi-part message joined by newlines and images
    /// left out.
    pub fn text(&self) -> String {
        match self {
            Self::System { content }
            | Self::Assistant { content, .. }
            | Self::Tool { content, .. } => content.clone(),
            Self::User { content } => {
                let texts: Vec<&str> = content
                    .iter()
                    .filter_map(|part| match part {
                        ContentPart::Text { text } => Some(text.as_str()),
                        ContentPart::Image { .. } => None,
                    })
                    .collect();
                texts.join("\n")
            }
        }
    }
}

/// One part of a user message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    Image { image: ImageSource },
}

impl ContentPart {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    pub fn image_url(url: impl Into<String>) -> Self {
        Self::Image {
            image: ImageSource::from_url(url.into()),
        }
    }
}

/// Where an image comes from: a URL the provider fetches, or the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    Url {
        url: String,
    },
    /// Base64-encoded bytes with their media type, e.g. `image/png`.
    Base64 {
        media_type: String,
        data: String,
    },
}

impl ImageSource {
    /// Takes a URL as clients send it: a `data:<type>;base64,<data>` URL becomes [`Self::Base64`],
    /// anything else stays a URL.
    pub fn from_url(url: String) -> Self {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((media_type, data)) = rest.split_once(";base64,")
        {
            return Self::Base64 {
                media_type: media_type.to_string(),
                data: data.to_string(),
            };
        }
        Self::Url { url }
    }

    /// The image as a URL, as the OpenAI API takes it (a data URL for inline bytes).
    pub fn to_url(&self) -> String {
        match self {
            Self::Url { url } => url.clone(),
            Self::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// A call the model asks for. `arguments` is the JSON the model produced; when the model's output was
/// not valid JSON, it holds the raw text as a JSON string, so the agent can tell the model what was wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_become_inline_images_and_back() {
        let image = ImageSource::from_url("data:image/png;base64,iVBORw0KGgo=".into());
        assert_eq!(
            image,
            ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            }
        );
        assert_eq!(image.to_url(), "data:image/png;base64,iVBORw0KGgo=");
        let remote = ImageSource::from_url("https://example.com/cat.jpg".into());
        assert!(matches!(remote, ImageSource::Url { .. }));
    }

    #[test]
    fn messages_serialize_with_their_role() {
        let message = Message::user_parts(vec![
            ContentPart::text("What is in this picture?"),
            ContentPart::image_url("https://example.com/cat.jpg"),
        ]);
        let json = serde_json::to_value(&message).expect("serializes");
        assert_eq!(json["role"], "user");
        assert_eq!(json["content"][1]["type"], "image");
        let back: Message = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, message);
        assert_eq!(back.text(), "What is in this picture?");
        assert_eq!(Message::tool_result("call_1", "42").role(), Role::Tool);
    }
}
