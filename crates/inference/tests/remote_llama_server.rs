//! The remote client against a real llama.cpp `llama-server` on loopback, serving Gemma 3 270M:
//! raw completion, chat (whole and streamed), embeddings and the model listing.
//!
//! The Gemma file is the base model, not an instruction-tuned one, so its chat answers are not
//! meaningful text; what is checked there is that the streamed and the whole answer agree under
//! greedy decoding. The raw completion is checked for content: " Paris".

#[path = "support/llama_server.rs"]
mod llama_server;

use corral_core::{
    CapabilityError, ChatModel, ChatRequest, ErrorKind, FinishReason, GenerateRequest,
    InferenceProvider, Message, Sampling, StreamCollector,
};

#[tokio::test]
async fn llama_server_end_to_end() {
    let Some(server) = llama_server::for_test().await else {
        return;
    };
    let provider = server.provider();
    let model = provider.chat(&server.model);

    // Raw completion, greedy: the reference continuation of this prompt starts with " Paris".
    let prompt = GenerateRequest {
        prompt: "The capital city of France is called".into(),
        sampling: Sampling::greedy(),
        max_tokens: Some(16),
        stop: vec![],
    };
    let raw = StreamCollector::collect(model.generate(&prompt).await.expect("starts"))
        .await
        .expect("completes");
    assert!(raw.text.starts_with(" Paris"), "{:?}", raw.text);
    assert_eq!(raw.finish_reason, FinishReason::Length);
    assert_eq!(raw.usage.map(|u| u.completion_tokens), Some(16));

    // Chat, whole and streamed, agree under greedy decoding and report usage.
    let chat = ChatRequest::new(vec![Message::user("The capital city of France is called")])
        .with_sampling(Sampling::greedy())
        .with_max_tokens(12);
    let whole = model.complete(&chat).await.expect("answers");
    let streamed = StreamCollector::collect(model.stream(&chat).await.expect("starts"))
        .await
        .expect("completes");
    assert_eq!(whole.text, streamed.text);
    assert!(!whole.text.is_empty());
    assert_eq!(whole.usage.map(|u| u.completion_tokens), Some(12));
    assert_eq!(streamed.usage, whole.usage);

    // Embeddings: one vector per input, all of the probed length, different inputs differ.
    let embedder = provider.embedder(&server.model).await.expect("probes");
    assert_eq!(embedder.dimension(), 640);
    let vectors = embedder
        .embed(&[
            "The cat sat on the mat.".to_string(),
            "Quarterly revenue grew by 4%.".to_string(),
        ])
        .await
        .expect("embeds");
    assert_eq!(vectors.len(), 2);
    assert!(vectors.iter().all(|v| v.len() == 640));
    assert_ne!(vectors[0], vectors[1]);

    // The listing names the loaded file.
    let listed = provider
        .list_models()
        .await
        .expect("lists")
        .expect("has a listing");
    assert_eq!(listed, vec![server.model.clone()]);

    // A prompt longer than the context is a context-length error, not a generic failure.
    let long = GenerateRequest {
        prompt: "word ".repeat(5000),
        max_tokens: Some(4),
        ..prompt
    };
    let error = model.generate(&long).await.err().expect("too long");
    assert_eq!(error.kind(), ErrorKind::ContextLengthExceeded, "{error}");
}
