//! Byte-level BPE with merges by rank (llama.cpp's `llm_tokenizer_bpe` algorithm).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::TokenizerError;
use super::hash::FxHashMap;
use super::unicode::byte_map;

/// Merge tables for a byte-level BPE vocabulary.
pub(crate) struct Bpe {
    /// Token id of each single byte, if the vocabulary has one.
    byte_ids: [Option<u32>; 256],
    /// `(left id, right id)` → `(rank, merged id)`; merged id is `None` when the concatenation is
    /// not itself a token.
    merges: FxHashMap<(u32, u32), (u32, Option<u32>)>,
    /// Raw bytes → token id, for tokens whose text is in the byte-level alphabet.
    by_bytes: FxHashMap<Box<[u8]>, u32>,
    /// Emit a whole pre-tokenized word directly when it is a token (Llama 3 does this).
    ignore_merges: bool,
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    end: usize,
    id: Option<u32>,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

impl Bpe {
    pub(crate) fn new(
        tokens: &[String],
        merges: &[String],
        ignore_merges: bool,
    ) -> Result<Self, TokenizerError> {
        let map = byte_map();
        let mut by_text: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
        let mut by_bytes: FxHashMap<Box<[u8]>, u32> =
            FxHashMap::with_capacity_and_hasher(tokens.len(), Default::default());
        for (id, text) in tokens.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| TokenizerError::new("vocabulary too large"))?;
            by_text.insert(text.as_str(), id);
            if let Some(bytes) = map.decode(text) {
                by_bytes.insert(bytes.into_boxed_slice(), id);
            }
        }
        let mut byte_ids = [None; 256];
        for b in 0..=255u8 {
            let mut buf = [0u8; 4];
            byte_ids[usize::from(b)] = by_text.get(&*map.char_of(b).encode_utf8(&mut buf)).copied();
        }
        let mut table = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        for (rank, line) in merges.iter().enumerate() {
            let rank = u32::try_from(rank).map_err(|_| TokenizerError::new("too many merges"))?;
            // The separator is the first space after the first character (llama.cpp: find(' ', 1)).
            let split = line
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    TokenizerError::new(format!(
                        "tokenizer.ggml.merges[{rank}] = {line:?}: expected two tokens separated by a space"
                    ))
                })?;
            let (left, right) = (&line[..split], &line[split + 1..]);
            if right.is_empty() {
                return Err(TokenizerError::new(format!(
                    "tokenizer.ggml.merges[{rank}] = {line:?}: the right-hand token is empty"
                )));
            }
            // Merges of parts that are not tokens can never apply to token symbols: skip them.
            let (Some(&l), Some(&r)) = (by_text.get(left), by_text.get(right)) else {
                continue;
            };
            let merged = by_text.get(format!("{left}{right}").as_str()).copied();
            table.entry((l, r)).or_insert((rank, merged));
        }
        Ok(Self {
            byte_ids,
            merges: table,
            by_bytes,
            ignore_merges,
        })
    }

    /// Encodes one pre-tokenized word (raw bytes), appending token ids to `out`.
    pub(crate) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges
            && let Some(&id) = self.by_bytes.get(word)
        {
            out.push(id);
            return;
        }
        let n = word.len();
        let mut syms: Vec<Sym> = (0..n)
            .map(|i| Sym {
                start: i,
                end: i + 1,
                id: self.byte_ids[usize::from(word[i])],
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
            })
            .collect();
        // (rank, left index, combined length) — lowest rank first, then leftmost.
        let mut heap: BinaryHeap<Reverse<(u32, usize, usize)>> = BinaryHeap::new();
        let push =
            |heap: &mut BinaryHeap<Reverse<(u32, usize, usize)>>, syms: &[Sym], left: usize| {
                let Some(l) = syms.get(left) else { return };
                let Some(r) = syms.get(l.next) else { return };
                if let (Some(a), Some(b)) = (l.id, r.id)
                    && let Some(&(rank, _)) = self.merges.get(&(a, b))
                {
                    heap.push(Reverse((rank, left, r.end - l.start)));
                }
            };
        for i in 0..n.saturating_sub(1) {
            push(&mut heap, &syms, i);
        }
        while let Some(Reverse((_, left, len))) = heap.pop() {
            let l = syms[left];
            if l.end == l.start || l.next == NONE {
                continue;
            }
            let r = syms[l.next];
            if r.end == r.start || r.end - l.start != len {
                continue;
            }
            let (Some(a), Some(b)) = (l.id, r.id) else {
                continue;
            };
            let Some(&(_, merged)) = self.merges.get(&(a, b)) else {
                continue;
            };
            let right = l.next;
            syms[left].end = r.end;
            syms[left].id = merged;
            syms[left].next = r.next;
            syms[right].end = syms[right].start;
            if r.next != NONE {
                syms[r.next].prev = left;
            }
            if l.prev != NONE {
                push(&mut heap, &syms, l.prev);
            }
            push(&mut heap, &syms, left);
        }
        let mut i = 0;
        while i != NONE {
            let s = syms[i];
            match s.id {
                Some(id) => out.push(id),
                None => out.extend(
                    word[s.start..s.end]
                        .iter()
                        .filter_map(|&b| self.byte_ids[usize::from(b)]),
                ),
            }
            i = s.next;
        }
    }
}
