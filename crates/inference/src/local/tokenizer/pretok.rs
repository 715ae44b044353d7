//! The Llama 3 pre-tokenizer, hand-written: splits text exactly as the pattern
//! `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! does with leftmost-first alternation.

use super::unicode::{is_letter, is_number, is_space};

fn char_at(s: &str, pos: usize) -> Option<char> {
    s.get(pos..).and_then(|t| t.chars().next())
}

fn skip_while(s: &str, mut pos: usize, pred: impl Fn(char) -> bool) -> usize {
    while let Some(c) = char_at(s, pos) {
        if !pred(c) {
            break;
        }
        pos += c.len_utf8();
    }
    pos
}

fn is_other(c: char) -> bool {
    !is_space(c) && !is_letter(c) && !is_number(c)
}

/// Case-insensitive match of one ASCII letter as the regex engine does it (Unicode simple case
/// folding: `s` also matches U+017F LATIN SMALL LETTER LONG S).
fn eq_ci(c: char, lower: char) -> bool {
    c.to_ascii_lowercase() == lower || (lower == 's' && c == '\u{17F}')
}

/// Length in bytes of a contraction suffix (`s`, `t`, `re`, `ve`, `m`, `ll`, `d`) at `pos`.
fn contraction_len(s: &str, pos: usize) -> Option<usize> {
    let c1 = char_at(s, pos)?;
    let p2 = pos + c1.len_utf8();
    if eq_ci(c1, 's') || eq_ci(c1, 't') || eq_ci(c1, 'm') || eq_ci(c1, 'd') {
        return Some(c1.len_utf8());
    }
    let c2 = char_at(s, p2)?;
    let two = c1.len_utf8() + c2.len_utf8();
    if (eq_ci(c1, 'r') && eq_ci(c2, 'e'))
        || (eq_ci(c1, 'v') && eq_ci(c2, 'e'))
        || (eq_ci(c1, 'l') && eq_ci(c2, 'l'))
    {
        return Some(two);
    }
    None
}

/// End (byte offset) of the piece starting at `start`; `start` must be a char boundary before the end.
fn next_piece(s: &str, start: usize) -> usize {
    let Some(c0) = char_at(s, start) else {
        return s.len();
    };
    let p1 = start + c0.len_utf8();
    let c1 = char_at(s, p1);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c0 == '\''
        && let Some(len) = contraction_len(s, p1)
    {
        return p1 + len;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if is_letter(c0) {
        return skip_while(s, p1, is_letter);
    }
    if c0 != '\r'
        && c0 != '\n'
        && !is_number(c0)
        && let Some(c1) = c1
        && is_letter(c1)
    {
        return skip_while(s, p1 + c1.len_utf8(), is_letter);
    }
    // \p{N}{1,3}
    if is_number(c0) {
        let mut end = p1;
        for _ in 0..2 {
            match char_at(s, end) {
                Some(c) if is_number(c) => end += c.len_utf8(),
                _ => break,
            }
        }
        return end;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let (p, c) = if c0 == ' ' {
        (p1, c1)
    } else {
        (start, Some(c0))
    };
    if let Some(c) = c
        && is_other(c)
    {
        let end = skip_while(s, p, is_other);
        return skip_while(s, end, |c| c == '\r' || c == '\n');
    }
    // Here c0 is whitespace.
    let ws_end = skip_while(s, start, is_space);
    // \s*[\r\n]+
    if let Some(i) = s.get(start..ws_end).and_then(|w| w.rfind(['\r', '\n'])) {
        return start + i + 1;
    }
    // \s+(?!\S)
    if ws_end == s.len() {
        return ws_end;
    }
    let last = s
        .get(start..ws_end)
        .and_then(|w| w.char_indices().next_back())
        .map_or(ws_end, |(i, _)| start + i);
    if last > start {
        return last;
    }
    // \s+
    ws_end.max(p1)
}

/// Splits `text` into pre-tokenizer pieces, appending `(start, end)` byte ranges to `out`.
pub(crate) fn split_llama3(text: &str, out: &mut Vec<(usize, usize)>) {
    let mut pos = 0;
    while pos < text.len() {
        let end = next_piece(text, pos);
        let end = if end > pos { end } else { text.len() };
        out.push((pos, end));
        pos = end;
    }
}
