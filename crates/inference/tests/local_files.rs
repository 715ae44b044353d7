//! Broken model files give an error that names the file and the problem, never a panic.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use corral_inference::local::gguf::GgufFile;
use corral_inference::local::model::Model;
use corral_inference::local::synth::{self, LlamaShape, Quant};
use corral_inference::local::{LoadOptions, LocalChatModel};

fn tiny(dir: &Path) -> PathBuf {
    let shape = LlamaShape::tiny(256);
    let weights = synth::random_weights(&shape, 5).expect("weights");
    let path = dir.join("good.gguf");
    synth::write_gguf(&path, &shape, &weights, Quant::Q8_0, None, "tiny").expect("gguf");
    path
}

/// Opening and loading, as the provider does; the error text.
fn load_error(path: &Path) -> String {
    let result = GgufFile::open(path).and_then(|mut file| Model::load(&mut file, 0).map(|_| ()));
    let err = result.expect_err("a broken file must not load");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "the error names the file: {text}"
    );
    text
}

#[test]
fn a_missing_file_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let text = load_error(&dir.path().join("nope.gguf"));
    assert!(text.contains("no such file"), "{text}");
}

#[test]
fn wrong_magic_is_not_a_gguf_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"PK\x03\x04 this is a zip file, not a model").expect("write");
    let text = load_error(&path);
    assert!(text.contains("not a GGUF file"), "{text}");
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").expect("write");
    assert!(load_error(&empty).contains("shorter than"));
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    let dir = tempfile::tempdir().expect("dir");
    let good = tiny(dir.path());
    let bytes = std::fs::read(&good).expect("read");
    // Cut in the tensor data, and cut inside the header.
    for (name, len) in [("data.gguf", bytes.len() * 2 / 3), ("header.gguf", 200)] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).expect("write");
        let text = load_error(&path);
        assert!(text.contains("truncated"), "{name}: {text}");
    }
}

fn write(path: &Path, metadata: &[(&str, Value)], tensors: &[(&str, QTensor)]) {
    let mut file = std::fs::File::create(path).expect("create");
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut file, &md, &ts).expect("write gguf");
}

fn small_tensor() -> QTensor {
    let t = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).expect("zeros");
    QTensor::quantize(&t, GgmlDType::Q8_0).expect("quantize")
}

#[test]
fn an_unknown_architecture_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("mamba.gguf");
    write(
        &path,
        &[("general.architecture", Value::String("mamba".into()))],
        &[("token_embd.weight", small_tensor())],
    );
    let text = load_error(&path);
    assert!(text.contains("\"mamba\" is not supported"), "{text}");
}

#[test]
fn an_unsupported_tensor_type_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("iq.gguf");
    write(
        &path,
        &[("general.architecture", Value::String("llama".into()))],
        &[("token_embd.weight", small_tensor())],
    );
    // Rewrite the tensor's type (after its name, dimension count and two dimensions) to ggml's
    // IQ4_NL (20), which candle does not read.
    let mut bytes = std::fs::read(&path).expect("read");
    let name = b"token_embd.weight";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor name in header")
        + name.len();
    let type_at = at + 4 + 2 * 8;
    assert_eq!(
        bytes[type_at..type_at + 4],
        8u32.to_le_bytes(),
        "Q8_0 where expected"
    );
    bytes[type_at..type_at + 4].copy_from_slice(&20u32.to_le_bytes());
    std::fs::write(&path, bytes).expect("write");
    let text = load_error(&path);
    assert!(text.contains("ggml type 20"), "{text}");
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let good = tiny(dir.path());
    // The same file without blk.1.ffn_down.weight.
    let mut reader = std::fs::File::open(&good).expect("open");
    let content = gguf_file::Content::read(&mut reader).expect("header");
    let metadata: Vec<(&str, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        if name != "blk.1.ffn_down.weight" {
            let t = content
                .tensor(&mut reader, name, &Device::Cpu)
                .expect("tensor");
            tensors.push((name.as_str(), t));
        }
    }
    let path = dir.path().join("holey.gguf");
    write(&path, &metadata, &tensors);
    let text = load_error(&path);
    assert!(
        text.contains("missing tensor blk.1.ffn_down.weight"),
        "{text}"
    );
}

#[test]
fn a_model_file_without_a_tokenizer_cannot_chat_and_says_why() {
    let dir = tempfile::tempdir().expect("dir");
    let good = tiny(dir.path());
    let err = LocalChatModel::load(&good, LoadOptions::default()).expect_err("no tokenizer");
    let text = err.to_string();
    assert!(text.contains("good.gguf"), "{text}");
    assert!(text.contains("tokenizer"), "{text}");
}
