//! Golden tests: render the conversations in `tests/golden/chat_format/*.input.json` and compare with
//! the `.expected.txt` beside them, copied from Meta's prompt-format documents or rendered by Python's
//! jinja2 from the model's own template (see that folder's README.md).

use corral_core::{Message, ToolSpec};
use serde::Deserialize;

use super::{ChatTemplate, Date, LlamaToolStyle, PromptFormat, RenderOptions, render_with};

macro_rules! golden {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                "../../../tests/golden/chat_format/",
                $name,
                ".input.json"
            )),
            include_str!(concat!(
                "../../../tests/golden/chat_format/",
                $name,
                ".expected.txt"
            )),
        )
    };
}

const GEMMA3_TEMPLATE: &str =
    include_str!("../../../tests/golden/chat_format/gemma3_chat_template.jinja");
const LLAMA3_2_TEMPLATE: &str =
    include_str!("../../../tests/golden/chat_format/llama3_2_chat_template.jinja");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    format: String,
    messages: Vec<Message>,
    tools: Vec<ToolSpec>,
    add_generation_prompt: bool,
    llama_tool_style: String,
    date: Option<String>,
}

fn parse_date(text: &str) -> Date {
    let parts: Vec<i32> = text
        .split('-')
        .map(|p| p.parse().expect("date part"))
        .collect();
    let [y, m, d] = parts[..] else {
        panic!("date {text} is not YYYY-MM-DD")
    };
    Date::new(
        y,
        u8::try_from(m).expect("month"),
        u8::try_from(d).expect("day"),
    )
    .expect("date")
}

fn render_case(input: &str, format: &PromptFormat) -> String {
    let case: Case = serde_json::from_str(input).expect("golden input parses");
    let options = RenderOptions {
        date: case.date.as_deref().map(parse_date),
        llama_tool_style: match case.llama_tool_style.as_str() {
            "json" => LlamaToolStyle::Json,
            _ => LlamaToolStyle::Pythonic,
        },
        tools_in_user_message: None,
    };
    render_with(
        format,
        &case.messages,
        &case.tools,
        case.add_generation_prompt,
        &options,
    )
    .expect("renders")
}

fn format_of(input: &str) -> PromptFormat {
    let case: Case = serde_json::from_str(input).expect("golden input parses");
    match case.format.as_str() {
        "llama3" => PromptFormat::Llama3,
        "gemma" => PromptFormat::Gemma,
        "template:gemma3_chat_template.jinja" => PromptFormat::Template(
            ChatTemplate::new(GEMMA3_TEMPLATE, "<bos>", "<eos>").expect("compiles"),
        ),
        "template:llama3_2_chat_template.jinja" => PromptFormat::Template(
            ChatTemplate::new(LLAMA3_2_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>")
                .expect("compiles"),
        ),
        other => panic!("unknown format {other}"),
    }
}

#[test]
fn meta_documented_llama_prompts() {
    for (name, input, expected) in [
        golden!("llama3_2_chat"),
        golden!("llama3_1_chat"),
        golden!("llama3_2_zero_shot_tools"),
        golden!("llama3_2_tool_e2e"),
        golden!("llama3_1_json_tools"),
    ] {
        let rendered = render_case(input, &format_of(input));
        assert_eq!(rendered, expected, "golden case {name}");
    }
}

#[test]
fn llama3_2_template_with_tools_matches_jinja2() {
    let (name, input, expected) = golden!("llama3_2_template_tools");
    let rendered = render_case(input, &format_of(input));
    assert_eq!(rendered, expected, "golden case {name}");
}

#[test]
fn gemma3_template_and_builtin_format_agree() {
    let (name, input, expected) = golden!("gemma3_conversation");
    let template = PromptFormat::Template(
        ChatTemplate::new(GEMMA3_TEMPLATE, "<bos>", "<eos>").expect("compiles"),
    );
    assert_eq!(
        render_case(input, &template),
        expected,
        "{name} via template"
    );
    assert_eq!(
        render_case(input, &PromptFormat::Gemma),
        expected,
        "{name} via built-in"
    );
}

#[test]
fn gemma3_template_enforces_alternation() {
    let template = PromptFormat::Template(
        ChatTemplate::new(GEMMA3_TEMPLATE, "<bos>", "<eos>").expect("compiles"),
    );
    let messages = [Message::user("a"), Message::user("b")];
    let error = render_with(&template, &messages, &[], true, &RenderOptions::default())
        .expect_err("roles must alternate");
    assert!(error.to_string().contains("must alternate"), "{error}");
}

#[test]
fn rendered_tool_calls_parse_back() {
    let (_, input, _) = golden!("llama3_2_tool_e2e");
    let case: Case = serde_json::from_str(input).expect("parses");
    let Some(Message::Assistant { tool_calls, .. }) = case.messages.get(1) else {
        panic!("second message is the assistant's call")
    };
    let rendered = render_case(input, &PromptFormat::Llama3);
    let start = rendered.find("<|python_tag|>").expect("call rendered");
    let end = start + rendered[start..].find("<|eot_id|>").expect("turn ends");
    let parsed = super::parse_tool_calls(&rendered[start..end]);
    assert_eq!(parsed.error, None);
    assert_eq!(parsed.tool_calls, *tool_calls);
}
