//! Reading a local model's answer back: text, tool calls, or a malformed attempt at a call.
//!
//! Forms recognised (a trailing end-of-turn token is ignored):
//! - Llama 3.2 pythonic list: `[get_weather(city="Paris"), get_time()]`, optionally after
//!   `<|python_tag|>`;
//! - Llama 3.1 JSON: `{"name": "f", "parameters": {…}}` (or `"arguments"`), optionally after
//!   `<|python_tag|>`, several separated by `;` or newlines; built-in tools as
//!   `<|python_tag|>brave_search.call(query="…")`;
//! - Llama 3.1's custom `<function=name>{…}</function>`;
//! - Gemma: the same JSON, or a fenced ```` ```tool_code ```` block of pythonic calls (Google's
//!   documented function-calling prompt), or a ```` ```json ```` block holding call objects.
//!
//! Text before a `<|python_tag|>` or a fenced block stays content. An answer that starts like a call
//! but does not parse keeps its raw text as content and gets an `error` the agent can feed back.

use corral_core::ToolCall;
use serde_json::{Map, Value};

use super::pythonic::{self, PyCall, SyntaxError};

/// The model's answer split into text and tool calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedOutput {
    /// The text for the user: the whole answer when there are no calls, the text around the calls
    /// otherwise, the raw answer when a call was malformed.
    pub content: String,
    /// Calls in order, with ids `call_0`, `call_1`, ….
    pub tool_calls: Vec<ToolCall>,
    /// Set when the answer attempted a call that did not parse; a message for the model.
    pub error: Option<String>,
}

const PYTHON_TAG: &str = "<|python_tag|>";
const END_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<eos>",
];

/// Splits a model's answer into content and tool calls. Never panics.
pub fn parse_tool_calls(text: &str) -> ParsedOutput {
    let body = strip_end_tokens(text);
    match find_calls(body) {
        Found::None => ParsedOutput {
            content: body.to_string(),
            ..ParsedOutput::default()
        },
        Found::Calls { before, calls } => ParsedOutput {
            content: before.trim_end().to_string(),
            tool_calls: calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| ToolCall {
                    id: format!("call_{i}"),
                    name,
                    arguments,
                })
                .collect(),
            error: None,
        },
        Found::Malformed { offset, message } => ParsedOutput {
            content: body.to_string(),
            tool_calls: Vec::new(),
            error: Some(format!("tool call at byte {offset}: {message}")),
        },
    }
}

enum Found<'a> {
    None,
    Calls {
        before: &'a str,
        calls: Vec<(String, Value)>,
    },
    Malformed {
        offset: usize,
        message: String,
    },
}

fn strip_end_tokens(text: &str) -> &str {
    let mut body = text.trim_end();
    while let Some(token) = END_TOKENS.iter().find(|t| body.ends_with(**t)) {
        body = body[..body.len() - token.len()].trim_end();
    }
    body
}

fn find_calls(body: &str) -> Found<'_> {
    // `<|python_tag|>`: whatever follows is meant as a call.
    if let Some(at) = body.find(PYTHON_TAG) {
        let start = at + PYTHON_TAG.len();
        let after = &body[start..];
        let lead = after.len() - after.trim_start().len();
        return match calls_in(after.trim(), start + lead, true) {
            Found::None => Found::Malformed {
                offset: start + lead,
                message: "expected a JSON object {\"name\": …, \"parameters\": {…}} or a list of calls [f(a=1)] after <|python_tag|>".into(),
            },
            Found::Calls { calls, .. } => Found::Calls {
                before: &body[..at],
                calls,
            },
            malformed => malformed,
        };
    }
    // Fenced blocks: ```tool_code … ``` (Gemma) or ```json … ```.
    for (fence, strict) in [
        ("```tool_code", true),
        ("```tool_call", true),
        ("```json", false),
    ] {
        if let Some(at) = body.find(fence) {
            let start = at + fence.len();
            let inner_end = body[start..].find("```").map_or(body.len(), |i| start + i);
            let inner = &body[start..inner_end];
            let lead = inner.len() - inner.trim_start().len();
            match calls_in(inner.trim(), start + lead, strict) {
                Found::Calls { calls, .. } => {
                    return Found::Calls {
                        before: &body[..at],
                        calls,
                    };
                }
                Found::None if strict => {
                    return Found::Malformed {
                        offset: start + lead,
                        message: "expected calls like [f(a=1)] in the tool_code block".into(),
                    };
                }
                Found::None => {}
                malformed => return malformed,
            }
        }
    }
    // The whole answer as a call.
    let trimmed = body.trim_start();
    calls_in(trimmed.trim_end(), body.len() - trimmed.len(), false)
}

/// Calls filling all of `text` (which starts at byte `base` of the answer). With `committed`, the
/// text is known to be meant as calls, so anything call-like that fails is malformed.
fn calls_in(text: &str, base: usize, committed: bool) -> Found<'static> {
    let malformed = |e: SyntaxError| Found::Malformed {
        offset: base + e.offset,
        message: e.message,
    };
    match text.as_bytes().first() {
        Some(b'[') => {
            if !committed && !looks_like_call_list(text) {
                return Found::None;
            }
            match pythonic::parse_call_list(text) {
                Ok((calls, end)) if text[end..].trim().is_empty() => Found::Calls {
                    before: "",
                    calls: from_py(calls),
                },
                Ok((_, end)) => Found::Malformed {
                    offset: base + end,
                    message: "unexpected text after the list of calls".into(),
                },
                Err(e) => malformed(e),
            }
        }
        Some(b'{') => json_calls(text, base, committed),
        Some(b'<') if text.starts_with("<function=") => function_tags(text, base),
        Some(_) if committed => match pythonic::parse_bare_calls(text) {
            Ok(calls) => Found::Calls {
                before: "",
                calls: from_py(calls),
            },
            Err(e) => malformed(e),
        },
        _ => Found::None,
    }
}

/// `[name(` — a call list rather than prose such as `[1] Smith et al.` or `[see below]`.
fn looks_like_call_list(text: &str) -> bool {
    let rest = text[1..].trim_start();
    let name_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        .count();
    name_len > 0
        && rest.as_bytes().first().is_some_and(|b| !b.is_ascii_digit())
        && rest[name_len..].trim_start().starts_with('(')
        || rest.starts_with(']')
}

fn from_py(calls: Vec<PyCall>) -> Vec<(String, Value)> {
    calls
        .into_iter()
        .map(|c| (c.name, Value::Object(c.arguments)))
        .collect()
}

/// One or more JSON call objects separated by whitespace, `;` or `,`.
fn json_calls(text: &str, base: usize, committed: bool) -> Found<'static> {
    let mut calls = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let skipped = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_whitespace() || c == ';' || c == ',')
                .len();
        pos += skipped;
        if pos >= text.len() {
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let end = pos + stream.byte_offset();
                match as_call(&value) {
                    Ok(Some(call)) => calls.push(call),
                    Ok(None) if calls.is_empty() && !committed => return Found::None,
                    Ok(None) => {
                        return Found::Malformed {
                            offset: base + pos,
                            message: "expected an object with \"name\" and \"parameters\"".into(),
                        };
                    }
                    Err(message) => {
                        return Found::Malformed {
                            offset: base + pos,
                            message,
                        };
                    }
                }
                pos = end;
            }
            Some(Err(error)) => {
                // Plain JSON-looking prose is not a call unless it names one.
                let attempted = committed || !calls.is_empty() || names_a_call(&text[pos..]);
                if !attempted {
                    return Found::None;
                }
                return Found::Malformed {
                    offset: base + pos + json_error_offset(&text[pos..], &error),
                    message: format!("invalid JSON: {error}"),
                };
            }
            None => break,
        }
    }
    if calls.is_empty() {
        Found::None
    } else {
        Found::Calls { before: "", calls }
    }
}

/// `{"name": …` near the start: the model meant a JSON call.
fn names_a_call(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(40)
        .filter(|c| !c.is_whitespace())
        .collect();
    head.starts_with("{\"name\":") || head.starts_with("{\"type\":\"function\"")
}

fn json_error_offset(text: &str, error: &serde_json::Error) -> usize {
    // serde_json reports 1-based line and column (column in bytes).
    let line = error.line().saturating_sub(1);
    let line_start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
    (line_start + error.column().saturating_sub(1)).min(text.len())
}

/// A call object: `{"name": …, "parameters"|"arguments": {…}}`, possibly `{"type": "function",
/// "function": {…}}` or with `"arguments"` as a JSON string. `Ok(None)`: not a call object.
fn as_call(value: &Value) -> Result<Option<(String, Value)>, String> {
    let Value::Object(object) = value else {
        return Ok(None);
    };
    if let Some(inner @ Value::Object(_)) = object.get("function") {
        return as_call(inner);
    }
    let args = object.get("parameters").or_else(|| object.get("arguments"));
    // `{"type": "function", "name": …}` without arguments is a call with none.
    let declared = object.get("type").and_then(Value::as_str) == Some("function");
    let args = match args {
        Some(args) => args,
        None if declared => &Value::Null,
        None => return Ok(None),
    };
    let Some(name) = object.get("name") else {
        return Ok(None);
    };
    let Some(name) = name.as_str().filter(|n| !n.trim().is_empty()) else {
        return Err("\"name\" must be a non-empty string".into());
    };
    let args = match args {
        Value::Object(_) => args.clone(),
        Value::Null => Value::Object(Map::new()),
        Value::String(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => {
                return Err(format!(
                    "the arguments of `{name}` must be a JSON object, got the string {raw:?}"
                ));
            }
        },
        other => {
            return Err(format!(
                "the arguments of `{name}` must be a JSON object, got {other}"
            ));
        }
    };
    Ok(Some((name.to_string(), args)))
}

/// `<function=name>{…}</function>`, possibly several.
fn function_tags(text: &str, base: usize) -> Found<'static> {
    let mut calls = Vec::new();
    let mut pos = 0;
    while let Some(rel) = text[pos..].find("<function=") {
        let name_start = pos + rel + "<function=".len();
        let Some(name_len) = text[name_start..].find('>') else {
            return Found::Malformed {
                offset: base + name_start,
                message: "expected '>' after the function name".into(),
            };
        };
        let name = text[name_start..name_start + name_len].trim().to_string();
        let args_start = name_start + name_len + 1;
        let args_end = text[args_start..]
            .find("</function>")
            .map(|i| args_start + i);
        let raw = &text[args_start..args_end.unwrap_or(text.len())];
        match serde_json::from_str::<Value>(raw.trim()) {
            Ok(args @ Value::Object(_)) => calls.push((name, args)),
            Ok(_) => {
                return Found::Malformed {
                    offset: base + args_start,
                    message: format!("the arguments of `{name}` must be a JSON object"),
                };
            }
            Err(error) => {
                return Found::Malformed {
                    offset: base + args_start,
                    message: format!("invalid JSON arguments for `{name}`: {error}"),
                };
            }
        }
        match args_end {
            Some(end) => pos = end + "</function>".len(),
            None => break,
        }
    }
    Found::Calls { before: "", calls }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calls(text: &str) -> Vec<(String, Value)> {
        let out = parse_tool_calls(text);
        assert_eq!(out.error, None, "{text}");
        out.tool_calls
            .into_iter()
            .map(|c| (c.name, c.arguments))
            .collect()
    }

    #[test]
    fn pythonic_list_from_meta_docs() {
        let out = parse_tool_calls(
            "[get_weather(city='San Francisco', metric='celsius'), get_weather(city='Seattle', metric='celsius')]<|eot_id|>",
        );
        assert_eq!(out.content, "");
        assert_eq!(out.error, None);
        assert_eq!(out.tool_calls.len(), 2);
        assert_eq!(out.tool_calls[0].id, "call_0");
        assert_eq!(out.tool_calls[1].id, "call_1");
        assert_eq!(out.tool_calls[1].name, "get_weather");
        assert_eq!(
            out.tool_calls[1].arguments,
            json!({"city": "Seattle", "metric": "celsius"})
        );
        assert_eq!(
            calls("<|python_tag|>[get_user_info(user_id=7890, special='black')]"),
            vec![(
                "get_user_info".into(),
                json!({"user_id": 7890, "special": "black"})
            )]
        );
        assert_eq!(calls("[ping()]"), vec![("ping".into(), json!({}))]);
    }

    #[test]
    fn nested_arguments() {
        assert_eq!(
            calls(
                r#"[search(q="a, (b)] c", filters={"year": [2023, 2024], "open": True}, limit=None)]"#
            ),
            vec![(
                "search".into(),
                json!({"q": "a, (b)] c", "filters": {"year": [2023, 2024], "open": true}, "limit": null})
            )]
        );
    }

    #[test]
    fn json_calls_llama31() {
        let text = "<|python_tag|>{\n    \"type\": \"function\",\n    \"name\": \"trending_songs\",\n    \"parameters\": {\n        \"n\": \"10\",\n        \"genre\": \"all\"\n    }\n}<|eom_id|>";
        assert_eq!(
            calls(text),
            vec![("trending_songs".into(), json!({"n": "10", "genre": "all"}))]
        );
        assert_eq!(
            calls(
                r#"{"name": "a", "parameters": {"x": 1}}; {"name": "b", "arguments": "{\"y\": 2}"}"#
            ),
            vec![("a".into(), json!({"x": 1})), ("b".into(), json!({"y": 2}))]
        );
        assert_eq!(
            calls(
                "{\"name\": \"a\", \"arguments\": {}}\n{\"type\": \"function\", \"function\": {\"name\": \"b\", \"parameters\": {}}}"
            ),
            vec![("a".into(), json!({})), ("b".into(), json!({}))]
        );
        assert_eq!(
            calls(r#"{"type": "function", "name": "z"}"#),
            vec![("z".into(), json!({}))]
        );
        let out =
            parse_tool_calls("Let me look.<|python_tag|>{\"name\": \"f\", \"parameters\": {}}");
        assert_eq!(out.content, "Let me look.");
        assert_eq!(out.tool_calls.len(), 1);
    }

    #[test]
    fn builtin_and_function_tag_forms() {
        assert_eq!(
            calls("<|python_tag|>brave_search.call(query=\"latest price of 1oz gold\")<|eom_id|>"),
            vec![(
                "brave_search".into(),
                json!({"query": "latest price of 1oz gold"})
            )]
        );
        assert_eq!(
            calls("<function=trending_songs>{\"n\": 10}</function><|eot_id|>"),
            vec![("trending_songs".into(), json!({"n": 10}))]
        );
    }

    #[test]
    fn gemma_forms() {
        let out = parse_tool_calls(
            "I'll check the weather.\n```tool_code\n[get_weather(city=\"London\")]\n```<end_of_turn>",
        );
        assert_eq!(out.content, "I'll check the weather.");
        assert_eq!(out.tool_calls[0].arguments, json!({"city": "London"}));
        assert_eq!(
            calls("```tool_code\nprint(get_weather(city=\"Paris\"))\n```"),
            vec![("get_weather".into(), json!({"city": "Paris"}))]
        );
        assert_eq!(
            calls("```json\n{\"name\": \"f\", \"parameters\": {\"a\": [1]}}\n```"),
            vec![("f".into(), json!({"a": [1]}))]
        );
        // A JSON answer that is not a call stays text.
        let out = parse_tool_calls("```json\n{\"city\": \"Paris\"}\n```");
        assert!(out.tool_calls.is_empty() && out.error.is_none());
    }

    #[test]
    fn prose_with_brackets_stays_content() {
        for text in [
            "The answer is 42.",
            "[1] Smith et al. found that f(x) = 2x.",
            "[see below] and (maybe) more",
            "[Note: use f(x) carefully]",
            "{\"city\": \"Paris\", \"temp\": 21}",
            "{not json at all}",
            "",
            "   ",
            "Arrays look like [1, 2, 3].",
        ] {
            let out = parse_tool_calls(text);
            assert!(out.tool_calls.is_empty(), "{text}");
            assert_eq!(out.error, None, "{text}");
            assert_eq!(out.content, text.trim_end(), "{text}");
        }
        assert_eq!(parse_tool_calls("Hello!<|eot_id|>").content, "Hello!");
    }

    #[test]
    fn malformed_calls_give_an_error_and_keep_the_text() {
        for (text, expected) in [
            ("[get_weather(city='Paris'", "byte 25: expected ',' or ')'"),
            (
                "[get_weather(city=Paris)]",
                "byte 18: expected a literal value, found the name `Paris`",
            ),
            ("[f(a=1)] trailing", "byte 8: unexpected text after"),
            (
                "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": }",
                "byte 48: invalid JSON",
            ),
            (
                "{\"name\": \"f\", \"parameters\": [1]}",
                "must be a JSON object",
            ),
            (
                "{\"name\": \"f\", \"parameters\": {}}; {\"oops\": 1}",
                "expected an object with \"name\"",
            ),
            ("<|python_tag|>just words", "byte 19"),
            ("<|python_tag|>", "after <|python_tag|>"),
            ("```tool_code\nnot a call\n```", "tool call at byte"),
            (
                "<function=f>{\"a\": 1</function>",
                "invalid JSON arguments for `f`",
            ),
        ] {
            let out = parse_tool_calls(text);
            assert!(out.tool_calls.is_empty(), "{text}");
            assert_eq!(out.content, text, "{text}");
            let error = out.error.unwrap_or_default();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        const PIECES: &[&str] = &[
            "[",
            "]",
            "(",
            ")",
            "{",
            "}",
            "\"",
            "'",
            "\\",
            ",",
            "=",
            ":",
            ";",
            "f",
            "name",
            "a",
            "1",
            "-",
            ".",
            "e",
            "True",
            "None",
            " ",
            "\n",
            "é",
            "😀",
            "<|python_tag|>",
            "```tool_code",
            "```",
            "<function=",
            "</function>",
            "\"name\"",
            "\"parameters\"",
            "\\u",
            "\\x",
            "\\ud83d",
            "print",
            "<|eot_id|>",
        ];
        let mut seed: u64 = 0x5eed_1234_abcd_ef01;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            let out = parse_tool_calls(&text);
            if out.error.is_some() {
                assert!(out.tool_calls.is_empty());
            }
            for (i, call) in out.tool_calls.iter().enumerate() {
                assert_eq!(call.id, format!("call_{i}"));
            }
        }
    }
}
