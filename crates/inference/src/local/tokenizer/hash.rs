//! A small, fast non-cryptographic hasher (the "Fx" multiply-rotate scheme) for the vocabulary
//! maps. Their keys come from the model file, and lookups never insert, so hash flooding from
//! input text is not a concern.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` using [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Token ids by their text. It holds only the ids and hashes the texts where the vocabulary
/// keeps them: a map keyed by owned strings held a second copy of every token text, which for
/// Gemma 3's 262k tokens came to some 24 MB with its 32-byte slots.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextIndex {
    table: hashbrown::HashTable<u32>,
}

fn hash_text(text: &str) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(text.as_bytes());
    hasher.finish()
}

impl TextIndex {
    /// The index of `tokens` (token `id` is `tokens[id]`); where two tokens share a text, the
    /// later id is the one found.
    pub(crate) fn new(tokens: &[String]) -> Self {
        let mut table = hashbrown::HashTable::with_capacity(tokens.len());
        let text_of = |id: u32| tokens.get(id as usize).map_or("", String::as_str);
        for (id, text) in tokens.iter().enumerate() {
            let id = id as u32; // the caller checked that the vocabulary fits in u32 ids
            let hash = hash_text(text);
            match table.find_mut(hash, |&other| text_of(other) == text) {
                Some(slot) => *slot = id,
                None => {
                    table.insert_unique(hash, id, |&other| hash_text(text_of(other)));
                }
            }
        }
        Self { table }
    }

    /// The id of the token of `tokens` (the vocabulary this index was built from) whose text is
    /// `text`.
    pub(crate) fn get(&self, tokens: &[String], text: &str) -> Option<u32> {
        self.table
            .find(hash_text(text), |&id| {
                tokens.get(id as usize).is_some_and(|t| t == text)
            })
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_token_and_nothing_else() {
        let tokens: Vec<String> = ["a", "b", "ab", "", "\u{2581}the", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let index = TextIndex::new(&tokens);
        assert_eq!(
            index.get(&tokens, "a"),
            Some(5),
            "the later of two equal texts"
        );
        assert_eq!(index.get(&tokens, "b"), Some(1));
        assert_eq!(index.get(&tokens, "ab"), Some(2));
        assert_eq!(index.get(&tokens, ""), Some(3));
        assert_eq!(index.get(&tokens, "\u{2581}the"), Some(4));
        assert_eq!(index.get(&tokens, "ba"), None);
        assert_eq!(TextIndex::default().get(&tokens, "a"), None);
    }
}
