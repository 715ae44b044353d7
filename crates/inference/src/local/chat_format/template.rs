//! A model's own Jinja chat template (`tokenizer.chat_template`), rendered with minijinja the way
//! Hugging Face `transformers` renders it (minijinja 2.x): `trim_blocks` and `lstrip_blocks` on, Python string
//! methods (`.strip()`, `.startswith()`, …) available, `tojson` writing JSON as Python's `json.dumps`
//! does, and the variables `messages`, `tools`, `add_generation_prompt`, `bos_token`, `eos_token`,
//! `raise_exception`, `strftime_now`, `date_string` (and `tools_in_user_message` when set).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use corral_core::{Message, ToolSpec};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::{Map, Value as Json, json};

use super::json::{KeyOrder, dumps};
use super::{Date, FormatError, RenderOptions};

const NAME: &str = "chat_template";
const MAX_DEPTH: usize = 64;

/// A compiled chat template with the model's BOS and EOS token texts.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    source: Arc<str>,
    bos_token: String,
    eos_token: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles the template; a syntax error is [`FormatError::TemplateSyntax`].
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, FormatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| FormatError::TemplateSyntax(describe(&e)))?;
        Ok(Self {
            env: Arc::new(env),
            source: Arc::from(source),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    pub(crate) fn render(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        add_generation_prompt: bool,
        options: &RenderOptions,
    ) -> Result<String, FormatError> {
        let date = options.date.unwrap_or_else(Date::today);
        let messages: Vec<Value> = openai_messages(messages).iter().map(to_value).collect();
        let mut context: BTreeMap<&str, Value> = BTreeMap::from([
            ("messages", Value::from_iter(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
            ("date_string", Value::from(date.strftime("%d %b %Y"))),
            (
                "strftime_now",
                Value::from_function(move |format: &str| date.strftime(format)),
            ),
        ]);
        if !tools.is_empty() {
            let tools: Vec<Value> = tools
                .iter()
                .map(|t| {
                    to_value(&json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}}))
                })
                .collect();
            context.insert("tools", Value::from_iter(tools));
        }
        if let Some(yes) = options.tools_in_user_message {
            context.insert("tools_in_user_message", Value::from(yes));
        }
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| FormatError::TemplateSyntax(describe(&e)))?;
        template
            .render(Value::from(context))
            .map_err(|e| FormatError::TemplateRender(describe(&e)))
    }
}

/// The error and its causes on one line (minijinja puts the template's own message in the detail).
fn describe(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Hugging Face's `tojson`: `json.dumps(value, ensure_ascii=False, indent=indent)`, not HTML-escaped.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let json = to_json(value, 0)?;
    Ok(Value::from_safe_string(dumps(&json, indent, KeyOrder::Map)))
}

fn to_json(value: &Value, depth: usize) -> Result<Json, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    Ok(match value.kind() {
        ValueKind::Undefined | ValueKind::None => Json::Null,
        ValueKind::Bool => Json::Bool(value.is_true()),
        ValueKind::Number => match value.as_i64() {
            Some(i) if value.is_integer() => Json::from(i),
            _ => f64::try_from(value.clone())
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Json::Null, Json::Number),
        },
        ValueKind::String => Json::String(value.as_str().unwrap_or_default().to_string()),
        ValueKind::Map => {
            let mut map = Map::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                let key = key.as_str().map_or_else(|| key.to_string(), str::to_string);
                map.insert(key, to_json(&item, depth + 1)?);
            }
            Json::Object(map)
        }
        ValueKind::Seq | ValueKind::Iterable => Json::Array(
            value
                .try_iter()?
                .map(|item| to_json(&item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        _ => Json::String(value.to_string()),
    })
}

fn to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (None, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(()),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from_iter(items.iter().map(to_value)),
        Json::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}

/// The conversation as the OpenAI-style dicts templates expect. Assistant tool calls are
/// `{"id", "type": "function", "function": {"name", "arguments": {…}}}` (arguments as an object, as
/// `transformers` passes them); a tool result carries the called tool's `name` when it can be found.
fn openai_messages(messages: &[Message]) -> Vec<Json> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        let dict = match message {
            Message::System { content } => json!({"role": "system", "content": content}),
            Message::User { .. } => json!({"role": "user", "content": message.text()}),
            Message::Assistant {
                content,
                tool_calls,
            } if tool_calls.is_empty() => json!({"role": "assistant", "content": content}),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let calls: Vec<Json> = tool_calls
                    .iter()
                    .map(|c| {
                        names.insert(c.id.as_str(), c.name.as_str());
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
                json!({"role": "assistant", "content": content, "tool_calls": calls})
            }
            Message::Tool {
                tool_call_id,
                content,
            } => {
                let mut dict =
                    json!({"role": "tool", "tool_call_id": tool_call_id, "content": content});
                if let (Some(name), Json::Object(map)) =
                    (names.get(tool_call_id.as_str()), &mut dict)
                {
                    map.insert("name".into(), Json::from(*name));
                }
                dict
            }
        };
        out.push(dict);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{PromptFormat, render_with};
    use super::*;

    fn render(source: &str, messages: &[Message]) -> Result<String, FormatError> {
        let template = ChatTemplate::new(source, "<s>", "</s>")?;
        render_with(
            &PromptFormat::Template(template),
            messages,
            &[],
            false,
            &RenderOptions {
                date: Date::new(2024, 7, 26),
                ..RenderOptions::default()
            },
        )
    }

    #[test]
    fn python_methods_tojson_and_dates() {
        let source = "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}|{{ m | tojson }}{% endfor %}|{{ strftime_now('%d %b %Y') }}|{{ date_string }}";
        let text = render(source, &[Message::user("  <hi> é ")]).expect("renders");
        assert_eq!(
            text,
            r#"<s><HI> É|{"content": "  <hi> é ", "role": "user"}|26 Jul 2024|26 Jul 2024"#
        );
    }

    #[test]
    fn raise_exception_becomes_an_error() {
        let error = render(
            "{% if messages[0].role != 'system' %}{{ raise_exception('need a system message') }}{% endif %}",
            &[Message::user("x")],
        )
        .expect_err("raises");
        assert!(matches!(error, FormatError::TemplateRender(_)));
        assert!(
            error.to_string().contains("need a system message"),
            "{error}"
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        let error = ChatTemplate::new("{% for %}", "", "").expect_err("bad syntax");
        assert!(matches!(error, FormatError::TemplateSyntax(_)));
    }
}
