use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file;
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Golden {
    text: String,
    add_special: bool,
    parse_special: bool,
    ids: Vec<u32>,
}

fn golden(name: &str) -> Vec<Golden> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/tokenizer")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn model_file(rel: &str) -> PathBuf {
    let cache = std::env::var_os("CORRAL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache/corral")
        });
    let path = cache.join("models").join(rel);
    assert!(
        path.exists(),
        "test model file {} is missing: run scripts/fetch-test-models.sh",
        path.display()
    );
    path
}

fn llama3_vocab() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| {
        let path = model_file("llama3/tokenizer.model");
        let text = std::fs::read_to_string(&path).expect("read tokenizer.model");
        Vocab::llama3_from_tiktoken(&text).expect("llama3 vocab")
    })
}

fn llama3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::new(llama3_vocab().clone()).expect("llama3 tokenizer"))
}

fn gemma3_metadata() -> HashMap<String, gguf_file::Value> {
    let path = model_file("gemma-3-270m-q4_k_m.gguf");
    let mut f = std::fs::File::open(&path).expect("open gguf");
    gguf_file::Content::read(&mut f)
        .expect("read gguf")
        .metadata
}

fn gemma3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        Tokenizer::new(Vocab::from_gguf(&gemma3_metadata()).expect("vocab"))
            .expect("gemma3 tokenizer")
    })
}

/// Compares every golden entry; returns the number checked.
fn check_golden(tok: &Tokenizer, file: &str) -> usize {
    let entries = golden(file);
    let mut failures = Vec::new();
    for g in &entries {
        let ids = tok.encode(&g.text, g.add_special, g.parse_special);
        if ids != g.ids {
            failures.push(format!(
                "text {:?} (add_special {}, parse_special {}):\n  want {:?}\n  got  {:?}",
                g.text, g.add_special, g.parse_special, g.ids, ids
            ));
        }
        if !g.add_special {
            let back = tok.decode(&ids).expect("decode");
            if back != g.text {
                failures.push(format!("round trip of {:?} gave {back:?}", g.text));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    entries.len()
}

#[test]
fn llama3_matches_tiktoken() {
    let n = check_golden(llama3(), "llama3.json");
    assert!(n >= 60);
}

#[test]
fn llama3_special_tokens_and_flags() {
    let t = llama3();
    assert_eq!(t.vocab_size(), 128_256);
    assert_eq!(t.id("<|begin_of_text|>"), Some(128_000));
    assert_eq!(t.id("<|reserved_special_token_2|>"), Some(128_005));
    assert_eq!(t.id("<|python_tag|>"), Some(128_010));
    assert_eq!(t.id("<|reserved_special_token_3|>"), Some(128_011));
    assert_eq!(t.id("<|reserved_special_token_247|>"), Some(128_255));
    assert_eq!(t.bos(), Some(128_000));
    assert_eq!(t.eos(), Some(128_009));
    assert_eq!(t.end_of_generation_ids(), vec![128_008, 128_009]);
    assert!(t.is_end_of_generation(128_009));
    assert!(!t.is_end_of_generation(128_001));
    assert_eq!(t.encode("Hi", true, true), vec![128_000, 13347]);
    assert_eq!(
        t.decode(&[128_000, 13347]).expect("should succeed"),
        "<|begin_of_text|>Hi"
    );
    assert_eq!(
        t.token_bytes(128_009).expect("should succeed").as_ref(),
        b"<|eot_id|>"
    );
}

#[test]
fn llama3_survives_gguf_round_trip() {
    let vocab = llama3_vocab();
    let entries = vocab.to_gguf();
    let dir = tempfile::tempdir().expect("should succeed");
    let path = dir.path().join("llama3-vocab.gguf");
    {
        let mut f = std::fs::File::create(&path).expect("should succeed");
        let meta: Vec<(&str, &gguf_file::Value)> =
            entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut f, &meta, &[]).expect("should succeed");
    }
    let mut f = std::fs::File::open(&path).expect("should succeed");
    let content = gguf_file::Content::read(&mut f).expect("should succeed");
    let back = Vocab::from_gguf(&content.metadata).expect("should succeed");
    assert_eq!(&back, vocab);
    let tok = Tokenizer::new(back).expect("should succeed");
    check_golden(&tok, "llama3.json");
}

#[test]
fn gemma3_matches_llama_cpp() {
    let n = check_golden(gemma3(), "gemma3.json");
    assert!(n >= 60);
}

#[test]
fn gemma3_flags_and_end_of_generation() {
    let t = gemma3();
    assert_eq!(t.kind(), VocabKind::SentencePiece);
    assert_eq!(t.bos(), Some(2));
    assert_eq!(t.eos(), Some(1));
    let eot = t.id("<end_of_turn>").expect("should succeed");
    assert!(t.is_end_of_generation(eot));
    assert!(t.is_end_of_generation(1));
    assert_eq!(t.end_of_generation_ids(), vec![1, eot]);
    assert_eq!(t.token_type(eot), Some(TokenType::Control));
    // Byte fallback tokens decode to their byte.
    let b = t.id("<0x41>").expect("should succeed");
    assert_eq!(t.token_bytes(b).expect("should succeed").as_ref(), b"A");
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let t = llama3();
    // "😀" is four bytes; the byte-level tokens for its bytes split it across ids.
    let map = unicode::byte_map();
    let ids: Vec<u32> = "😀"
        .bytes()
        .map(|b| t.id(&map.char_of(b).to_string()).expect("should succeed"))
        .collect();
    assert_eq!(ids.len(), 4);
    let mut d = StreamDecoder::new();
    let hi = t.id("Hi").expect("should succeed");
    assert_eq!(d.push(t, hi).expect("should succeed"), "Hi");
    for &id in &ids[..3] {
        assert_eq!(d.push(t, id).expect("should succeed"), "");
    }
    assert_eq!(d.push(t, ids[3]).expect("should succeed"), "😀");
    // An incomplete tail at the end becomes U+FFFD.
    assert_eq!(d.push(t, ids[0]).expect("should succeed"), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    // An invalid byte in the middle is replaced and the stream continues.
    let mut d = StreamDecoder::new();
    let cont = t
        .id(&map.char_of(0x80).to_string())
        .expect("should succeed");
    assert_eq!(d.push(t, cont).expect("should succeed"), "\u{FFFD}");
    assert_eq!(d.push(t, hi).expect("should succeed"), "Hi");
    // Out-of-range ids are errors.
    assert!(d.push(t, 1_000_000).is_err());
}

#[test]
fn stream_decoder_matches_decode_on_gemma() {
    let t = gemma3();
    let text = "Thai ภาษาไทย, emoji 👨‍👩‍👧‍👦 and <start_of_turn>model\n";
    let ids = t.encode(text, false, true);
    let mut d = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &ids {
        streamed.push_str(&d.push(t, id).expect("should succeed"));
    }
    streamed.push_str(&d.finish());
    assert_eq!(streamed, text);
    assert_eq!(t.decode(&ids).expect("should succeed"), text);
}

fn tiny_spm(add_space_prefix: bool) -> Vocab {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("i", -2.0),
        ("hi", -1.5),
        ("▁hi", -0.5),
        ("<t>", 0.0),
    ] {
        tokens.push(t.into());
        types.push(if t == "<t>" { 4 } else { 1 });
        scores.push(s);
    }
    Vocab {
        model: VocabKind::SentencePiece,
        pre: None,
        tokens,
        scores,
        token_types: types,
        merges: Vec::new(),
        bos: Some(1),
        eos: Some(2),
        eot: None,
        eom: None,
        pad: None,
        unk: Some(0),
        add_bos: true,
        add_eos: true,
        add_space_prefix,
    }
}

#[test]
fn spm_space_prefix_byte_fallback_and_user_defined() {
    let t = Tokenizer::new(tiny_spm(true)).expect("should succeed");
    let id = |s: &str| t.id(s).expect("should succeed");
    // Space prefix, merge by score, byte fallback for "é" (0xC3 0xA9), BOS/EOS with add_special.
    let ids = t.encode("hi é", true, false);
    assert_eq!(
        ids,
        vec![1, id("▁hi"), id("▁"), id("<0xC3>"), id("<0xA9>"), 2]
    );
    assert_eq!(
        t.decode(&ids[1..ids.len() - 1]).expect("should succeed"),
        "hi é"
    );
    // User-defined tokens split even without parse_special; a space prefix follows them.
    let ids = t.encode("hi<t>hi", false, false);
    assert_eq!(ids, vec![id("▁hi"), id("<t>"), id("▁hi")]);
    // Control tokens only with parse_special.
    assert_eq!(t.encode("<s>", false, true), vec![1]);
    assert_ne!(t.encode("<s>", false, false), vec![1]);
    let t = Tokenizer::new(tiny_spm(false)).expect("should succeed");
    assert_eq!(
        t.encode("hi", false, false),
        vec![t.id("hi").expect("should succeed")]
    );
}

#[test]
fn invalid_vocabularies_are_errors() {
    let err = |v: Vocab| Tokenizer::new(v).expect_err("an error").to_string();
    let mut v = tiny_spm(true);
    v.bos = Some(10_000);
    assert!(
        err(v).contains("bos token id 10000 is out of range"),
        "message"
    );
    let mut v = tiny_spm(true);
    v.scores.pop();
    assert!(err(v).contains("scores"));
    let mut v = tiny_spm(true);
    v.token_types[5] = 9;
    assert!(err(v).contains("invalid type 9"));
    let mut v = tiny_spm(true);
    v.token_types[5] = 6;
    v.tokens[5] = "<0xZZ>".into();
    assert!(err(v).contains("<0xNN>"));
    let mut v = tiny_spm(true);
    v.tokens.clear();
    v.scores.clear();
    v.token_types.clear();
    assert!(err(v).contains("no tokens"));
    let bpe = Vocab {
        model: VocabKind::Bpe,
        pre: Some("llama-bpe".into()),
        tokens: vec!["a".into(), "b".into(), "ab".into()],
        scores: Vec::new(),
        token_types: Vec::new(),
        merges: vec!["a b".into(), "ab".into()],
        bos: None,
        eos: None,
        eot: None,
        eom: None,
        pad: None,
        unk: None,
        add_bos: false,
        add_eos: false,
        add_space_prefix: false,
    };
    let e = err(bpe.clone());
    assert!(
        e.contains("tokenizer.ggml.merges[1]") && e.contains("\"ab\""),
        "{e}"
    );
    let mut v = bpe.clone();
    v.pre = Some("qwen2".into());
    assert!(err(v).contains("unsupported BPE pre-tokenizer"));
    let mut v = bpe;
    v.merges.pop();
    let t = Tokenizer::new(v).expect("should succeed");
    assert_eq!(t.encode("abba", false, false), vec![2, 1, 0]);
    assert!(t.token_bytes(3).is_err());
    assert!(
        t.decode(&[0, 7])
            .expect_err("should fail")
            .to_string()
            .contains("token id 7")
    );
}

#[test]
fn gguf_errors_name_the_key() {
    use gguf_file::Value;
    let mut m = HashMap::new();
    assert!(
        Vocab::from_gguf(&m)
            .expect_err("should fail")
            .to_string()
            .contains("tokenizer.ggml.model")
    );
    m.insert(
        "tokenizer.ggml.model".to_owned(),
        Value::String("bert".into()),
    );
    assert!(
        Vocab::from_gguf(&m)
            .expect_err("should fail")
            .to_string()
            .contains("\"bert\"")
    );
    m.insert(
        "tokenizer.ggml.model".to_owned(),
        Value::String("llama".into()),
    );
    assert!(
        Vocab::from_gguf(&m)
            .expect_err("should fail")
            .to_string()
            .contains("tokenizer.ggml.tokens")
    );
    m.insert(
        "tokenizer.ggml.tokens".to_owned(),
        Value::Array(vec![Value::String("a".into()), Value::U32(1)]),
    );
    assert!(
        Vocab::from_gguf(&m)
            .expect_err("should fail")
            .to_string()
            .contains("tokenizer.ggml.tokens[1]")
    );
    m.insert(
        "tokenizer.ggml.tokens".to_owned(),
        Value::Array(vec![Value::String("a".into())]),
    );
    m.insert(
        "tokenizer.ggml.bos_token_id".to_owned(),
        Value::String("1".into()),
    );
    let e = Vocab::from_gguf(&m).expect_err("should fail").to_string();
    assert!(
        e.contains("tokenizer.ggml.bos_token_id") && e.contains("integer"),
        "{e}"
    );
    m.remove("tokenizer.ggml.bos_token_id");
    let v = Vocab::from_gguf(&m).expect("should succeed");
    assert!(v.add_bos && v.add_space_prefix && !v.add_eos);
}

#[test]
fn tiktoken_errors_name_the_line() {
    let e = Vocab::llama3_from_tiktoken("IQ== 0\nnot-base64! 1\n")
        .expect_err("should fail")
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    let e = Vocab::llama3_from_tiktoken("IQ== 0\nIg== x\n")
        .expect_err("should fail")
        .to_string();
    assert!(e.contains("line 2") && e.contains("rank"), "{e}");
    let e = Vocab::llama3_from_tiktoken("IQ== 0\nIg== 2\n")
        .expect_err("should fail")
        .to_string();
    assert!(e.contains("rank 1 is missing"), "{e}");
    assert!(Vocab::llama3_from_tiktoken("").is_err());
}

#[test]
fn pre_tokenizer_splits_like_the_regex() {
    let split = |s: &str| {
        let mut v = Vec::new();
        pretok::split_llama3(s, &mut v);
        v.iter()
            .map(|&(a, b)| s[a..b].to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(split("I'M they'LL"), ["I", "'M", " they", "'LL"]);
    assert_eq!(split("a  b"), ["a", " ", " b"]);
    assert_eq!(split("x   \n\n y"), ["x", "   \n\n", " y"]);
    assert_eq!(split("12345"), ["123", "45"]);
    assert_eq!(split("end  "), ["end", "  "]);
    assert_eq!(split(" ?!\n\nz"), [" ?!\n\n", "z"]);
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
}

#[test]
#[ignore = "throughput figure; run with --release -- --ignored --nocapture"]
fn throughput() {
    let texts: Vec<String> = golden("llama3.json").into_iter().map(|g| g.text).collect();
    let mut corpus = String::new();
    while corpus.len() < 64 * 1024 {
        for t in &texts {
            corpus.push_str(t);
            corpus.push('\n');
        }
    }
    for (name, tok) in [("llama3", llama3()), ("gemma3", gemma3())] {
        let start = std::time::Instant::now();
        let mut n = 0;
        let rounds = 20;
        for _ in 0..rounds {
            n += tok.encode(&corpus, false, true).len();
        }
        let secs = start.elapsed().as_secs_f64();
        let mb = (corpus.len() * rounds) as f64 / 1e6;
        println!(
            "{name}: {:.1} MB/s ({n} tokens, {:.1} KB corpus)",
            mb / secs,
            corpus.len() as f64 / 1e3
        );
    }
}
