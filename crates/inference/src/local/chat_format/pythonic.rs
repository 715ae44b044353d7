//! Python-style function calls, as Llama 3.2's zero-shot tool calling writes them:
//! `[get_weather(city="San Francisco", days=3), get_time()]`. Values are Python (or JSON) literals:
//! strings with either quote and escapes, integers, floats, `True`/`False`/`true`/`false`,
//! `None`/`null`, lists, tuples and dicts, nested.

use serde_json::{Map, Number, Value};

use super::json;

/// One parsed call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PyCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

/// Where and why parsing stopped; `offset` is a byte offset into the parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

const MAX_DEPTH: usize = 64;

/// Parses `[call, call, …]` at the start of `text` (after optional whitespace) and returns the calls
/// and the byte offset just past the `]`.
pub(crate) fn parse_call_list(text: &str) -> Result<(Vec<PyCall>, usize), SyntaxError> {
    let mut p = Parser::new(text);
    p.skip_ws();
    p.expect(b'[')?;
    let mut calls = Vec::new();
    loop {
        p.skip_ws();
        if p.eat(b']') {
            break;
        }
        calls.push(p.call()?);
        p.skip_ws();
        if p.eat(b',') {
            continue;
        }
        if p.eat(b']') {
            break;
        }
        return Err(p.error("expected ',' or ']' after a call"));
    }
    Ok((calls, p.pos))
}

/// Parses calls without brackets: `f(a=1)`, `f(), g()`, one per line, or wrapped in `print(…)` as
/// Gemma's `tool_code` blocks sometimes do. The whole text must be calls.
pub(crate) fn parse_bare_calls(text: &str) -> Result<Vec<PyCall>, SyntaxError> {
    let mut p = Parser::new(text);
    let mut calls = Vec::new();
    loop {
        p.skip_ws();
        if p.at_end() {
            break;
        }
        let call = p.call()?;
        if call.name == "print" && call.arguments.is_empty() && !p.printed.is_empty() {
            calls.append(&mut p.printed);
        } else {
            calls.push(call);
        }
        p.skip_ws();
        p.eat(b',');
        p.eat(b';');
    }
    if calls.is_empty() {
        return Err(p.error("expected a function call"));
    }
    Ok(calls)
}

/// `name(a="x", b=1)` as Llama 3.2 writes a call (strings in double quotes).
pub(crate) fn call_to_python(name: &str, arguments: &Value) -> String {
    let args = match arguments {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}={}", literal(value)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        // Not an argument object (the model's unparsable output kept as text): show it as it was.
        other => literal(other),
    };
    format!("{name}({args})")
}

/// A Python literal for a JSON value.
pub(crate) fn literal(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => json::quote(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", json::quote(k), literal(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    /// Calls found as the argument of `print(…)`.
    printed: Vec<PyCall>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
            printed: Vec::new(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn found(&self) -> String {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(c) => format!("found {c:?}"),
            None => "found the end of the text".into(),
        }
    }

    fn error(&self, expected: &str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            message: format!("{expected}, {}", self.found()),
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), SyntaxError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", char::from(byte))))
        }
    }

    fn identifier(&mut self) -> Option<&'a str> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.pos += 1,
            _ => return None,
        }
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            self.pos += 1;
        }
        self.text.get(start..self.pos)
    }

    /// `name(kw=value, …)`; a dotted name `tool.call(…)` (Llama 3.1's built-in tools) is `tool`.
    fn call(&mut self) -> Result<PyCall, SyntaxError> {
        let Some(first) = self.identifier() else {
            return Err(self.error("expected a function name"));
        };
        let mut parts = vec![first];
        while self.eat(b'.') {
            match self.identifier() {
                Some(part) => parts.push(part),
                None => return Err(self.error("expected a name after '.'")),
            }
        }
        if parts.len() == 2 && parts[1] == "call" {
            parts.pop();
        }
        let name = parts.join(".");
        self.skip_ws();
        self.expect(b'(')?;
        let mut arguments = Map::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                break;
            }
            let arg_start = self.pos;
            let keyword = self.identifier();
            self.skip_ws();
            match keyword {
                Some(key) if self.eat(b'=') => {
                    let value = self.value()?;
                    arguments.insert(key.to_string(), value);
                }
                _ if name == "print" && self.printed.is_empty() => {
                    // `print(f(x=1))`: the call inside is the call.
                    self.pos = arg_start;
                    let inner = self.call()?;
                    self.printed.push(inner);
                }
                _ => {
                    self.pos = arg_start;
                    return Err(
                        self.error("expected a keyword argument `name=value` (positional arguments are not supported)")
                    );
                }
            }
            self.skip_ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b')') {
                break;
            }
            return Err(self.error("expected ',' or ')' after an argument"));
        }
        Ok(PyCall { name, arguments })
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        self.skip_ws();
        if self.depth >= MAX_DEPTH {
            return Err(self.error("values nested too deeply"));
        }
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.string(q).map(Value::String),
            Some(b'[') => self.sequence(b'[', b']'),
            Some(b'(') => self.sequence(b'(', b')'),
            Some(b'{') => self.dict(),
            Some(b) if b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.' => self.number(),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                let start = self.pos;
                match self.identifier() {
                    Some("True" | "true") => Ok(Value::Bool(true)),
                    Some("False" | "false") => Ok(Value::Bool(false)),
                    Some("None" | "null" | "none") => Ok(Value::Null),
                    Some(name) => Err(SyntaxError {
                        offset: start,
                        message: format!(
                            "expected a literal value, found the name `{name}` (variables and expressions are not supported)"
                        ),
                    }),
                    None => Err(self.error("expected a value")),
                }
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn sequence(&mut self, open: u8, close: u8) -> Result<Value, SyntaxError> {
        self.expect(open)?;
        self.depth += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(close) {
                break;
            }
            items.push(self.value()?);
            self.skip_ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(close) {
                break;
            }
            return Err(self.error(&format!("expected ',' or '{}'", char::from(close))));
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn dict(&mut self) -> Result<Value, SyntaxError> {
        self.expect(b'{')?;
        self.depth += 1;
        let mut map = Map::new();
        loop {
            self.skip_ws();
            if self.eat(b'}') {
                break;
            }
            let key = match self.peek() {
                Some(q @ (b'"' | b'\'')) => self.string(q)?,
                Some(b) if b.is_ascii_digit() || b == b'-' => self.number()?.to_string(),
                _ => return Err(self.error("expected a string key")),
            };
            self.skip_ws();
            self.expect(b':')?;
            let value = self.value()?;
            map.insert(key, value);
            self.skip_ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                break;
            }
            return Err(self.error("expected ',' or '}'"));
        }
        self.depth -= 1;
        Ok(Value::Object(map))
    }

    fn string(&mut self, quote: u8) -> Result<String, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(rest) = self.text.get(self.pos..) else {
                return Err(self.error("unterminated string"));
            };
            let Some(c) = rest.chars().next() else {
                return Err(SyntaxError {
                    offset: start,
                    message: "unterminated string".into(),
                });
            };
            self.pos += c.len_utf8();
            if c == char::from(quote) {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escape_at = self.pos - 1;
            let Some(e) = self.text.get(self.pos..).and_then(|r| r.chars().next()) else {
                return Err(SyntaxError {
                    offset: start,
                    message: "unterminated string".into(),
                });
            };
            self.pos += e.len_utf8();
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                '0' => out.push('\0'),
                '\\' | '\'' | '"' | '/' => out.push(e),
                '\n' => {}
                'x' | 'u' | 'U' => {
                    let width = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let code = self.hex(width, escape_at)?;
                    // A UTF-16 surrogate pair, as JSON writes characters beyond the BMP.
                    let code = if (0xD800..0xDC00).contains(&code)
                        && self.text.get(self.pos..self.pos + 2) == Some("\\u")
                    {
                        let save = self.pos;
                        self.pos += 2;
                        let low = self.hex(4, save)?;
                        if (0xDC00..0xE000).contains(&low) {
                            0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            self.pos = save;
                            code
                        }
                    } else {
                        code
                    };
                    match char::from_u32(code) {
                        Some(ch) => out.push(ch),
                        None => {
                            return Err(SyntaxError {
                                offset: escape_at,
                                message: format!("invalid character escape (code {code:#x})"),
                            });
                        }
                    }
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn hex(&mut self, width: usize, escape_at: usize) -> Result<u32, SyntaxError> {
        let digits = self.text.get(self.pos..self.pos + width);
        match digits.and_then(|d| u32::from_str_radix(d, 16).ok()) {
            Some(code) if digits.is_some_and(|d| d.bytes().all(|b| b.is_ascii_hexdigit())) => {
                self.pos += width;
                Ok(code)
            }
            _ => Err(SyntaxError {
                offset: escape_at,
                message: format!("expected {width} hex digits in the escape"),
            }),
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E' | b'_'))
        {
            self.pos += 1;
        }
        let raw = self.text.get(start..self.pos).unwrap_or_default();
        let clean: String = raw.chars().filter(|c| *c != '_').collect();
        let clean = clean.strip_prefix('+').unwrap_or(&clean);
        let bad = || SyntaxError {
            offset: start,
            message: format!("invalid number {raw:?}"),
        };
        if !clean.contains(['.', 'e', 'E']) {
            if let Ok(n) = clean.parse::<i64>() {
                return Ok(Value::Number(n.into()));
            }
            if let Ok(n) = clean.parse::<u64>() {
                return Ok(Value::Number(n.into()));
            }
        }
        clean
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> PyCall {
        let (mut calls, _) = parse_call_list(text).expect("parses");
        assert_eq!(calls.len(), 1);
        calls.remove(0)
    }

    #[test]
    fn values_of_every_kind() {
        let call = one(
            r#"[f(s='it\'s', d="a\"b\n\u00e9\U0001F600", i=-3, x=1.5e2, t=True, f=false, n=None, m=null, l=[1, (2, 3), {"k": [None]}], e={}, u=1_000)]"#,
        );
        assert_eq!(call.name, "f");
        assert_eq!(
            Value::Object(call.arguments),
            json!({"s": "it's", "d": "a\"b\né😀", "i": -3, "x": 150.0, "t": true, "f": false,
                   "n": null, "m": null, "l": [1, [2, 3], {"k": [null]}], "e": {}, "u": 1000})
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        let error = parse_call_list("[f(a=1 b=2)]").expect_err("fails");
        assert_eq!(error.offset, 7);
        assert!(error.message.contains("expected ',' or ')'"), "{error:?}");
        let error = parse_call_list("[f(a=x)]").expect_err("fails");
        assert!(error.message.contains("the name `x`"), "{error:?}");
        let error = parse_call_list("[f(1)]").expect_err("fails");
        assert!(error.message.contains("positional"), "{error:?}");
        let error = parse_call_list("[f(a='open)]").expect_err("fails");
        assert!(error.message.contains("unterminated"), "{error:?}");
        let deep = format!("[f(a={}{})]", "[".repeat(200), "]".repeat(200));
        assert!(parse_call_list(&deep).is_err());
    }

    #[test]
    fn bare_calls_and_print() {
        let calls = parse_bare_calls("print(get_weather(city=\"Paris\"))").expect("parses");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "get_weather");
        let calls = parse_bare_calls("f(a=1)\ng()").expect("parses");
        assert_eq!(calls.len(), 2);
        let calls = parse_bare_calls("brave_search.call(query=\"gold\")").expect("parses");
        assert_eq!(calls[0].name, "brave_search");
    }

    #[test]
    fn renders_python_literals() {
        assert_eq!(
            call_to_python(
                "f",
                &json!({"a": "x\"y", "b": [1, true, null], "c": {"k": false}})
            ),
            r#"f(a="x\"y", b=[1, True, None], c={"k": False})"#
        );
        assert_eq!(call_to_python("g", &json!({})), "g()");
    }
}
