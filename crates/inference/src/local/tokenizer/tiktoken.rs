//! Building the GGUF-style Llama 3 vocabulary from Meta's tiktoken `tokenizer.model`.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::unicode::byte_map;
use super::{TokenizerError, Vocab, VocabKind};

/// The 256 special tokens that follow the ranked tokens, as in Hugging Face's Llama 3.1/3.2
/// `tokenizer.json` (and so in GGUFs converted from it). Meta's `llama-models` 0.3.0 instead names
/// 128005 `<|step_id|>` and 128011 `<|image|>` and numbers the reserved tokens from 2; the ids of
/// every token a text model uses are the same in both.
pub(crate) fn llama3_special_tokens() -> Vec<String> {
    let mut specials: Vec<String> = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|reserved_special_token_2|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let named = specials.len();
    specials.extend((0..256 - named).map(|i| format!("<|reserved_special_token_{}|>", i + 3)));
    specials
}

fn bad(line_no: usize, msg: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::new(format!("tiktoken tokenizer.model line {line_no}: {msg}"))
}

pub(crate) fn llama3_from_tiktoken(contents: &str) -> Result<Vocab, TokenizerError> {
    let mut ranked: Vec<Option<Vec<u8>>> = Vec::new();
    for (i, line) in contents.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(b64), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(
                line_no,
                format!("expected `<base64 bytes> <rank>`, got {line:?}"),
            ));
        };
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| bad(line_no, format!("invalid base64 {b64:?}: {e}")))?;
        if bytes.is_empty() {
            return Err(bad(line_no, "empty token"));
        }
        let rank: usize = rank
            .parse()
            .map_err(|_| bad(line_no, format!("invalid rank {rank:?}")))?;
        if rank >= 1 << 24 {
            return Err(bad(line_no, format!("rank {rank} is implausibly large")));
        }
        if ranked.len() <= rank {
            ranked.resize(rank + 1, None);
        }
        if ranked[rank].is_some() {
            return Err(bad(line_no, format!("rank {rank} appears twice")));
        }
        ranked[rank] = Some(bytes);
    }
    if ranked.is_empty() {
        return Err(TokenizerError::new("tiktoken tokenizer.model: no tokens"));
    }
    let mut tokens_bytes = Vec::with_capacity(ranked.len());
    for (rank, bytes) in ranked.into_iter().enumerate() {
        tokens_bytes.push(bytes.ok_or_else(|| {
            TokenizerError::new(format!("tiktoken tokenizer.model: rank {rank} is missing"))
        })?);
    }
    let mut rank_of: HashMap<&[u8], usize> = HashMap::with_capacity(tokens_bytes.len());
    for (rank, bytes) in tokens_bytes.iter().enumerate() {
        if rank_of.insert(bytes.as_slice(), rank).is_some() {
            return Err(TokenizerError::new(format!(
                "tiktoken tokenizer.model: token {bytes:?} has two ranks"
            )));
        }
    }
    let map = byte_map();
    let mut merges = Vec::new();
    let mut parts: Vec<(usize, usize)> = Vec::new();
    for (rank, bytes) in tokens_bytes.iter().enumerate() {
        if bytes.len() < 2 {
            continue;
        }
        // BPE the token's bytes using only lower ranks; two parts give the merge line.
        parts.clear();
        parts.extend((0..bytes.len()).map(|i| (i, i + 1)));
        loop {
            let mut best: Option<(usize, usize)> = None;
            for i in 0..parts.len() - 1 {
                if let Some(&r) = rank_of.get(&bytes[parts[i].0..parts[i + 1].1])
                    && r < rank
                    && best.is_none_or(|(br, _)| r < br)
                {
                    best = Some((r, i));
                }
            }
            let Some((_, i)) = best else { break };
            parts[i].1 = parts[i + 1].1;
            parts.remove(i + 1);
        }
        // A few tokens (e.g. ".:.:") are not reachable by merging lower ranks; they get no merge,
        // as in Hugging Face's converter, and are produced only when a whole pre-tokenized word
        // equals them.
        if parts.len() != 2 {
            continue;
        }
        merges.push(format!(
            "{} {}",
            map.encode(&bytes[parts[0].0..parts[0].1]),
            map.encode(&bytes[parts[1].0..parts[1].1])
        ));
    }
    let base = tokens_bytes.len();
    let mut tokens: Vec<String> = tokens_bytes.iter().map(|b| map.encode(b)).collect();
    tokens.extend(llama3_special_tokens());
    let mut token_types = vec![1; base];
    token_types.resize(tokens.len(), 3);
    let id = |offset: usize| u32::try_from(base + offset).ok();
    Ok(Vocab {
        model: VocabKind::Bpe,
        pre: Some("llama-bpe".to_owned()),
        tokens,
        scores: Vec::new(),
        token_types,
        merges,
        bos: id(0),
        // Instruct models end a turn with <|eot_id|>; base models with <|end_of_text|> (128001).
        eos: id(9),
        eot: id(9),
        eom: id(8),
        pad: None,
        unk: None,
        add_bos: true,
        add_eos: false,
        add_space_prefix: false,
    })
}
