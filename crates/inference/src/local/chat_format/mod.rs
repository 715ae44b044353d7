//! Prompt formatting and tool-call parsing for local chat models.
//!
//! A local model sees one string: the conversation laid out in its chat format, special tokens
//! written as their text (the tokenizer turns them back into tokens). [`render`] produces it for the
//! built-in formats — [`PromptFormat::Llama3`] (Meta's header format, with Llama 3.2's pythonic
//! zero-shot tool calling or Llama 3.1's JSON tool calling) and [`PromptFormat::Gemma`] (Gemma 3's
//! turns) — or for a Jinja `tokenizer.chat_template` from the GGUF ([`PromptFormat::Template`]).
//! [`select_format`] picks one from what the GGUF carries. [`parse_tool_calls`] reads the model's
//! answer back into text and [`ToolCall`](corral_core::ToolCall)s; [`stop_strings`] says what ends
//! the model's turn.

mod date;
mod gemma;
mod json;
mod llama3;
mod parse;
mod pythonic;
mod template;

#[cfg(test)]
mod golden_tests;

use std::fmt;

use corral_core::{ContentPart, Message, ToolSpec};

pub use date::Date;
pub use parse::{ParsedOutput, parse_tool_calls};
pub use template::ChatTemplate;

/// How a conversation is laid out for a model.
#[derive(Debug, Clone)]
pub enum PromptFormat {
    /// Meta's Llama 3.x header format (`<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`).
    Llama3,
    /// Gemma 3's turns (`<start_of_turn>user\n…<end_of_turn>\n`, the system prompt folded into the
    /// first user turn).
    Gemma,
    /// The model's own Jinja chat template (GGUF `tokenizer.chat_template`).
    Template(ChatTemplate),
}

/// How Llama 3 is told about tools and how its tool calls are written back into the conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LlamaToolStyle {
    /// Llama 3.2 1B/3B zero-shot tool calling: the functions as JSON in the system prompt, calls as a
    /// pythonic list `[f(a=1), g()]` (written back after `<|python_tag|>`, ending with `<|eot_id|>`).
    #[default]
    Pythonic,
    /// Llama 3.1 JSON tool calling: `Environment: ipython`, the functions in a user message, calls as
    /// `{"name": …, "parameters": …}` after `<|python_tag|>`, ending with `<|eom_id|>`.
    Json,
}

/// Choices that change the rendered text but are not part of the conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Today's date as the model is told it. With [`PromptFormat::Llama3`], `Some` adds Meta's
    /// `Cutting Knowledge Date: December 2023\nToday Date: …` block to the system prompt and `None`
    /// leaves it out. Templates get it through `strftime_now` and `date_string`; `None` means the
    /// system clock there. Set it in tests so the prompt is deterministic.
    pub date: Option<Date>,
    /// Llama 3 tool format (built-in [`PromptFormat::Llama3`] only).
    pub llama_tool_style: LlamaToolStyle,
    /// Passed to templates as `tools_in_user_message` when set (Llama 3.x templates default to true).
    pub tools_in_user_message: Option<bool>,
}

/// Why a prompt could not be rendered or a format chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// A user message has an image; local models here are text-only.
    ImageNotSupported { message_index: usize },
    /// The chat template did not compile.
    TemplateSyntax(String),
    /// The chat template failed while rendering (including its own `raise_exception`).
    TemplateRender(String),
    /// No template and no built-in format for this architecture.
    UnknownArchitecture(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageNotSupported { message_index } => write!(
                f,
                "message {message_index} has an image, but local models take text only"
            ),
            Self::TemplateSyntax(reason) => write!(f, "chat template does not compile: {reason}"),
            Self::TemplateRender(reason) => write!(f, "chat template failed to render: {reason}"),
            Self::UnknownArchitecture(arch) => write!(
                f,
                "no chat template in the model and no built-in chat format for architecture `{arch}`"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

/// The chosen format, and why the model's own template was not used when it was not.
#[derive(Debug, Clone)]
pub struct FormatChoice {
    pub format: PromptFormat,
    /// Set when the GGUF had a template that failed to compile or render; the caller logs it.
    pub fallback_reason: Option<String>,
}

/// The built-in format for a GGUF `general.architecture`, if there is one.
pub fn builtin_format(architecture: &str) -> Option<PromptFormat> {
    match architecture {
        "llama" => Some(PromptFormat::Llama3),
        "gemma" | "gemma2" | "gemma3" | "gemma3_text" => Some(PromptFormat::Gemma),
        _ => None,
    }
}

/// Picks the format for a model: its own chat template when present and it renders a one-message
/// conversation, else the built-in format for its architecture.
pub fn select_format(
    chat_template: Option<&str>,
    bos_token: &str,
    eos_token: &str,
    architecture: &str,
) -> Result<FormatChoice, FormatError> {
    let mut fallback_reason = None;
    if let Some(source) = chat_template {
        let tried = ChatTemplate::new(source, bos_token, eos_token).and_then(|template| {
            let format = PromptFormat::Template(template);
            let probe = [Message::user("Hello")];
            render_with(&format, &probe, &[], true, &RenderOptions::default()).map(|_| format)
        });
        match tried {
            Ok(format) => {
                return Ok(FormatChoice {
                    format,
                    fallback_reason: None,
                });
            }
            Err(error) => fallback_reason = Some(format!("{error}; using the built-in format")),
        }
    }
    match builtin_format(architecture) {
        Some(format) => Ok(FormatChoice {
            format,
            fallback_reason,
        }),
        None => Err(fallback_reason
            .map(FormatError::TemplateSyntax)
            .unwrap_or_else(|| FormatError::UnknownArchitecture(architecture.to_string()))),
    }
}

/// Renders the whole prompt with the default [`RenderOptions`] (no date block, pythonic Llama tools).
pub fn render(
    format: &PromptFormat,
    messages: &[Message],
    tools: &[ToolSpec],
    add_generation_prompt: bool,
) -> Result<String, FormatError> {
    render_with(
        format,
        messages,
        tools,
        add_generation_prompt,
        &RenderOptions::default(),
    )
}

/// Renders the whole prompt: every message, the tool definitions where the format puts them, and,
/// with `add_generation_prompt`, the header that opens the model's turn.
pub fn render_with(
    format: &PromptFormat,
    messages: &[Message],
    tools: &[ToolSpec],
    add_generation_prompt: bool,
    options: &RenderOptions,
) -> Result<String, FormatError> {
    check_text_only(messages)?;
    match format {
        PromptFormat::Llama3 => Ok(llama3::render(
            messages,
            tools,
            add_generation_prompt,
            options,
        )),
        PromptFormat::Gemma => Ok(gemma::render(messages, tools, add_generation_prompt)),
        PromptFormat::Template(template) => {
            template.render(messages, tools, add_generation_prompt, options)
        }
    }
}

/// Texts that end the model's turn; generation stops at the first of them.
pub fn stop_strings(format: &PromptFormat) -> Vec<String> {
    const LLAMA3: &[&str] = &["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"];
    const GEMMA: &[&str] = &["<end_of_turn>", "<eos>"];
    let owned = |list: &[&str]| list.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    match format {
        PromptFormat::Llama3 => owned(LLAMA3),
        PromptFormat::Gemma => owned(GEMMA),
        PromptFormat::Template(template) => {
            let mut stops = Vec::new();
            for (marker, list) in [("<|eot_id|>", LLAMA3), ("<end_of_turn>", GEMMA)] {
                if template.source().contains(marker) {
                    stops.extend(owned(list));
                }
            }
            let eos = template.eos_token();
            if !eos.is_empty() && !stops.iter().any(|s| s == eos) {
                stops.push(eos.to_string());
            }
            stops
        }
    }
}

fn check_text_only(messages: &[Message]) -> Result<(), FormatError> {
    for (message_index, message) in messages.iter().enumerate() {
        if let Message::User { content } = message
            && content
                .iter()
                .any(|part| matches!(part, ContentPart::Image { .. }))
        {
            return Err(FormatError::ImageNotSupported { message_index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_refused_with_the_message_index() {
        let messages = [
            Message::system("s"),
            Message::user_parts(vec![
                ContentPart::text("what is this?"),
                ContentPart::image_url("https://example.com/cat.png"),
            ]),
        ];
        for format in [PromptFormat::Llama3, PromptFormat::Gemma] {
            let error = render(&format, &messages, &[], true).expect_err("fails");
            assert_eq!(error, FormatError::ImageNotSupported { message_index: 1 });
            assert!(error.to_string().contains("message 1"));
        }
    }

    #[test]
    fn selection_prefers_a_working_template_and_falls_back_otherwise() {
        let good =
            "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
        let choice = select_format(Some(good), "<s>", "</s>", "llama").expect("ok");
        assert!(matches!(choice.format, PromptFormat::Template(_)));
        assert!(choice.fallback_reason.is_none());

        let broken = "{% for m in messages %}{{ m.content }";
        let choice = select_format(Some(broken), "<s>", "</s>", "gemma3").expect("ok");
        assert!(matches!(choice.format, PromptFormat::Gemma));
        assert!(
            choice
                .fallback_reason
                .expect("ok")
                .contains("does not compile")
        );

        let raising = "{{ raise_exception('nope') }}";
        let choice = select_format(Some(raising), "<s>", "</s>", "llama").expect("ok");
        assert!(matches!(choice.format, PromptFormat::Llama3));
        assert!(choice.fallback_reason.expect("ok").contains("nope"));

        assert!(matches!(
            select_format(None, "", "", "llama").expect("ok").format,
            PromptFormat::Llama3
        ));
        assert_eq!(
            select_format(None, "", "", "mamba").expect_err("fails"),
            FormatError::UnknownArchitecture("mamba".into())
        );
        assert!(select_format(Some(broken), "", "", "mamba").is_err());
    }

    #[test]
    fn stop_strings_per_format() {
        assert!(stop_strings(&PromptFormat::Llama3).contains(&"<|eom_id|>".to_string()));
        assert_eq!(
            stop_strings(&PromptFormat::Gemma),
            vec!["<end_of_turn>", "<eos>"]
        );
        let template = ChatTemplate::new("{{ '<end_of_turn>' }}", "<bos>", "<eos>").expect("ok");
        assert_eq!(
            stop_strings(&PromptFormat::Template(template)),
            vec!["<end_of_turn>", "<eos>"]
        );
    }
}
