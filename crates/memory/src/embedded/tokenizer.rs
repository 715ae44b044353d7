//! The keyword tokenizer: Unicode words (UAX #29), lowercased.
//!
//! tantivy's default tokenizer splits on anything not alphanumeric, so a line of Chinese or Thai
//! becomes one token and can never match a query word. Unicode word boundaries split ideographs
//! and Southeast Asian scripts into single characters instead, which BM25 can match.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_segmentation::UnicodeSegmentation;

/// The name it is registered under in each index.
pub const NAME: &str = "corral_words";

/// Longest token kept, in bytes; longer "words" (base64, hashes) are dropped from the index.
const MAX_TOKEN_BYTES: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct WordTokenizer;

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = Words;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Words {
        let mut tokens = Vec::new();
        for (offset, word) in text.unicode_word_indices() {
            if word.len() > MAX_TOKEN_BYTES {
                continue;
            }
            tokens.push(Token {
                offset_from: offset,
                offset_to: offset + word.len(),
                position: tokens.len(),
                text: word.to_lowercase(),
                position_length: 1,
            });
        }
        Words {
            tokens,
            next: 0,
            current: Token::default(),
        }
    }
}

/// The words of one text (collected up front: chunks are short).
#[derive(Debug)]
pub struct Words {
    tokens: Vec<Token>,
    next: usize,
    current: Token,
}

impl TokenStream for Words {
    fn advance(&mut self) -> bool {
        match self.tokens.get_mut(self.next) {
            Some(token) => {
                self.current = std::mem::take(token);
                self.next += 1;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

/// The words of a query, as the index holds them.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut tokenizer = WordTokenizer;
    let mut stream = tokenizer.token_stream(text);
    let mut terms = Vec::new();
    while stream.advance() {
        let term = std::mem::take(&mut stream.token_mut().text);
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_unicode_words_lowercased() {
        assert_eq!(
            query_terms("Grüße aus KÖLN: ZX-4471, can't stop."),
            ["grüße", "aus", "köln", "zx", "4471", "can't", "stop"]
        );
        // Ideographs and Thai split into characters that a query can match.
        assert_eq!(query_terms("東京都"), ["東", "京", "都"]);
        assert!(query_terms("สวัสดีครับ").len() > 1);
        assert!(query_terms(" \n\t— ").is_empty());
        assert!(
            query_terms(&"x".repeat(100)).is_empty(),
            "overlong tokens dropped"
        );
    }
}
