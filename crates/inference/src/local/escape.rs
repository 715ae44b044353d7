//! Keeping message text from becoming control tokens.
//!
//! The prompt is rendered as text and tokenized with special tokens parsed, because the chat
//! format writes its markers (`<|start_header_id|>`, `<start_of_turn>`) as text. Message content is
//! not the format's: a user message or a retrieved document that contains `<|eot_id|>` must be
//! read as those characters, not as the end of its turn. So before rendering, every control-token
//! text (and our own marker characters) in the messages is swapped for a placeholder between two
//! private-use characters; after rendering, the prompt is tokenized piece by piece, the
//! placeholders' original text with special tokens *not* parsed.

use std::borrow::Cow;

use corral_core::{ContentPart, Message};

use super::tokenizer::{TokenType, Tokenizer};

const OPEN: char = '\u{F0000}';
const CLOSE: char = '\u{F0001}';

/// The control-token texts of a vocabulary, longest first.
#[derive(Debug, Clone, Default)]
pub struct Escaper {
    specials: Vec<String>,
}

impl Escaper {
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let mut specials: Vec<String> = (0..tokenizer.vocab_size() as u32)
            .filter(|id| tokenizer.token_type(*id) == Some(TokenType::Control))
            .filter_map(|id| tokenizer.piece(id).map(str::to_string))
            .filter(|piece| !piece.is_empty())
            .collect();
        specials.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { specials }
    }

    /// The messages with control-token texts replaced by placeholders (recorded in `literals`).
    pub fn messages(&self, messages: &[Message], literals: &mut Vec<String>) -> Vec<Message> {
        messages
            .iter()
            .map(|message| match message {
                Message::System { content } => Message::System {
                    content: self.text(content, literals).into_owned(),
                },
                Message::User { content } => Message::User {
                    content: content
                        .iter()
                        .map(|part| match part {
                            ContentPart::Text { text } => ContentPart::Text {
                                text: self.text(text, literals).into_owned(),
                            },
                            other => other.clone(),
                        })
                        .collect(),
                },
                Message::Assistant {
                    content,
                    tool_calls,
                } => Message::Assistant {
                    content: self.text(content, literals).into_owned(),
                    tool_calls: tool_calls.clone(),
                },
                Message::Tool {
                    tool_call_id,
                    content,
                } => Message::Tool {
                    tool_call_id: tool_call_id.clone(),
                    content: self.text(content, literals).into_owned(),
                },
            })
            .collect()
    }

    fn text<'a>(&self, text: &'a str, literals: &mut Vec<String>) -> Cow<'a, str> {
        let mut out = String::new();
        let mut rest = text;
        let mut changed = false;
        loop {
            // The earliest control-token text or marker character (longest first on a tie).
            let mut found: Option<(usize, usize)> = None;
            for special in &self.specials {
                if let Some(at) = rest.find(special.as_str())
                    && found.is_none_or(|(best, _)| at < best)
                {
                    found = Some((at, special.len()));
                }
            }
            if let Some(at) = rest.find([OPEN, CLOSE])
                && found.is_none_or(|(best, _)| at < best)
            {
                found = Some((at, OPEN.len_utf8()));
            }
            let Some((at, len)) = found else {
                break;
            };
            changed = true;
            out.push_str(&rest[..at]);
            out.push(OPEN);
            out.push_str(&literals.len().to_string());
            out.push(CLOSE);
            literals.push(rest[at..at + len].to_string());
            rest = &rest[at + len..];
        }
        if !changed {
            return Cow::Borrowed(text);
        }
        out.push_str(rest);
        Cow::Owned(out)
    }
}

/// Tokenizes a rendered prompt: the format's text with special tokens parsed, the placeholders'
/// original text as plain text.
pub fn encode_prompt(tokenizer: &Tokenizer, prompt: &str, literals: &[String]) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut pieces = prompt.split(OPEN);
    if let Some(first) = pieces.next() {
        ids.extend(tokenizer.encode(first, false, true));
    }
    for piece in pieces {
        let (index, after) = piece.split_once(CLOSE).unwrap_or(("", piece));
        match index.parse::<usize>().ok().and_then(|i| literals.get(i)) {
            Some(literal) => ids.extend(tokenizer.encode(literal, false, false)),
            // Not one of ours (a template cannot make these, but be safe): plain text.
            None => ids.extend(tokenizer.encode(index, false, false)),
        }
        ids.extend(tokenizer.encode(after, false, true));
    }
    ids
}
