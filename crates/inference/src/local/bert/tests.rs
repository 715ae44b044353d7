//! Checks against real sentence-transformers output (`tests/golden/minilm/reference.json`, made by
//! `scripts/golden/minilm_reference.py`) and error handling on broken model directories.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn model_dir() -> PathBuf {
    let cache = std::env::var_os("CORRAL_CACHE").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/corral")
        },
        PathBuf::from,
    );
    let dir = cache.join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists() && dir.join("tokenizer.json").exists(),
        "{}: all-MiniLM-L6-v2 is missing; run scripts/fetch-test-models.sh",
        dir.display()
    );
    dir
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/minilm/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/golden/minilm_reference.py",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("reference.json parses")
}

fn load(batch_size: usize) -> LocalEmbedder {
    LocalEmbedder::load(
        &model_dir(),
        LocalEmbedderOptions {
            batch_size,
            ..LocalEmbedderOptions::default()
        },
    )
    .expect("model loads")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn token_ids_match_hugging_face() {
    let embedder = load(32);
    let reference = reference();
    let mut failures = Vec::new();
    for (sentence, expected) in reference.sentences.iter().zip(&reference.input_ids) {
        let got = embedder.encode(sentence).ids;
        if &got != expected {
            failures.push(format!(
                "{sentence:?}\n  ours: {got:?}\n  HF:   {expected:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "token ids differ:\n{}",
        failures.join("\n")
    );
    assert!(
        reference
            .input_ids
            .iter()
            .any(|ids| ids.len() == embedder.max_length()),
        "the reference should exercise truncation"
    );
}

#[test]
fn embeddings_match_sentence_transformers() {
    let embedder = load(32);
    let reference = reference();
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let got = embedder.embed_batch(&texts).expect("embeds");
    assert_eq!(got.len(), reference.embeddings.len());
    let mut worst_cos = 0.0f64;
    let mut worst_abs = 0.0f32;
    for ((sentence, ours), theirs) in texts.iter().zip(&got).zip(&reference.embeddings) {
        assert_eq!(ours.len(), 384);
        let distance = 1.0 - cosine(ours, theirs);
        let abs = max_abs_diff(ours, theirs);
        worst_cos = worst_cos.max(distance);
        worst_abs = worst_abs.max(abs);
        assert!(
            distance < 1e-4,
            "{sentence:?}: cosine distance {distance:e} (max abs diff {abs:e})"
        );
    }
    println!("worst cosine distance {worst_cos:e}, worst max abs diff {worst_abs:e}");
}

#[test]
fn batched_equals_one_at_a_time() {
    let embedder = load(32);
    let reference = reference();
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let batched = embedder.embed_batch(&texts).expect("embeds");
    for (text, expected) in texts.iter().zip(&batched) {
        let single = embedder.embed_batch(&[text]).expect("embeds");
        let diff = max_abs_diff(&single[0], expected);
        assert!(
            diff < 1e-5,
            "{text:?}: batch vs single max abs diff {diff:e}"
        );
    }
}

#[test]
fn async_embedder_matches_sync_and_reports_shape() {
    let embedder = load(4);
    assert_eq!(Embedder::dimension(&embedder), 384);
    assert_eq!(embedder.max_input_tokens(), 254);
    assert_eq!(embedder.pooling(), Pooling::Mean);
    assert!(embedder.normalizes());
    let inputs = vec!["first text".to_owned(), "the second one".to_owned()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let vectors = runtime
        .block_on(Embedder::embed(&embedder, &inputs))
        .expect("embeds");
    let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let sync = embedder.embed_batch(&texts).expect("embeds");
    assert_eq!(vectors, sync);
    assert!(
        runtime
            .block_on(Embedder::embed(&embedder, &[]))
            .expect("empty")
            .is_empty()
    );
}

#[test]
fn too_long_input_errors_when_truncation_is_off() {
    let embedder = LocalEmbedder::load(
        &model_dir(),
        LocalEmbedderOptions {
            truncate: false,
            max_length: Some(8),
            ..LocalEmbedderOptions::default()
        },
    )
    .expect("loads");
    let err = embedder
        .embed_batch(&[
            "short",
            "this sentence has quite a few more than six word pieces",
        ])
        .expect_err("too long");
    assert!(
        matches!(
            err,
            BertError::InputTooLong {
                index: 1,
                limit: 6,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        EmbedError::from(err),
        EmbedError::InputTooLong { .. }
    ));
}

/// A copy of the model directory whose files the test may break. Cleaned up on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("corral-bert-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("1_Pooling")).expect("mkdir");
        let src = model_dir();
        for file in [
            "config.json",
            "tokenizer.json",
            "modules.json",
            "sentence_bert_config.json",
            "1_Pooling/config.json",
        ] {
            std::fs::copy(src.join(file), dir.join(file)).expect("copy");
        }
        // A real copy, not a link: the tests overwrite it.
        std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors"))
            .expect("copy weights");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(dir: &Path) -> String {
    LocalEmbedder::load(dir, LocalEmbedderOptions::default())
        .expect_err("load fails")
        .to_string()
}

#[test]
fn missing_directory_is_named() {
    let message = load_err(Path::new("/nonexistent/corral/model"));
    assert!(message.contains("/nonexistent/corral/model"), "{message}");
    assert!(message.contains("not found"), "{message}");
}

#[test]
fn broken_files_are_named() {
    let scratch = ScratchDir::new("broken");
    let dir = &scratch.0;

    std::fs::write(dir.join("config.json"), "{ not json").expect("write");
    let message = load_err(dir);
    assert!(message.contains("config.json"), "{message}");

    std::fs::write(
        dir.join("config.json"),
        r#"{"hidden_size": "big", "num_hidden_layers": 6}"#,
    )
    .expect("write");
    let message = load_err(dir);
    assert!(message.contains("config.json: hidden_size"), "{message}");

    std::fs::copy(model_dir().join("config.json"), dir.join("config.json")).expect("copy");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("read"))
            .expect("json");
    config["num_hidden_layers"] = 7.into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    let message = load_err(dir);
    assert!(message.contains("encoder.layer.6"), "{message}");
    assert!(message.contains("model.safetensors"), "{message}");
    config["num_hidden_layers"] = 6.into();
    config["intermediate_size"] = 1000.into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    let message = load_err(dir);
    assert!(
        message.contains("encoder.layer.0.intermediate.dense.weight` has shape [1536, 384]"),
        "{message}"
    );
    config["intermediate_size"] = 1536.into();
    config["hidden_size"] = 768.into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    let message = load_err(dir);
    assert!(
        message.contains("1_Pooling/config.json: word_embedding_dimension"),
        "{message}"
    );
    std::fs::copy(model_dir().join("config.json"), dir.join("config.json")).expect("copy");

    let tokenizer = std::fs::read_to_string(dir.join("tokenizer.json")).expect("read");
    std::fs::write(
        dir.join("tokenizer.json"),
        tokenizer.replacen("\"BertPreTokenizer\"", "\"Metaspace\"", 1),
    )
    .expect("write");
    let message = load_err(dir);
    assert!(
        message.contains("tokenizer.json: pre_tokenizer.type: \"Metaspace\" is not supported"),
        "{message}"
    );
    std::fs::write(
        dir.join("tokenizer.json"),
        &tokenizer[..tokenizer.len() / 2],
    )
    .expect("write");
    let message = load_err(dir);
    assert!(message.contains("tokenizer.json"), "{message}");
    std::fs::write(dir.join("tokenizer.json"), &tokenizer).expect("write");

    std::fs::write(dir.join("model.safetensors"), b"garbage").expect("write");
    let message = load_err(dir);
    assert!(message.contains("model.safetensors"), "{message}");
    std::fs::remove_file(dir.join("model.safetensors")).expect("rm");
    let message = load_err(dir);
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn zero_batch_size_is_refused() {
    let err = LocalEmbedder::load(
        &model_dir(),
        LocalEmbedderOptions {
            batch_size: 0,
            ..LocalEmbedderOptions::default()
        },
    )
    .expect_err("refused");
    assert!(err.to_string().contains("batch_size"), "{err}");
}

/// `cargo test --release -- --ignored --nocapture throughput`: prints sentences/s and tokens/s.
#[test]
#[ignore = "prints a speed figure; run by hand"]
fn throughput() {
    let reference = reference();
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    for batch_size in [1, 32] {
        let embedder = load(batch_size);
        let tokens: usize = texts.iter().map(|t| embedder.encode(t).ids.len()).sum();
        embedder.embed_batch(&texts).expect("warm-up");
        let runs = 3;
        let start = Instant::now();
        for _ in 0..runs {
            embedder.embed_batch(&texts).expect("embeds");
        }
        let seconds = start.elapsed().as_secs_f64() / f64::from(runs);
        println!(
            "corral batch {batch_size:2}: {:8.1} sentences/s, {:9.1} tokens/s",
            texts.len() as f64 / seconds,
            tokens as f64 / seconds
        );
    }
}
