//! The local-model commands as a user runs them, on the real Gemma 3 270M file and on a tiny
//! random-weight Llama written by `corral bench synth`.
#![cfg(feature = "local")]

use std::path::PathBuf;

use predicates::prelude::*;
use tempfile::TempDir;

mod support;

use support::{cache, corral};

fn model(relative: &str) -> PathBuf {
    let path = cache().join("models").join(relative);
    assert!(
        path.exists(),
        "no {} : run scripts/fetch-test-models.sh",
        path.display()
    );
    path
}

#[test]
fn tokenize_prints_llama_cpp_s_ids_and_pieces() {
    let dir = TempDir::new().expect("tempdir");
    let gemma = model("gemma-3-270m-q4_k_m.gguf");
    let text = "The capital city of France is called";
    corral(dir.path())
        .arg("tokenize")
        .arg("-m")
        .arg(&gemma)
        .arg(text)
        .assert()
        .success()
        .stdout("[818,5279,3207,529,7001,563,2760]\n");
    corral(dir.path())
        .args(["tokenize", "--bos", "--pieces", "-m"])
        .arg(&gemma)
        .arg("Hi<end_of_turn>")
        .assert()
        .success()
        .stdout("[\"<bos>\",\"Hi\",\"<end_of_turn>\"]\n");
}

#[test]
fn generate_runs_a_gguf_path_greedily() {
    let dir = TempDir::new().expect("tempdir");
    corral(dir.path())
        .args(["generate", "--temperature", "0", "--max-tokens", "3", "-m"])
        .arg(model("gemma-3-270m-q4_k_m.gguf"))
        .arg("The capital city of France is called")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(" Paris"));
}

#[test]
fn embed_runs_an_embedder_directory() {
    let dir = TempDir::new().expect("tempdir");
    let output = corral(dir.path())
        .args(["embed", "-m"])
        .arg(model("all-MiniLM-L6-v2"))
        .args(["first text", "second text"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let vectors: Vec<Vec<f32>> = serde_json::from_slice(&output.stdout).expect("JSON vectors");
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].len(), 384);
    let norm: f32 = vectors[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
}

#[test]
fn bench_synth_writes_a_model_that_bench_local_measures() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("tiny.gguf");
    corral(dir.path())
        .args([
            "bench",
            "synth",
            "--shape",
            "tiny",
            "--quant",
            "q8_0",
            "--tokenizer",
        ])
        .arg(model("llama3/tokenizer.model"))
        .arg("--out")
        .arg(&file)
        .assert()
        .success();
    let output = corral(dir.path())
        .args([
            "bench",
            "local",
            "--threads",
            "1",
            "--prompt-tokens",
            "16",
            "--gen-tokens",
            "8",
            "--reps",
            "1",
            "--json",
            "-m",
        ])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["threads"], 1);
    assert!(report["pp_tokens_per_second"].as_f64().expect("pp") > 0.0);
    assert!(report["tg_tokens_per_second"].as_f64().expect("tg") > 0.0);
    assert!(report["peak_rss_bytes"].as_u64().expect("rss") > 0);
}

#[test]
fn a_broken_model_file_is_an_error_naming_it() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00").expect("write");
    corral(dir.path())
        .args(["generate", "-m"])
        .arg(&path)
        .arg("hello")
        .assert()
        .failure()
        .stderr(predicate::str::contains("broken.gguf").and(predicate::str::contains("truncated")));
}

#[test]
fn models_list_shows_the_cache() {
    let dir = TempDir::new().expect("tempdir");
    let output = corral(dir.path())
        .args(["models", "list", "--json"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let cached: Vec<&str> = report["cached"]["models"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(cached.contains(&"gemma-3-270m-q4_k_m.gguf"), "{cached:?}");
    assert!(cached.contains(&"all-MiniLM-L6-v2"), "{cached:?}");
}
