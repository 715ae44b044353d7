//! Gemma 3's chat format, as its `tokenizer.chat_template` lays it out: `<bos>`, then
//! `<start_of_turn>{user|model}\n{content, trimmed}<end_of_turn>\n` per message, the system prompt
//! (plus a blank line) at the start of the first turn.
//!
//! Gemma 3 has no tool role or tool tokens. Tools follow Google's documented prompt-based function
//! calling: the functions are described in the first user turn, the model answers with a
//! ```` ```tool_code ```` block of calls, and results go back in a user turn as a
//! ```` ```tool_output ```` block. Consecutive turns of the same side are merged, since the format
//! requires strict user/model alternation.

use corral_core::{Message, ToolSpec};
use serde_json::{Value, json};

use super::json::{KeyOrder, dumps};
use super::pythonic::call_to_python;

const TOOL_INSTRUCTIONS: &str = "You can call the functions listed below. To call functions, answer with only a tool_code block listing the calls, like this:
```tool_code
[func_name1(param_name1=value1, param_name2=value2), func_name2(param=value)]
```
Each call's result comes back in a tool_output block. If no function fits the request, answer normally.

Here is a list of functions in JSON format that you can invoke.

";

#[derive(PartialEq, Eq, Clone, Copy)]
enum Side {
    User,
    Model,
}

pub(crate) fn render(
    messages: &[Message],
    tools: &[ToolSpec],
    add_generation_prompt: bool,
) -> String {
    let (system, rest) = match messages.split_first() {
        Some((Message::System { content }, rest)) => (Some(content.as_str()), rest),
        _ => (None, messages),
    };
    let mut prefix_parts: Vec<String> = system.map(str::to_string).into_iter().collect();
    if !tools.is_empty() {
        prefix_parts.push(format!("{TOOL_INSTRUCTIONS}{}", function_list(tools)));
    }
    let prefix = if prefix_parts.is_empty() {
        String::new()
    } else {
        format!("{}\n\n", prefix_parts.join("\n\n"))
    };

    let mut turns: Vec<(Side, String)> = Vec::new();
    for message in rest {
        let (side, text) = match message {
            Message::System { content } => (Side::User, content.trim().to_string()),
            Message::User { .. } => (Side::User, message.text().trim().to_string()),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut text = content.trim().to_string();
                if !tool_calls.is_empty() {
                    let calls: Vec<String> = tool_calls
                        .iter()
                        .map(|c| call_to_python(&c.name, &c.arguments))
                        .collect();
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&format!("```tool_code\n[{}]\n```", calls.join(", ")));
                }
                (Side::Model, text)
            }
            Message::Tool { content, .. } => (
                Side::User,
                format!("```tool_output\n{}\n```", content.trim()),
            ),
        };
        match turns.last_mut() {
            Some((last, existing)) if *last == side => {
                existing.push_str("\n\n");
                existing.push_str(&text);
            }
            _ => turns.push((side, text)),
        }
    }
    if turns.is_empty() && !prefix.is_empty() {
        turns.push((Side::User, String::new()));
    }

    let mut out = String::from("<bos>");
    for (i, (side, text)) in turns.iter().enumerate() {
        out.push_str("<start_of_turn>");
        out.push_str(match side {
            Side::User => "user",
            Side::Model => "model",
        });
        out.push('\n');
        if i == 0 {
            out.push_str(&prefix);
        }
        out.push_str(text);
        out.push_str("<end_of_turn>\n");
    }
    if add_generation_prompt {
        out.push_str("<start_of_turn>model\n");
    }
    out
}

fn function_list(tools: &[ToolSpec]) -> String {
    let list: Vec<Value> = tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    dumps(&Value::Array(list), Some(4), KeyOrder::Schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::ToolCall;

    #[test]
    fn tools_calls_and_results() {
        let tools = [ToolSpec {
            name: "get_weather".into(),
            description: "Weather for a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }];
        let messages = [
            Message::user("Weather in Paris?"),
            Message::assistant_tool_calls(
                "",
                vec![ToolCall {
                    id: "call_0".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"}),
                }],
            ),
            Message::tool_result("call_0", "21 C"),
        ];
        let text = render(&messages, &tools, true);
        assert!(text.starts_with("<bos><start_of_turn>user\nYou can call the functions"));
        assert!(text.contains("\"name\": \"get_weather\""));
        assert!(text.ends_with("Weather in Paris?<end_of_turn>\n<start_of_turn>model\n```tool_code\n[get_weather(city=\"Paris\")]\n```<end_of_turn>\n<start_of_turn>user\n```tool_output\n21 C\n```<end_of_turn>\n<start_of_turn>model\n"), "{text}");
        let parsed =
            super::super::parse_tool_calls("```tool_code\n[get_weather(city=\"Paris\")]\n```");
        assert_eq!(parsed.tool_calls[0].arguments, json!({"city": "Paris"}));
    }
}
