//! SentencePiece-style bigram merging by score (llama.cpp's `llm_tokenizer_spm` algorithm).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

const NONE: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; on equal scores the leftmost pair first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes whitespace-escaped `text` (spaces already replaced by U+2581), appending ids to `out`.
pub(crate) fn encode(
    text: &str,
    id_of: &dyn Fn(&str) -> Option<u32>,
    scores: &[f32],
    byte_ids: &[Option<u32>; 256],
    unk: Option<u32>,
    out: &mut Vec<u32>,
) {
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let idx = syms.len();
        let end = i + c.len_utf8();
        syms.push(Sym {
            start: i,
            len: c.len_utf8(),
            prev: if idx == 0 { NONE } else { idx - 1 },
            next: if end == text.len() { NONE } else { idx + 1 },
        });
    }
    if syms.is_empty() {
        return;
    }
    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], left: usize, right: usize| {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (syms[left], syms[right]);
        let Some(piece) = text.get(l.start..l.start + l.len + r.len) else {
            return;
        };
        if let Some(id) = id_of(piece) {
            let score = scores.get(id as usize).copied().unwrap_or(0.0);
            heap.push(Bigram {
                score,
                left,
                right,
                size: piece.len(),
            });
        }
    };
    for i in 1..syms.len() {
        try_add(&mut heap, &syms, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (syms[b.left], syms[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        syms[b.left].len += r.len;
        syms[b.right].len = 0;
        syms[b.left].next = r.next;
        if r.next != NONE {
            syms[r.next].prev = b.left;
        }
        try_add(&mut heap, &syms, l.prev, b.left);
        try_add(&mut heap, &syms, b.left, r.next);
    }
    let mut i = 0;
    while i != NONE {
        let s = syms[i];
        let piece = text.get(s.start..s.start + s.len).unwrap_or("");
        match id_of(piece) {
            Some(id) => out.push(id),
            None => {
                for &byte in piece.as_bytes() {
                    if let Some(id) = byte_ids[usize::from(byte)].or(unk) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
