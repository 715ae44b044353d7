//! A WordPiece tokenizer driven by a Hugging Face `tokenizer.json`, reproducing what the `tokenizers`
//! library does for BERT-family models: added (special) tokens split out of the raw text,
//! `BertNormalizer`, `BertPreTokenizer`, `WordPiece`, then `TemplateProcessing`/`BertProcessing`
//! adds `[CLS]`/`[SEP]`. Any other component kind is refused at load time with its name, rather
//! than silently tokenizing differently from the model's training.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;

use super::BertError;
use super::config::parse_json;

/// One tokenized input, special tokens included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// How many word pieces the text itself had before truncation (special tokens not counted).
    pub untruncated_len: usize,
}

#[derive(Debug, Deserialize)]
struct TokenizerFile {
    #[serde(default)]
    added_tokens: Vec<AddedTokenFile>,
    #[serde(default)]
    normalizer: Option<Value>,
    #[serde(default)]
    pre_tokenizer: Option<Value>,
    model: Value,
    #[serde(default)]
    post_processor: Option<Value>,
    #[serde(default)]
    truncation: Option<TruncationFile>,
}

#[derive(Debug, Deserialize)]
struct AddedTokenFile {
    id: u32,
    content: String,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    #[serde(default = "yes")]
    normalized: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct TruncationFile {
    max_length: usize,
}

#[derive(Debug, Deserialize)]
struct BertNormalizerFile {
    #[serde(default = "yes")]
    clean_text: bool,
    #[serde(default = "yes")]
    handle_chinese_chars: bool,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default = "yes")]
    lowercase: bool,
}

#[derive(Debug, Deserialize)]
struct WordPieceFile {
    vocab: HashMap<String, u32>,
    unk_token: String,
    #[serde(default = "default_prefix")]
    continuing_subword_prefix: String,
    #[serde(default = "default_max_chars")]
    max_input_chars_per_word: usize,
}

fn default_prefix() -> String {
    "##".to_owned()
}
fn default_max_chars() -> usize {
    100
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
enum TemplatePiece {
    SpecialToken { id: String, type_id: u32 },
    Sequence { id: String, type_id: u32 },
}

#[derive(Debug, Deserialize)]
struct SpecialTokenFile {
    ids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct TemplateFile {
    single: Vec<TemplatePiece>,
    #[serde(default)]
    special_tokens: HashMap<String, SpecialTokenFile>,
}

#[derive(Debug, Deserialize)]
struct BertProcessingFile {
    sep: (String, u32),
    cls: (String, u32),
}

#[derive(Debug, Clone, Copy)]
struct Normalizer {
    clean_text: bool,
    handle_chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
}

#[derive(Debug, Clone)]
struct AddedToken {
    id: u32,
    content: String,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
}

/// Tokens the post-processor puts around the text: `(id, type_id)` before and after.
#[derive(Debug, Clone, Default)]
struct Template {
    before: Vec<(u32, u32)>,
    after: Vec<(u32, u32)>,
    sequence_type_id: u32,
}

/// A BERT WordPiece tokenizer read from `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct WordPieceTokenizer {
    vocab: HashMap<String, u32>,
    unk_id: u32,
    prefix: String,
    max_input_chars_per_word: usize,
    normalizer: Option<Normalizer>,
    /// Added tokens matched in the raw text (`normalized: false`), longest first.
    raw_added: Vec<AddedToken>,
    /// Added tokens matched in the normalized text (`normalized: true`), longest first.
    normalized_added: Vec<AddedToken>,
    template: Template,
    truncation: Option<usize>,
}

impl WordPieceTokenizer {
    /// Reads `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self, BertError> {
        let text = std::fs::read_to_string(path).map_err(|source| BertError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(path, &text)
    }

    /// Parses the contents of a `tokenizer.json`; `path` only names it in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, BertError> {
        let file: TokenizerFile = parse_json(path, text)?;
        let bad = |key: &str, message: String| BertError::Config {
            path: path.to_owned(),
            message: format!("{key}: {message}"),
        };
        let sub = |key: &str, value: &Value| -> Result<String, BertError> {
            match value.get("type").and_then(Value::as_str) {
                Some(kind) => Ok(kind.to_owned()),
                None => Err(bad(key, "has no \"type\"".to_owned())),
            }
        };

        let model_kind = sub("model", &file.model)?;
        if model_kind != "WordPiece" {
            return Err(bad(
                "model.type",
                format!("{model_kind:?} is not supported (only \"WordPiece\")"),
            ));
        }
        let model: WordPieceFile = typed(path, "model", file.model)?;
        let Some(&unk_id) = model.vocab.get(&model.unk_token) else {
            return Err(bad(
                "model.unk_token",
                format!("{:?} is not in model.vocab", model.unk_token),
            ));
        };

        let normalizer = match file.normalizer {
            None | Some(Value::Null) => None,
            Some(value) => {
                let kind = sub("normalizer", &value)?;
                if kind != "BertNormalizer" {
                    return Err(bad(
                        "normalizer.type",
                        format!("{kind:?} is not supported (only \"BertNormalizer\")"),
                    ));
                }
                let n: BertNormalizerFile = typed(path, "normalizer", value)?;
                Some(Normalizer {
                    clean_text: n.clean_text,
                    handle_chinese_chars: n.handle_chinese_chars,
                    // `null` means "do what lowercase does", as in the original BERT.
                    strip_accents: n.strip_accents.unwrap_or(n.lowercase),
                    lowercase: n.lowercase,
                })
            }
        };

        match &file.pre_tokenizer {
            Some(value) if !value.is_null() => {
                let kind = sub("pre_tokenizer", value)?;
                if kind != "BertPreTokenizer" {
                    return Err(bad(
                        "pre_tokenizer.type",
                        format!("{kind:?} is not supported (only \"BertPreTokenizer\")"),
                    ));
                }
            }
            _ => {
                return Err(bad(
                    "pre_tokenizer",
                    "missing; only \"BertPreTokenizer\" is supported".to_owned(),
                ));
            }
        }

        let template = match file.post_processor {
            None | Some(Value::Null) => Template::default(),
            Some(value) => match sub("post_processor", &value)?.as_str() {
                "TemplateProcessing" => {
                    let t: TemplateFile = typed(path, "post_processor", value)?;
                    let mut template = Template::default();
                    let mut seen_sequence = false;
                    for piece in &t.single {
                        match piece {
                            TemplatePiece::Sequence { id, type_id } => {
                                if seen_sequence || id != "A" {
                                    return Err(bad(
                                        "post_processor.single",
                                        format!(
                                            "sequence {id:?}: only one sequence, \"A\", is supported"
                                        ),
                                    ));
                                }
                                seen_sequence = true;
                                template.sequence_type_id = *type_id;
                            }
                            TemplatePiece::SpecialToken { id, type_id } => {
                                let Some(special) = t.special_tokens.get(id) else {
                                    return Err(bad(
                                        "post_processor.special_tokens",
                                        format!("{id:?} is used in `single` but not defined"),
                                    ));
                                };
                                let side = if seen_sequence {
                                    &mut template.after
                                } else {
                                    &mut template.before
                                };
                                side.extend(special.ids.iter().map(|&i| (i, *type_id)));
                            }
                        }
                    }
                    if !seen_sequence {
                        return Err(bad(
                            "post_processor.single",
                            "has no Sequence \"A\"".to_owned(),
                        ));
                    }
                    template
                }
                "BertProcessing" => {
                    let b: BertProcessingFile = typed(path, "post_processor", value)?;
                    Template {
                        before: vec![(b.cls.1, 0)],
                        after: vec![(b.sep.1, 0)],
                        sequence_type_id: 0,
                    }
                }
                other => {
                    return Err(bad(
                        "post_processor.type",
                        format!(
                            "{other:?} is not supported (only \"TemplateProcessing\", \"BertProcessing\")"
                        ),
                    ));
                }
            },
        };

        let mut raw_added = Vec::new();
        let mut normalized_added = Vec::new();
        for (index, token) in file.added_tokens.into_iter().enumerate() {
            if token.content.is_empty() {
                return Err(bad(
                    &format!("added_tokens[{index}].content"),
                    "is empty".to_owned(),
                ));
            }
            let added = AddedToken {
                id: token.id,
                content: token.content,
                single_word: token.single_word,
                lstrip: token.lstrip,
                rstrip: token.rstrip,
            };
            if token.normalized {
                normalized_added.push(added);
            } else {
                raw_added.push(added);
            }
        }
        // Longest first, so that the first token that matches at a position is the longest one.
        raw_added.sort_by_key(|t| std::cmp::Reverse(t.content.len()));
        normalized_added.sort_by_key(|t| std::cmp::Reverse(t.content.len()));

        Ok(Self {
            vocab: model.vocab,
            unk_id,
            prefix: model.continuing_subword_prefix,
            max_input_chars_per_word: model.max_input_chars_per_word,
            normalizer,
            raw_added,
            normalized_added,
            template,
            truncation: file.truncation.map(|t| t.max_length),
        })
    }

    /// How many special tokens the post-processor adds to one sequence.
    pub fn num_special_tokens(&self) -> usize {
        self.template.before.len() + self.template.after.len()
    }

    /// The largest token id this tokenizer can produce.
    pub fn max_token_id(&self) -> Option<u32> {
        let vocab = self.vocab.values().copied();
        let added = self
            .raw_added
            .iter()
            .chain(&self.normalized_added)
            .map(|t| t.id);
        let special = self
            .template
            .before
            .iter()
            .chain(&self.template.after)
            .map(|&(id, _)| id);
        vocab.chain(added).chain(special).max()
    }

    /// The largest token-type id the post-processor assigns.
    pub fn max_type_id(&self) -> Option<u32> {
        self.template
            .before
            .iter()
            .chain(&self.template.after)
            .map(|&(_, t)| t)
            .chain(std::iter::once(self.template.sequence_type_id))
            .max()
    }

    /// `truncation.max_length` from `tokenizer.json`, when it sets one.
    pub fn file_max_length(&self) -> Option<usize> {
        self.truncation
    }

    /// Tokenizes `text` and adds the special tokens, keeping at most `max_len` tokens in all
    /// (the text's word pieces are cut from the end, as Hugging Face's default truncation does).
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let mut pieces = self.pieces(text);
        let untruncated_len = pieces.len();
        pieces.truncate(max_len.saturating_sub(self.num_special_tokens()));

        let total = pieces.len() + self.num_special_tokens();
        let mut ids = Vec::with_capacity(total);
        let mut type_ids = Vec::with_capacity(total);
        for &(id, type_id) in &self.template.before {
            ids.push(id);
            type_ids.push(type_id);
        }
        type_ids.extend(std::iter::repeat_n(
            self.template.sequence_type_id,
            pieces.len(),
        ));
        ids.extend(pieces);
        for &(id, type_id) in &self.template.after {
            ids.push(id);
            type_ids.push(type_id);
        }
        Encoding {
            ids,
            type_ids,
            untruncated_len,
        }
    }

    /// How many word pieces `text` becomes, special tokens not counted.
    pub fn count(&self, text: &str) -> usize {
        self.pieces(text).len()
    }

    /// The word pieces of `text`, without special tokens.
    fn pieces(&self, text: &str) -> Vec<u32> {
        let mut pieces = Vec::new();
        for segment in split_added(text, &self.raw_added) {
            match segment {
                Segment::Added(id) => pieces.push(id),
                Segment::Text(raw) => {
                    let normalized = match &self.normalizer {
                        Some(n) => normalize(n, raw),
                        None => raw.to_owned(),
                    };
                    for inner in split_added(&normalized, &self.normalized_added) {
                        match inner {
                            Segment::Added(id) => pieces.push(id),
                            Segment::Text(t) => self.tokenize_normalized(t, &mut pieces),
                        }
                    }
                }
            }
        }
        pieces
    }

    /// `BertPreTokenizer` (split on whitespace, punctuation as words of its own), then WordPiece.
    fn tokenize_normalized(&self, text: &str, out: &mut Vec<u32>) {
        for chunk in text.split(char::is_whitespace) {
            let mut word_start = 0;
            for (i, c) in chunk.char_indices() {
                if is_bert_punctuation(c) {
                    if word_start < i {
                        self.word_piece(&chunk[word_start..i], out);
                    }
                    let end = i + c.len_utf8();
                    self.word_piece(&chunk[i..end], out);
                    word_start = end;
                }
            }
            if word_start < chunk.len() {
                self.word_piece(&chunk[word_start..], out);
            }
        }
    }

    /// Greedy longest-match-first WordPiece; a word with any unmatched part becomes one `[UNK]`.
    fn word_piece(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > self.max_input_chars_per_word {
            out.push(self.unk_id);
            return;
        }
        let first = out.len();
        let mut candidate = String::with_capacity(word.len() + self.prefix.len());
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str(&self.prefix);
                }
                candidate.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(&candidate) {
                    found = Some(id);
                    break;
                }
                // Step back one character.
                end = word[start..end]
                    .char_indices()
                    .next_back()
                    .map_or(start, |(i, _)| start + i);
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk_id);
                    return;
                }
            }
        }
    }
}

/// Parses one component of `tokenizer.json` into its typed form.
fn typed<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: &str,
    value: Value,
) -> Result<T, BertError> {
    serde_json::from_value(value).map_err(|e| BertError::Config {
        path: path.to_owned(),
        message: format!("{key}: {e}"),
    })
}

enum Segment<'a> {
    Text(&'a str),
    Added(u32),
}

/// Splits `text` around occurrences of the added tokens (leftmost, then longest).
fn split_added<'a>(text: &'a str, added: &[AddedToken]) -> Vec<Segment<'a>> {
    if added.is_empty() {
        return vec![Segment::Text(text)];
    }
    let mut segments = Vec::new();
    let mut text_start = 0;
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let hit = added.iter().find(|t| {
            rest.starts_with(&t.content)
                && (!t.single_word || is_single_word(text, pos, pos + t.content.len()))
        });
        match hit {
            Some(token) => {
                let mut start = pos;
                let mut end = pos + token.content.len();
                if token.lstrip {
                    start = text_start
                        + text[text_start..start]
                            .trim_end_matches(char::is_whitespace)
                            .len();
                }
                if token.rstrip {
                    end = text.len() - text[end..].trim_start_matches(char::is_whitespace).len();
                }
                if text_start < start {
                    segments.push(Segment::Text(&text[text_start..start]));
                }
                segments.push(Segment::Added(token.id));
                text_start = end;
                pos = end;
            }
            None => pos += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    if text_start < text.len() {
        segments.push(Segment::Text(&text[text_start..]));
    }
    segments
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_single_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back().is_some_and(is_word_char);
    let after = text[end..].chars().next().is_some_and(is_word_char);
    !before && !after
}

/// `BertNormalizer`, in Hugging Face's order: clean, space out CJK, strip accents, lowercase.
fn normalize(n: &Normalizer, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if n.clean_text {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            if is_bert_whitespace(c) {
                out.push(' ');
                continue;
            }
        }
        if n.handle_chinese_chars && is_chinese_char(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    if n.strip_accents {
        out = out
            .nfd()
            .filter(|&c| get_general_category(c) != GeneralCategory::NonspacingMark)
            .collect();
    }
    if n.lowercase {
        // Per character, as `tokenizers` does (so no word-final sigma rule).
        out = out.chars().flat_map(char::to_lowercase).collect();
    }
    out
}

fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Unicode C* (control, format, unassigned, private use, surrogate), except tab and newlines.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Unassigned
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
    )
}

/// The CJK ideograph blocks BERT spaces out, as `tokenizers` defines them.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// ASCII punctuation (which includes symbols such as `$`, `+`, `^`) or any Unicode P* category.
fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            get_general_category(c),
            GeneralCategory::ConnectorPunctuation
                | GeneralCategory::DashPunctuation
                | GeneralCategory::OpenPunctuation
                | GeneralCategory::ClosePunctuation
                | GeneralCategory::InitialPunctuation
                | GeneralCategory::FinalPunctuation
                | GeneralCategory::OtherPunctuation
        )
}
