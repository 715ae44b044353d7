//! Character classes for the pre-tokenizer and the GPT-2 byte ↔ unicode mapping.
//!
//! `\p{L}`, `\p{N}` and `\s` are taken from `regex-syntax`'s Unicode tables, the same tables the
//! reference tokenizers (tiktoken's regex engine) use, so that classification agrees exactly.

use std::cmp::Ordering;
use std::sync::OnceLock;

type Ranges = Vec<(u32, u32)>;

fn class_ranges(pattern: &str) -> Ranges {
    use regex_syntax::hir::{Class, HirKind};
    match regex_syntax::Parser::new().parse(pattern) {
        Ok(hir) => match hir.kind() {
            HirKind::Class(Class::Unicode(class)) => class
                .ranges()
                .iter()
                .map(|r| (u32::from(r.start()), u32::from(r.end())))
                .collect(),
            _ => Vec::new(),
        },
        Err(_) => Vec::new(),
    }
}

fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let cp = u32::from(c);
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                Ordering::Less
            } else if lo > cp {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

static LETTERS: OnceLock<Ranges> = OnceLock::new();
static NUMBERS: OnceLock<Ranges> = OnceLock::new();
static SPACES: OnceLock<Ranges> = OnceLock::new();

/// `\p{L}`.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    in_ranges(LETTERS.get_or_init(|| class_ranges(r"\p{L}")), c)
}

/// `\p{N}`.
pub(crate) fn is_number(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    in_ranges(NUMBERS.get_or_init(|| class_ranges(r"\p{N}")), c)
}

/// `\s` (Unicode `White_Space`).
pub(crate) fn is_space(c: char) -> bool {
    if c.is_ascii() {
        return matches!(c, '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ');
    }
    in_ranges(SPACES.get_or_init(|| class_ranges(r"\s")), c)
}

/// GPT-2's reversible byte → printable-character mapping used by byte-level BPE vocabularies.
pub(crate) struct ByteMap {
    to_char: [char; 256],
    /// Indexed by code point (all mapped characters are below 324).
    from_char: Vec<Option<u8>>,
}

impl ByteMap {
    pub(crate) fn new() -> Self {
        let mut to_char = ['\0'; 256];
        let mut from_char = vec![None; 324];
        let mut next = 256u32;
        for b in 0..=255u8 {
            let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
            let cp = if printable {
                u32::from(b)
            } else {
                let cp = next;
                next += 1;
                cp
            };
            let c = char::from_u32(cp).unwrap_or('\0');
            to_char[usize::from(b)] = c;
            if let Some(slot) = from_char.get_mut(cp as usize) {
                *slot = Some(b);
            }
        }
        Self { to_char, from_char }
    }

    /// The character standing for byte `b`.
    pub(crate) fn char_of(&self, b: u8) -> char {
        self.to_char[usize::from(b)]
    }

    /// The byte a mapped character stands for, if it is one.
    pub(crate) fn byte_of(&self, c: char) -> Option<u8> {
        self.from_char.get(c as usize).copied().flatten()
    }

    /// Maps raw bytes to their byte-level string form.
    pub(crate) fn encode(&self, bytes: &[u8]) -> String {
        bytes.iter().map(|&b| self.char_of(b)).collect()
    }

    /// Maps a byte-level string back to bytes; `None` if a character is outside the alphabet.
    pub(crate) fn decode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars().map(|c| self.byte_of(c)).collect()
    }
}

pub(crate) fn byte_map() -> &'static ByteMap {
    static MAP: OnceLock<ByteMap> = OnceLock::new();
    MAP.get_or_init(ByteMap::new)
}
