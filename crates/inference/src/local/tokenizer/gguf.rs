//! Reading and writing the `tokenizer.ggml.*` GGUF metadata.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::{TokenizerError, Vocab, VocabKind};

pub(crate) const MODEL: &str = "tokenizer.ggml.model";
pub(crate) const PRE: &str = "tokenizer.ggml.pre";
pub(crate) const TOKENS: &str = "tokenizer.ggml.tokens";
pub(crate) const SCORES: &str = "tokenizer.ggml.scores";
pub(crate) const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub(crate) const MERGES: &str = "tokenizer.ggml.merges";
pub(crate) const BOS: &str = "tokenizer.ggml.bos_token_id";
pub(crate) const EOS: &str = "tokenizer.ggml.eos_token_id";
pub(crate) const EOT: &str = "tokenizer.ggml.eot_token_id";
pub(crate) const EOM: &str = "tokenizer.ggml.eom_token_id";
pub(crate) const PAD: &str = "tokenizer.ggml.padding_token_id";
pub(crate) const UNK: &str = "tokenizer.ggml.unknown_token_id";
pub(crate) const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
pub(crate) const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
pub(crate) const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::U8(_) => "u8",
        Value::I8(_) => "i8",
        Value::U16(_) => "u16",
        Value::I16(_) => "i16",
        Value::U32(_) => "u32",
        Value::I32(_) => "i32",
        Value::U64(_) => "u64",
        Value::I64(_) => "i64",
        Value::F32(_) => "f32",
        Value::F64(_) => "f64",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Array(_) => "array",
    }
}

fn ill_typed(key: &str, want: &str, got: &Value) -> TokenizerError {
    TokenizerError::new(format!(
        "GGUF key {key}: expected {want}, found {}",
        type_name(got)
    ))
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => i64::from(*x),
        Value::I8(x) => i64::from(*x),
        Value::U16(x) => i64::from(*x),
        Value::I16(x) => i64::from(*x),
        Value::U32(x) => i64::from(*x),
        Value::I32(x) => i64::from(*x),
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

type Meta = HashMap<String, Value>;

fn string<'a>(m: &'a Meta, key: &str) -> Result<Option<&'a str>, TokenizerError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ill_typed(key, "string", v)),
    }
}

fn array<'a>(m: &'a Meta, key: &str) -> Result<Option<&'a [Value]>, TokenizerError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(ill_typed(key, "array", v)),
    }
}

fn strings(m: &Meta, key: &str) -> Result<Option<Vec<String>>, TokenizerError> {
    let Some(items) = array(m, key)? else {
        return Ok(None);
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            v => Err(ill_typed(&format!("{key}[{i}]"), "string", v)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn id(m: &Meta, key: &str) -> Result<Option<u32>, TokenizerError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => {
            let n = as_i64(v).ok_or_else(|| ill_typed(key, "integer", v))?;
            // Some converters write -1 for "no such token".
            if n < 0 {
                return Ok(None);
            }
            u32::try_from(n).map(Some).map_err(|_| {
                TokenizerError::new(format!("GGUF key {key}: token id {n} is out of range"))
            })
        }
    }
}

fn boolean(m: &Meta, key: &str) -> Result<Option<bool>, TokenizerError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ill_typed(key, "bool", v)),
    }
}

pub(crate) fn from_gguf(m: &Meta) -> Result<Vocab, TokenizerError> {
    let model_name = string(m, MODEL)?
        .ok_or_else(|| TokenizerError::new(format!("GGUF metadata has no {MODEL}")))?;
    let model = match model_name {
        "gpt2" => VocabKind::Bpe,
        "llama" => VocabKind::SentencePiece,
        other => {
            return Err(TokenizerError::new(format!(
                "GGUF key {MODEL}: unsupported tokenizer model {other:?} (supported: \"gpt2\", \"llama\")"
            )));
        }
    };
    let pre = string(m, PRE)?.map(str::to_owned);
    let tokens = strings(m, TOKENS)?
        .ok_or_else(|| TokenizerError::new(format!("GGUF metadata has no {TOKENS}")))?;
    let scores = match array(m, SCORES)? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::F32(x) => Ok(*x),
                v => Err(ill_typed(&format!("{SCORES}[{i}]"), "f32", v)),
            })
            .collect::<Result<_, _>>()?,
    };
    let token_types = match array(m, TOKEN_TYPE)? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                as_i64(v)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| ill_typed(&format!("{TOKEN_TYPE}[{i}]"), "i32", v))
            })
            .collect::<Result<_, _>>()?,
    };
    let merges = strings(m, MERGES)?.unwrap_or_default();
    let is_llama3 = matches!(pre.as_deref(), Some("llama-bpe" | "llama3" | "llama-v3"));
    let (default_bos, default_space) = match model {
        VocabKind::SentencePiece => (true, true),
        VocabKind::Bpe => (is_llama3, false),
    };
    Ok(Vocab {
        model,
        pre,
        tokens,
        scores,
        token_types,
        merges,
        bos: id(m, BOS)?,
        eos: id(m, EOS)?,
        eot: id(m, EOT)?,
        eom: id(m, EOM)?,
        pad: id(m, PAD)?,
        unk: id(m, UNK)?,
        add_bos: boolean(m, ADD_BOS)?.unwrap_or(default_bos),
        add_eos: boolean(m, ADD_EOS)?.unwrap_or(false),
        add_space_prefix: boolean(m, ADD_SPACE_PREFIX)?.unwrap_or(default_space),
    })
}

pub(crate) fn to_gguf(v: &Vocab) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut put = |k: &str, val: Value| out.push((k.to_owned(), val));
    let model = match v.model {
        VocabKind::Bpe => "gpt2",
        VocabKind::SentencePiece => "llama",
    };
    put(MODEL, Value::String(model.to_owned()));
    if let Some(pre) = &v.pre {
        put(PRE, Value::String(pre.clone()));
    }
    put(
        TOKENS,
        Value::Array(v.tokens.iter().cloned().map(Value::String).collect()),
    );
    if !v.scores.is_empty() {
        put(
            SCORES,
            Value::Array(v.scores.iter().copied().map(Value::F32).collect()),
        );
    }
    if !v.token_types.is_empty() {
        put(
            TOKEN_TYPE,
            Value::Array(v.token_types.iter().copied().map(Value::I32).collect()),
        );
    }
    if !v.merges.is_empty() {
        put(
            MERGES,
            Value::Array(v.merges.iter().cloned().map(Value::String).collect()),
        );
    }
    for (key, value) in [
        (BOS, v.bos),
        (EOS, v.eos),
        (EOT, v.eot),
        (EOM, v.eom),
        (PAD, v.pad),
        (UNK, v.unk),
    ] {
        if let Some(id) = value {
            put(key, Value::U32(id));
        }
    }
    put(ADD_BOS, Value::Bool(v.add_bos));
    put(ADD_EOS, Value::Bool(v.add_eos));
    put(ADD_SPACE_PREFIX, Value::Bool(v.add_space_prefix));
    out
}
