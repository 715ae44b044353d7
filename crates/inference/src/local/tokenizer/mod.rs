//! Tokenizers for local GGUF models, built from the GGUF `tokenizer.ggml.*` metadata alone.
//!
//! Two vocabulary kinds are supported, both reproducing llama.cpp token for token:
//! - [`VocabKind::Bpe`]: byte-level BPE with the Llama 3 pre-tokenizer (`tokenizer.ggml.model =
//!   "gpt2"`, `tokenizer.ggml.pre = "llama-bpe"`), merges applied by rank;
//! - [`VocabKind::SentencePiece`]: score-based bigram merging with `▁` for spaces and `<0xNN>` byte
//!   fallback (`tokenizer.ggml.model = "llama"`, used by Gemma 3).
//!
//! Control and user-defined tokens written literally in the text can be parsed as single ids
//! (`parse_special`). Decoding is byte-exact ([`Tokenizer::token_bytes`]) so that a streaming
//! generator can emit valid UTF-8 incrementally ([`StreamDecoder`]).

mod bpe;
mod gguf;
mod hash;
mod pretok;
mod special;
mod spm;
mod tiktoken;
mod unicode;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

/// A tokenizer error: names the input and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokenizer: {message}")]
pub struct TokenizerError {
    message: String,
}

impl TokenizerError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The problem, without the `tokenizer:` prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The tokenization algorithm of a vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// Byte-level BPE (GGUF `tokenizer.ggml.model = "gpt2"`).
    Bpe,
    /// SentencePiece-style BPE by scores (GGUF `tokenizer.ggml.model = "llama"`).
    SentencePiece,
}

/// A token's type (GGUF `tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An ordinary token (1).
    Normal,
    /// The unknown token (2).
    Unknown,
    /// A control token such as `<|eot_id|>` (3).
    Control,
    /// A user-defined token, matched in text before tokenization (4).
    UserDefined,
    /// An unused token (5); decodes to nothing.
    Unused,
    /// A byte-fallback token `<0xNN>` (6).
    Byte,
}

impl TokenType {
    fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }
}

/// A vocabulary as stored in GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    /// Tokenization algorithm.
    pub model: VocabKind,
    /// Pre-tokenizer name (`tokenizer.ggml.pre`); BPE supports `llama-bpe` (aka `llama3`, `llama-v3`).
    pub pre: Option<String>,
    /// Token texts by id (byte-level form for BPE, `▁` for spaces for SentencePiece).
    pub tokens: Vec<String>,
    /// SentencePiece scores by id; may be empty.
    pub scores: Vec<f32>,
    /// Token types by id (see [`TokenType`]); empty means all normal.
    pub token_types: Vec<i32>,
    /// BPE merges, `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// End-of-turn token.
    pub eot: Option<u32>,
    /// End-of-message token (Llama 3 tool calls).
    pub eom: Option<u32>,
    /// Padding token.
    pub pad: Option<u32>,
    /// Unknown token.
    pub unk: Option<u32>,
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub add_bos: bool,
    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub add_eos: bool,
    /// SentencePiece: prefix a space to text at the start and after each special token.
    pub add_space_prefix: bool,
}

impl Vocab {
    /// Reads the `tokenizer.ggml.*` keys of a GGUF file's metadata. Errors name the missing or
    /// ill-typed key.
    pub fn from_gguf(metadata: &HashMap<String, Value>) -> Result<Self, TokenizerError> {
        gguf::from_gguf(metadata)
    }

    /// The `tokenizer.ggml.*` metadata entries for this vocabulary (for writing GGUF files).
    pub fn to_gguf(&self) -> Vec<(String, Value)> {
        gguf::to_gguf(self)
    }

    /// Builds the Llama 3 vocabulary (as llama.cpp's converter does) from the contents of Meta's
    /// tiktoken `tokenizer.model`: byte-level token texts, merges derived from the ranks, and the
    /// 256 special tokens. BOS is `<|begin_of_text|>`; EOS and EOT are `<|eot_id|>` (instruct
    /// models), EOM `<|eom_id|>`.
    pub fn llama3_from_tiktoken(tokenizer_model: &str) -> Result<Self, TokenizerError> {
        tiktoken::llama3_from_tiktoken(tokenizer_model)
    }
}

/// Token names that end generation even when the metadata does not say so.
const EOG_NAMES: [&str; 4] = ["<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|im_end|>"];

enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// A tokenizer for one vocabulary. `Send + Sync`; share it with `Arc`.
pub struct Tokenizer {
    kind: VocabKind,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    scores: Vec<f32>,
    by_text: hash::TextIndex,
    /// Decoded bytes of every token, concatenated; `offsets[id]..offsets[id + 1]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    /// Control, user-defined and unknown tokens, longest text first.
    specials: Vec<u32>,
    /// The texts of `specials`, for finding which occur in a text.
    special_trie: special::SpecialTrie,
    bpe: Option<bpe::Bpe>,
    byte_ids: [Option<u32>; 256],
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("end_of_generation", &self.eog)
            .finish_non_exhaustive()
    }
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Validates `vocab` and builds the lookup tables.
    pub fn new(vocab: Vocab) -> Result<Self, TokenizerError> {
        let n = vocab.tokens.len();
        if n == 0 {
            return Err(TokenizerError::new("vocabulary has no tokens"));
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::new(format!(
                "vocabulary has {n} tokens, more than u32 ids allow"
            )));
        }
        if !vocab.scores.is_empty() && vocab.scores.len() != n {
            return Err(TokenizerError::new(format!(
                "vocabulary has {n} tokens but {} scores",
                vocab.scores.len()
            )));
        }
        if !vocab.token_types.is_empty() && vocab.token_types.len() != n {
            return Err(TokenizerError::new(format!(
                "vocabulary has {n} tokens but {} token types",
                vocab.token_types.len()
            )));
        }
        for (name, id) in [
            ("bos", vocab.bos),
            ("eos", vocab.eos),
            ("eot", vocab.eot),
            ("eom", vocab.eom),
            ("pad", vocab.pad),
            ("unk", vocab.unk),
        ] {
            if let Some(id) = id
                && id as usize >= n
            {
                return Err(TokenizerError::new(format!(
                    "{name} token id {id} is out of range (vocabulary size {n})"
                )));
            }
        }
        let types = if vocab.token_types.is_empty() {
            vec![TokenType::Normal; n]
        } else {
            vocab
                .token_types
                .iter()
                .enumerate()
                .map(|(id, &t)| {
                    TokenType::from_i32(t).ok_or_else(|| {
                        TokenizerError::new(format!(
                            "token {id} ({:?}) has invalid type {t}",
                            vocab.tokens[id]
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let bpe = match vocab.model {
            VocabKind::Bpe => match vocab.pre.as_deref() {
                Some("llama-bpe" | "llama3" | "llama-v3") => {
                    Some(bpe::Bpe::new(&vocab.tokens, &vocab.merges, true)?)
                }
                other => {
                    return Err(TokenizerError::new(format!(
                        "unsupported BPE pre-tokenizer {other:?} (supported: \"llama-bpe\")"
                    )));
                }
            },
            VocabKind::SentencePiece => None,
        };
        let map = unicode::byte_map();
        let by_text = hash::TextIndex::new(&vocab.tokens);
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut byte_ids = [None; 256];
        offsets.push(0);
        for (id, (text, &ty)) in vocab.tokens.iter().zip(&types).enumerate() {
            match ty {
                TokenType::Control | TokenType::UserDefined | TokenType::Unknown => {
                    bytes.extend_from_slice(text.as_bytes())
                }
                TokenType::Unused => {}
                TokenType::Byte => {
                    let b = parse_byte_token(text).ok_or_else(|| {
                        TokenizerError::new(format!(
                            "token {id} has type byte but its text {text:?} is not <0xNN>"
                        ))
                    })?;
                    bytes.push(b);
                }
                TokenType::Normal => match vocab.model {
                    VocabKind::SentencePiece => {
                        bytes.extend_from_slice(text.replace('\u{2581}', " ").as_bytes())
                    }
                    // Characters outside the byte-level alphabet are kept as their UTF-8 bytes.
                    VocabKind::Bpe => {
                        for c in text.chars() {
                            match map.byte_of(c) {
                                Some(b) => bytes.push(b),
                                None => {
                                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes())
                                }
                            }
                        }
                    }
                },
            }
            offsets.push(bytes.len());
        }
        if vocab.model == VocabKind::SentencePiece {
            for b in 0..=255u8 {
                byte_ids[usize::from(b)] = by_text.get(&vocab.tokens, &format!("<0x{b:02X}>"));
            }
        }
        let mut specials: Vec<u32> = (0..n)
            .filter(|&id| {
                matches!(
                    types[id],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !vocab.tokens[id].is_empty()
            })
            .map(|id| id as u32)
            .collect();
        specials.sort_by_key(|&id| std::cmp::Reverse(vocab.tokens[id as usize].len()));
        let special_trie = special::SpecialTrie::new(
            specials
                .iter()
                .map(|&id| (id, vocab.tokens[id as usize].as_str())),
        );
        let mut eog: Vec<u32> = [vocab.eos, vocab.eot, vocab.eom]
            .into_iter()
            .flatten()
            .collect();
        eog.extend(
            EOG_NAMES
                .iter()
                .filter_map(|name| by_text.get(&vocab.tokens, name)),
        );
        eog.sort_unstable();
        eog.dedup();
        Ok(Self {
            kind: vocab.model,
            tokens: vocab.tokens,
            types,
            scores: vocab.scores,
            by_text,
            bytes,
            offsets,
            specials,
            special_trie,
            bpe,
            byte_ids,
            bos: vocab.bos,
            eos: vocab.eos,
            unk: vocab.unk,
            add_bos: vocab.add_bos,
            add_eos: vocab.add_eos,
            add_space_prefix: vocab.add_space_prefix && vocab.model == VocabKind::SentencePiece,
            eog,
        })
    }

    /// Splits `text` on special tokens as llama.cpp does: longest special first, every
    /// occurrence. Control and unknown tokens only when `parse_special`; user-defined always.
    fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut frags = vec![Fragment::Text(text)];
        if text.is_empty() {
            return frags;
        }
        let mut present = Vec::new();
        self.special_trie.occurring(text, |id| present.push(id));
        if present.is_empty() {
            return frags;
        }
        present.sort_unstable();
        present.dedup();
        for &id in &self.specials {
            if present.binary_search(&id).is_err() {
                continue;
            }
            let ty = self.types[id as usize];
            if !parse_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            let special = self.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for frag in frags {
                let Fragment::Text(mut rest) = frag else {
                    next.push(frag);
                    continue;
                };
                while let Some(at) = rest.find(special) {
                    if at > 0 {
                        next.push(Fragment::Text(&rest[..at]));
                    }
                    next.push(Fragment::Token(id));
                    rest = &rest[at + special.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            frags = next;
        }
        frags
    }

    /// Tokenizes `text`. With `add_special`, prepends BOS and appends EOS as the vocabulary's
    /// `add_bos`/`add_eos` say (llama.cpp's `add_special`). With `parse_special`, control tokens
    /// written in the text (e.g. `<|eot_id|>`) become their single ids; otherwise they are
    /// tokenized as plain text. User-defined tokens are always matched, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special
            && self.add_bos
            && let Some(bos) = self.bos
        {
            out.push(bos);
        }
        let frags = self.partition(text, parse_special);
        match (&self.bpe, self.kind) {
            (Some(bpe), _) => {
                let mut pieces = Vec::new();
                for frag in frags {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(t) => {
                            pieces.clear();
                            pretok::split_llama3(t, &mut pieces);
                            for &(s, e) in &pieces {
                                bpe.encode_word(&t.as_bytes()[s..e], &mut out);
                            }
                        }
                    }
                }
            }
            _ => {
                let mut prev_special = true;
                for frag in frags {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(t) => {
                            let mut escaped = String::with_capacity(t.len() + 3);
                            if self.add_space_prefix && prev_special {
                                escaped.push('\u{2581}');
                            }
                            for c in t.chars() {
                                escaped.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm::encode(
                                &escaped,
                                &|piece| self.by_text.get(&self.tokens, piece),
                                &self.scores,
                                &self.byte_ids,
                                self.unk,
                                &mut out,
                            );
                            prev_special = false;
                        }
                    }
                }
            }
        }
        if add_special
            && self.add_eos
            && let Some(eos) = self.eos
        {
            out.push(eos);
        }
        out
    }

    /// The exact bytes of token `id`: byte-level unmapping for BPE, `▁` → space and `<0xNN>` →
    /// byte for SentencePiece; control, user-defined and unknown tokens give their text.
    pub fn token_bytes(&self, id: u32) -> Result<Cow<'_, [u8]>, TokenizerError> {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&s), Some(&e)) => Ok(Cow::Borrowed(&self.bytes[s..e])),
            _ => Err(TokenizerError::new(format!(
                "token id {id} is out of range (vocabulary size {})",
                self.tokens.len()
            ))),
        }
    }

    /// Whether decoding strips one leading space from the first token (SentencePiece with
    /// `add_space_prefix`, as llama.cpp does).
    fn strips_first_space(&self) -> bool {
        self.add_space_prefix
    }

    /// Decodes `ids` to text. Bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let b = self.token_bytes(id)?;
            let b: &[u8] = &b;
            let b = if i == 0 && self.strips_first_space() {
                b.strip_prefix(b" ").unwrap_or(b)
            } else {
                b
            };
            bytes.extend_from_slice(b);
        }
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The stored text of token `id` (byte-level form for BPE, `▁` for spaces for SentencePiece).
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of the token whose stored text is exactly `piece`.
    pub fn id(&self, piece: &str) -> Option<u32> {
        self.by_text.get(&self.tokens, piece)
    }

    /// The type of token `id`.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The vocabulary kind.
    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether generating `id` ends generation (EOS, EOT, EOM, or a token named `<|eot_id|>`,
    /// `<|eom_id|>`, `<end_of_turn>` or `<|im_end|>`).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, ascending.
    pub fn end_of_generation_ids(&self) -> Vec<u32> {
        self.eog.clone()
    }
}

/// Turns a stream of token ids into text, emitting only complete UTF-8 and holding back a
/// character split across tokens until its last byte arrives.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    started: bool,
}

impl StreamDecoder {
    /// A decoder at the start of a generation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds token `id`; returns the text that is now complete (possibly empty). Invalid byte
    /// sequences become U+FFFD.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        let bytes = tokenizer.token_bytes(id)?;
        let mut b: &[u8] = &bytes;
        if !self.started {
            self.started = true;
            if tokenizer.strips_first_space() {
                b = b.strip_prefix(b" ").unwrap_or(b);
            }
        }
        self.pending.extend_from_slice(b);
        let mut out = String::new();
        let mut consumed = 0;
        loop {
            let rest = &self.pending[consumed..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    consumed = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&rest[..valid]));
                    match e.error_len() {
                        None => {
                            consumed += valid;
                            break;
                        }
                        Some(len) => {
                            out.push('\u{FFFD}');
                            consumed += valid + len;
                        }
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        Ok(out)
    }

    /// Ends the stream: returns whatever is held back (an incomplete sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
