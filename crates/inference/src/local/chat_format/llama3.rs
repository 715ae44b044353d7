//! Meta's Llama 3.x prompt format, as `llama-models` documents it (`llama3_1/prompt_format.md`,
//! `llama3_2/text_prompt_format.md`).

use corral_core::{Message, ToolCall, ToolSpec};
use serde_json::{Value, json};

use super::json::{KeyOrder, dumps, quote};
use super::pythonic::call_to_python;
use super::{LlamaToolStyle, RenderOptions};

const BEGIN: &str = "<|begin_of_text|>";
const EOT: &str = "<|eot_id|>";
const EOM: &str = "<|eom_id|>";
const PYTHON_TAG: &str = "<|python_tag|>";

/// Llama 3.2 1B/3B zero-shot function calling: the system prompt of `text_prompt_format.md`,
/// followed by the functions as a JSON list.
const PYTHONIC_INSTRUCTIONS: &str = "You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you will need to make one or more function/tool calls to achieve the purpose.
If none of the function can be used, point it out. If the given question lacks the parameters required by the function,
also point it out. You should only return the function call in tools call sections.

If you decide to invoke any of the function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]
You SHOULD NOT include any other text in the response.

Here is a list of functions in JSON format that you can invoke.

";

/// Llama 3.1 JSON tool calling: the user message of `prompt_format.md` ("JSON based tool calling").
const JSON_INSTRUCTIONS: &str =
    "Answer the user's question by making use of the following functions if needed.
If none of the function can be used, please say so.
Here is a list of functions in JSON format:
";
const JSON_CLOSING: &str = "\n\nReturn function calls in JSON format.";

pub(crate) fn render(
    messages: &[Message],
    tools: &[ToolSpec],
    add_generation_prompt: bool,
    options: &RenderOptions,
) -> String {
    let (system, rest) = match messages.split_first() {
        Some((Message::System { content }, rest)) => (Some(content.as_str()), rest),
        _ => (None, messages),
    };
    let style = options.llama_tool_style;
    let mut out = String::from(BEGIN);
    if let Some(system) = system_prompt(system, tools, options) {
        turn(&mut out, "system", &system, EOT);
    }
    if !tools.is_empty() && style == LlamaToolStyle::Json {
        turn(&mut out, "user", &json_tool_message(tools), EOT);
    }
    for message in rest {
        match message {
            Message::System { content } => turn(&mut out, "system", content, EOT),
            Message::User { .. } => turn(&mut out, "user", &message.text(), EOT),
            Message::Assistant {
                content,
                tool_calls,
            } if tool_calls.is_empty() => turn(&mut out, "assistant", content, EOT),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let (calls, end) = match style {
                    LlamaToolStyle::Pythonic => (pythonic_calls(tool_calls), EOT),
                    LlamaToolStyle::Json => (json_calls(tool_calls), EOM),
                };
                turn(
                    &mut out,
                    "assistant",
                    &format!("{content}{PYTHON_TAG}{calls}"),
                    end,
                );
            }
            Message::Tool { content, .. } => turn(&mut out, "ipython", content, EOT),
        }
    }
    if add_generation_prompt {
        header(&mut out, "assistant");
    }
    out
}

fn header(out: &mut String, role: &str) {
    out.push_str("<|start_header_id|>");
    out.push_str(role);
    out.push_str("<|end_header_id|>\n\n");
}

fn turn(out: &mut String, role: &str, content: &str, end: &str) {
    header(out, role);
    out.push_str(content);
    out.push_str(end);
}

/// The system turn's text, or `None` when there is nothing to say.
///
/// Without tools or date it is the caller's system message as written. Otherwise it is built from
/// blocks that each end in a newline, joined by a blank line, as in Meta's examples:
/// `Environment: ipython` (JSON tool style), the knowledge/today dates, then the system message.
/// Pythonic tools put the function list after the caller's system message.
fn system_prompt(
    system: Option<&str>,
    tools: &[ToolSpec],
    options: &RenderOptions,
) -> Option<String> {
    let date_block = options.date.map(|date| {
        format!(
            "Cutting Knowledge Date: December 2023\nToday Date: {}\n",
            date.strftime("%d %B %Y")
        )
    });
    let mut blocks: Vec<String> = Vec::new();
    match (tools.is_empty(), options.llama_tool_style) {
        (false, LlamaToolStyle::Pythonic) => {
            blocks.extend(date_block);
            let mut body = String::new();
            if let Some(system) = system.filter(|s| !s.is_empty()) {
                body.push_str(system);
                body.push_str("\n\n");
            }
            body.push_str(PYTHONIC_INSTRUCTIONS);
            body.push_str(&function_list(tools));
            blocks.push(body);
            return Some(blocks.join("\n"));
        }
        (false, LlamaToolStyle::Json) => blocks.push("Environment: ipython\n".into()),
        (true, _) => {}
    }
    blocks.extend(date_block);
    if blocks.is_empty() {
        return system.map(str::to_string);
    }
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        blocks.push(format!("{system}\n"));
    }
    Some(blocks.join("\n"))
}

/// `[{"name": …, "description": …, "parameters": {…}}, …]`, indented by four spaces.
fn function_list(tools: &[ToolSpec]) -> String {
    let list: Vec<Value> = tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    dumps(&Value::Array(list), Some(4), KeyOrder::Schema)
}

/// The user message that carries the functions in Llama 3.1's JSON tool format. Each function is
/// written in the shape of Meta's example: `properties` as a list of one-entry objects (required
/// parameters first), `required` on one line.
fn json_tool_message(tools: &[ToolSpec]) -> String {
    let defs: Vec<String> = tools.iter().map(json_tool_definition).collect();
    format!("{JSON_INSTRUCTIONS}{}{JSON_CLOSING}", defs.join("\n"))
}

fn json_tool_definition(tool: &ToolSpec) -> String {
    let schema = &tool.parameters;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<(&String, &Value)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    names.sort_by_key(|(name, _)| {
        required
            .iter()
            .position(|r| r == name)
            .unwrap_or(usize::MAX)
    });
    let pad = |n: usize| " ".repeat(4 * n);
    let properties = if names.is_empty() {
        "[]".to_string()
    } else {
        let entries: Vec<String> = names
            .iter()
            .map(|(name, prop)| {
                let prop =
                    dumps(prop, Some(4), KeyOrder::Schema).replace('\n', &format!("\n{}", pad(5)));
                format!(
                    "{}{{\n{}{}: {prop}\n{}}}",
                    pad(4),
                    pad(5),
                    quote(name),
                    pad(4)
                )
            })
            .collect();
        format!("[\n{}\n{}]", entries.join(",\n"), pad(3))
    };
    let required = dumps(&json!(required), None, KeyOrder::Map);
    let object_type = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object");
    format!(
        "{{\n{p1}\"type\": \"function\",\n{p1}\"function\": {{\n{p2}\"name\": {name},\n{p2}\"description\": {desc},\n{p2}\"parameters\": {{\n{p3}\"type\": {ty},\n{p3}\"properties\": {properties},\n{p3}\"required\": {required}\n{p2}}}\n{p1}}}\n}}",
        p1 = pad(1),
        p2 = pad(2),
        p3 = pad(3),
        name = quote(&tool.name),
        desc = quote(&tool.description),
        ty = quote(object_type),
    )
}

/// `[f(a="x"), g()]`, as the model writes pythonic calls.
fn pythonic_calls(calls: &[ToolCall]) -> String {
    let calls: Vec<String> = calls
        .iter()
        .map(|c| call_to_python(&c.name, &c.arguments))
        .collect();
    format!("[{}]", calls.join(", "))
}

/// `{"name": "f", "parameters": {…}}`, several separated by `; `.
fn json_calls(calls: &[ToolCall]) -> String {
    let calls: Vec<String> = calls
        .iter()
        .map(|c| {
            format!(
                "{{\"name\": {}, \"parameters\": {}}}",
                quote(&c.name),
                dumps(&c.arguments, None, KeyOrder::Map)
            )
        })
        .collect();
    calls.join("; ")
}

#[cfg(test)]
mod tests {
    use super::super::{Date, PromptFormat, render_with};
    use super::*;

    #[test]
    fn date_block_and_system_without_tools() {
        let options = RenderOptions {
            date: Date::new(2024, 9, 24),
            ..RenderOptions::default()
        };
        let text = render_with(
            &PromptFormat::Llama3,
            &[Message::system("Be brief."), Message::user("Hi")],
            &[],
            false,
            &options,
        )
        .expect("renders");
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 24 September 2024\n\nBe brief.\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        );
    }

    #[test]
    fn no_system_turn_without_system_message() {
        let text = render_with(
            &PromptFormat::Llama3,
            &[Message::user("Hi")],
            &[],
            true,
            &RenderOptions::default(),
        )
        .expect("renders");
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }
}
