//! Local inference on CPU: GGUF chat models (Llama 3.x, Gemma 3) and BERT sentence embedders, with
//! candle. Provider type `local`.
//!
//! - [`gguf`]: the model file, with errors that name it and the problem;
//! - [`tokenizer`]: the tokenizer from the GGUF metadata alone (Llama 3 BPE, SentencePiece);
//! - [`chat_format`]: prompts from messages (Llama 3 headers, Gemma turns, the file's own Jinja
//!   template) and tool calls parsed back out of the model's text;
//! - [`model`]: the transformer; [`sampler`]: choosing tokens; [`engine`]: the generation loop;
//! - [`bert`]: all-MiniLM-style sentence embedders; [`hub`]: fetching models from the Hugging Face Hub.
//!
//! Model names given to the provider are a path to a `.gguf` file (or an embedder's directory), or
//! a name under the provider's `models_dir`.

pub mod bert;
pub mod chat_format;
pub mod engine;
pub mod escape;
pub mod gguf;
pub mod hub;
mod math;
pub mod model;
pub mod pages;
mod par;
pub mod quant;
pub mod sampler;
pub mod synth;
pub mod tokenizer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use corral_core::{
    ChatDelta, ChatError, ChatModel, ChatRequest, ChatStream, EmbedError, Embedder, ErrorKind,
    FinishReason, GenerateRequest, InferenceProvider, ProviderError, ResponseFormat, ToolChoice,
    ToolSpec, async_trait,
};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use self::chat_format::{PromptFormat, RenderOptions};
use self::engine::{GenerationParams, Outcome, model_error};
use self::gguf::{GgufFile, ModelFileError};
use self::model::Model;
use self::sampler::SamplerConfig;
use self::tokenizer::{Tokenizer, Vocab};

/// The provider type name in `corral.toml`.
pub const PROVIDER_TYPE: &str = "local";

/// `[providers.inference.config]` of a `local` provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Where model names are looked up (default `$CORRAL_CACHE/models`, else `~/.cache/corral/models`).
    #[serde(default)]
    pub models_dir: Option<PathBuf>,
    /// The longest context served, in tokens (default 4096; never more than the model's own).
    #[serde(default)]
    pub n_ctx: Option<usize>,
    /// Prompt tokens per forward pass (default 512).
    #[serde(default)]
    pub n_batch: Option<usize>,
    /// Worker threads for the matmul kernels. candle sizes its kernel pool once per process from
    /// `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` (default: the physical cores); the `corral`
    /// binary sets that from this value before anything runs. A library user sets the variable.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Sentences per embedding batch (default 32).
    #[serde(default)]
    pub embed_batch_size: Option<usize>,
}

pub const DEFAULT_N_CTX: usize = 4096;
pub const DEFAULT_N_BATCH: usize = 512;

/// The threads candle's kernels run on: `RAYON_NUM_THREADS` (the CLI sets it, and
/// `CANDLE_NUM_THREADS`, from `--threads` or the config), else the physical cores.
pub fn kernel_threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// The models directory when none is configured: `$CORRAL_CACHE/models`, else
/// `~/.cache/corral/models` (the directory `corral models pull` fills), else a relative one.
pub fn default_models_dir() -> PathBuf {
    hub::default_models_dir().unwrap_or_else(|| PathBuf::from(".cache/corral/models"))
}

/// GGUF chat models and BERT embedders on this machine's CPU.
#[derive(Debug)]
pub struct LocalProvider {
    config: LocalConfig,
    chat: Mutex<HashMap<PathBuf, Weak<LocalChatModel>>>,
    embedders: Mutex<HashMap<PathBuf, Weak<bert::LocalEmbedder>>>,
}

impl LocalProvider {
    pub fn new(config: LocalConfig) -> Result<Self, String> {
        if config.n_ctx == Some(0) {
            return Err("n_ctx must be at least 1".into());
        }
        if config.n_batch == Some(0) {
            return Err("n_batch must be at least 1".into());
        }
        if config.threads == Some(0) {
            return Err("threads must be at least 1".into());
        }
        if config.embed_batch_size == Some(0) {
            return Err("embed_batch_size must be at least 1".into());
        }
        Ok(Self {
            config,
            chat: Mutex::new(HashMap::new()),
            embedders: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// The configured `models_dir` (with `~` expanded), else [`default_models_dir`].
    pub fn models_dir(&self) -> PathBuf {
        self.config
            .models_dir
            .as_ref()
            .map(|d| expand_home(&d.to_string_lossy()))
            .unwrap_or_else(default_models_dir)
    }

    /// Where `name` lives: itself if it is an existing path, else under `models_dir`.
    pub fn resolve(&self, name: &str) -> PathBuf {
        let direct = expand_home(name);
        if direct.exists() || direct.is_absolute() {
            return direct;
        }
        self.models_dir().join(name)
    }

    /// Loads (or reuses) the chat model in the GGUF file at `path`.
    pub async fn load_chat(&self, path: &Path) -> Result<Arc<LocalChatModel>, ModelFileError> {
        if let Some(model) = self
            .chat
            .lock()
            .ok()
            .and_then(|cache| cache.get(path).and_then(Weak::upgrade))
        {
            return Ok(model);
        }
        let options = LoadOptions {
            n_ctx: self.config.n_ctx.unwrap_or(DEFAULT_N_CTX),
            n_batch: self.config.n_batch.unwrap_or(DEFAULT_N_BATCH),
        };
        let owned = path.to_path_buf();
        let model = tokio::task::spawn_blocking(move || LocalChatModel::load(&owned, options))
            .await
            .map_err(|e| ModelFileError::new(path, format!("loading stopped: {e}")))??;
        let model = Arc::new(model);
        if let Ok(mut cache) = self.chat.lock() {
            cache.insert(path.to_path_buf(), Arc::downgrade(&model));
        }
        Ok(model)
    }
}

fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => PathBuf::from(path),
        },
        None => PathBuf::from(path),
    }
}

fn load_failed(e: ModelFileError) -> ProviderError {
    ProviderError::new(ErrorKind::Permanent, e.to_string()).with_provider(PROVIDER_TYPE)
}

#[async_trait]
impl InferenceProvider for LocalProvider {
    async fn chat_model(&self, name: &str) -> Result<Arc<dyn ChatModel>, ChatError> {
        let path = self.resolve(name);
        let model = self
            .load_chat(&path)
            .await
            .map_err(|e| ChatError::Provider(load_failed(e)))?;
        Ok(model)
    }

    async fn embedder(&self, name: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        let dir = self.resolve(name);
        if let Some(embedder) = self
            .embedders
            .lock()
            .ok()
            .and_then(|cache| cache.get(&dir).and_then(Weak::upgrade))
        {
            return Ok(embedder);
        }
        let options = bert::LocalEmbedderOptions {
            batch_size: self.config.embed_batch_size.unwrap_or(32),
            ..bert::LocalEmbedderOptions::default()
        };
        let owned = dir.clone();
        let embedder =
            tokio::task::spawn_blocking(move || bert::LocalEmbedder::load(&owned, options))
                .await
                .map_err(|e| {
                    EmbedError::Provider(ProviderError::new(
                        ErrorKind::Permanent,
                        format!("{}: loading stopped: {e}", dir.display()),
                    ))
                })??;
        let embedder = Arc::new(embedder);
        if let Ok(mut cache) = self.embedders.lock() {
            cache.insert(dir, Arc::downgrade(&embedder));
        }
        Ok(embedder)
    }

    async fn list_models(&self) -> Result<Option<Vec<String>>, ChatError> {
        Ok(Some(list_model_files(&self.models_dir())))
    }
}

/// The GGUF files and embedder directories under `dir`, as names relative to it.
pub fn list_model_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.join("config.json").is_file() && path.join("model.safetensors").is_file() {
                    if let Ok(rel) = path.strip_prefix(dir) {
                        found.push(rel.to_string_lossy().into_owned());
                    }
                } else {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "gguf")
                && let Ok(rel) = path.strip_prefix(dir)
            {
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// How a chat model is loaded.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub n_ctx: usize,
    pub n_batch: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            n_ctx: DEFAULT_N_CTX,
            n_batch: DEFAULT_N_BATCH,
        }
    }
}

/// A GGUF chat model, loaded: weights, tokenizer and prompt format. Requests run one at a time.
#[derive(Debug)]
pub struct LocalChatModel {
    path: PathBuf,
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    format: PromptFormat,
    escaper: escape::Escaper,
    n_batch: usize,
    busy: Arc<Semaphore>,
}

impl LocalChatModel {
    /// Reads the file and every tensor (blocking).
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self, ModelFileError> {
        let started = std::time::Instant::now();
        let mut file = GgufFile::open(path)?;
        let vocab = Vocab::from_gguf(file.metadata()).map_err(|e| file.error(e.to_string()))?;
        let tokenizer = Tokenizer::new(vocab).map_err(|e| file.error(e.to_string()))?;
        let architecture = file.architecture()?.to_string();
        let template = file.string("tokenizer.chat_template")?.map(str::to_string);
        let piece = |id: Option<u32>| {
            id.and_then(|id| tokenizer.piece(id))
                .unwrap_or_default()
                .to_string()
        };
        let (bos, eos) = (piece(tokenizer.bos()), piece(tokenizer.eos()));
        let choice = chat_format::select_format(template.as_deref(), &bos, &eos, &architecture)
            .map_err(|e| file.error(e.to_string()))?;
        if let Some(reason) = &choice.fallback_reason {
            tracing::warn!(model = %path.display(), "{reason}");
        }
        let model = Model::load(&mut file, options.n_ctx)?;
        if model.hparams.vocab_size < tokenizer.vocab_size() {
            return Err(file.error(format!(
                "the tokenizer has {} tokens but token_embd.weight only {} rows",
                tokenizer.vocab_size(),
                model.hparams.vocab_size
            )));
        }
        tracing::info!(
            model = %path.display(),
            arch = architecture,
            layers = model.hparams.n_layer,
            n_ctx = model.n_ctx,
            seconds = started.elapsed().as_secs_f64(),
            "loaded local model"
        );
        Ok(Self {
            path: path.to_path_buf(),
            model: Arc::new(model),
            escaper: escape::Escaper::new(&tokenizer),
            tokenizer: Arc::new(tokenizer),
            format: choice.format,
            n_batch: options.n_batch,
            busy: Arc::new(Semaphore::new(1)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn format(&self) -> &PromptFormat {
        &self.format
    }

    /// The prompt text for a chat request.
    pub fn render(&self, request: &ChatRequest) -> Result<String, ChatError> {
        self.render_messages(request, &request.messages)
    }

    fn render_messages(
        &self,
        request: &ChatRequest,
        messages: &[corral_core::Message],
    ) -> Result<String, ChatError> {
        let tools: &[ToolSpec] = match request.tool_choice {
            ToolChoice::None => &[],
            _ => &request.tools,
        };
        chat_format::render_with(
            &self.format,
            messages,
            tools,
            true,
            &RenderOptions::default(),
        )
        .map_err(|e| ChatError::InvalidRequest(e.to_string()))
    }

    /// The prompt's token ids: the format's markers as special tokens, and the messages' text as
    /// plain text even where it spells a control token (see [`escape`]).
    pub fn prompt_ids(&self, request: &ChatRequest) -> Result<Vec<u32>, ChatError> {
        let mut literals = Vec::new();
        let messages = self.escaper.messages(&request.messages, &mut literals);
        let text = self.render_messages(request, &messages)?;
        Ok(escape::encode_prompt(&self.tokenizer, &text, &literals))
    }

    /// Starts a generation on a blocking thread; `on_finish` turns the held-back text into the
    /// closing deltas (tool calls or text) before the finish reason.
    fn spawn(&self, prompt: Vec<u32>, params: GenerationParams, parse_tools: bool) -> ChatStream {
        let (tx, rx) = mpsc::channel(64);
        let model = self.model.clone();
        let tokenizer = self.tokenizer.clone();
        let busy = self.busy.clone();
        tokio::spawn(async move {
            // One generation at a time per model: a second waits here, not on the cores.
            let Ok(permit) = busy.acquire_owned().await else {
                return;
            };
            let report = tx.clone();
            let worker = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let result = engine::generate(&model, &tokenizer, &prompt, &params, &tx);
                let finished = match result {
                    Ok(Outcome::Finished(finished)) => finished,
                    Ok(Outcome::Cancelled { generated }) => {
                        tracing::debug!(generated, "local generation cancelled");
                        return;
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                for delta in closing_deltas(finished, parse_tools) {
                    if tx.blocking_send(Ok(delta)).is_err() {
                        return;
                    }
                }
            });
            // A panic in the engine must not look like an answer that simply ended.
            if let Err(e) = worker.await {
                tracing::error!("local generation stopped: {e}");
                let _ = report
                    .send(Err(model_error(format!("generation stopped: {e}"))))
                    .await;
            }
        });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

/// The deltas that end an answer: the held-back text as tool calls (or as text, with the parse
/// error when it looked like a call but was not one), then the finish reason.
fn closing_deltas(finished: engine::Finished, parse_tools: bool) -> Vec<ChatDelta> {
    let mut reason = finished.reason;
    let mut closing = Vec::new();
    if parse_tools && !finished.held_text.trim().is_empty() {
        let parsed = chat_format::parse_tool_calls(&finished.held_text);
        if !parsed.content.is_empty() {
            closing.push(ChatDelta::Text {
                text: parsed.content,
            });
        }
        if let Some(message) = parsed.error {
            closing.push(ChatDelta::ToolCallError { message });
        }
        if !parsed.tool_calls.is_empty() && reason == FinishReason::Stop {
            reason = FinishReason::ToolCalls;
        }
        for (index, call) in parsed.tool_calls.into_iter().enumerate() {
            closing.push(ChatDelta::ToolCall(corral_core::ToolCallDelta {
                index,
                id: Some(call.id),
                name: Some(call.name),
                arguments: call.arguments.to_string(),
            }));
        }
    } else if !finished.held_text.is_empty() {
        closing.push(ChatDelta::Text {
            text: finished.held_text,
        });
    }
    closing.push(ChatDelta::Finish { reason });
    closing
}

fn sampler_for(sampling: &corral_core::Sampling) -> Result<SamplerConfig, ChatError> {
    SamplerConfig::from_request(sampling).map_err(ChatError::InvalidRequest)
}

#[async_trait]
impl ChatModel for LocalChatModel {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        if request.messages.is_empty() {
            return Err(ChatError::InvalidRequest(
                "the conversation has no messages".into(),
            ));
        }
        if let ResponseFormat::JsonSchema { .. } = request.response_format {
            return Err(ChatError::InvalidRequest(
                "response_format json_schema is not supported by local models yet (no constrained decoding)".into(),
            ));
        }
        if matches!(
            request.tool_choice,
            ToolChoice::Required | ToolChoice::Tool(_)
        ) {
            return Err(ChatError::InvalidRequest(if request.tools.is_empty() {
                "tool_choice asks for a tool call but no tools were given".into()
            } else {
                "local models cannot be forced to call a tool (tool_choice required or a named tool); use auto".into()
            }));
        }
        let prompt = self.prompt_ids(request)?;
        let mut stop = request.stop.clone();
        for s in chat_format::stop_strings(&self.format) {
            if !stop.contains(&s) {
                stop.push(s);
            }
        }
        let parse_tools = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
        let params = GenerationParams {
            max_tokens: request.max_tokens.map(|m| m as usize),
            stop,
            sampler: sampler_for(&request.sampling)?,
            n_batch: self.n_batch,
            buffer_tool_calls: parse_tools,
        };
        check_fits(&self.model, prompt.len())?;
        Ok(self.spawn(prompt, params, parse_tools))
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        // A raw continuation: BOS (and EOS) as the model's vocabulary asks for them, as llama.cpp
        // does; special tokens written in the prompt count as specials.
        let prompt = self.tokenizer.encode(&request.prompt, true, true);
        let params = GenerationParams {
            max_tokens: request.max_tokens.map(|m| m as usize),
            stop: request.stop.clone(),
            sampler: sampler_for(&request.sampling)?,
            n_batch: self.n_batch,
            buffer_tool_calls: false,
        };
        check_fits(&self.model, prompt.len())?;
        Ok(self.spawn(prompt, params, false))
    }
}

fn check_fits(model: &Model, prompt_tokens: usize) -> Result<(), ChatError> {
    if prompt_tokens == 0 {
        return Err(ChatError::InvalidRequest("the prompt is empty".into()));
    }
    if prompt_tokens >= model.n_ctx {
        return Err(ChatError::ContextLengthExceeded {
            needed: prompt_tokens + 1,
            limit: model.n_ctx,
        });
    }
    Ok(())
}

/// Greedy token ids for a prompt, synchronously (tests, the CLI's `bench`).
pub fn greedy_tokens(
    model: &LocalChatModel,
    prompt: &[u32],
    n: usize,
) -> Result<Vec<u32>, ChatError> {
    if prompt.is_empty() {
        return Err(ChatError::InvalidRequest("empty prompt".into()));
    }
    let mut cache = model
        .model
        .new_cache(prompt.len() + n)
        .map_err(model_error)?;
    let mut logits = model
        .model
        .prefill(prompt, &mut cache, model.n_batch)
        .map_err(model_error)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = model::argmax(&logits).map_err(model_error)?;
        out.push(next);
        if model.tokenizer.is_end_of_generation(next) {
            break;
        }
        logits = model
            .model
            .forward(&[next], &mut cache, false)
            .map_err(model_error)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Finished, GenerationStats};

    fn finished(text: &str, reason: FinishReason) -> Finished {
        Finished {
            reason,
            held_text: text.to_string(),
            stats: GenerationStats::default(),
        }
    }

    #[test]
    fn held_text_becomes_typed_tool_calls() {
        let deltas = closing_deltas(
            finished(r#"[get_weather(city="Paris"), now()]"#, FinishReason::Stop),
            true,
        );
        let calls: Vec<_> = deltas
            .iter()
            .filter_map(|d| match d {
                ChatDelta::ToolCall(call) => Some(call),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name.as_deref(), Some("get_weather"));
        assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(
            deltas.last(),
            Some(&ChatDelta::Finish {
                reason: FinishReason::ToolCalls
            })
        );
    }

    #[test]
    fn a_malformed_call_stays_text_with_the_parse_error() {
        let deltas = closing_deltas(
            finished(r#"[get_weather(city=Paris)]"#, FinishReason::Stop),
            true,
        );
        assert!(matches!(&deltas[0], ChatDelta::Text { text } if text.contains("get_weather")));
        assert!(matches!(&deltas[1], ChatDelta::ToolCallError { message } if !message.is_empty()));
        assert_eq!(
            deltas.last(),
            Some(&ChatDelta::Finish {
                reason: FinishReason::Stop
            })
        );
    }

    #[test]
    fn without_tools_held_text_is_just_text() {
        let deltas = closing_deltas(finished("[f()]", FinishReason::Length), false);
        assert_eq!(
            deltas,
            vec![
                ChatDelta::Text {
                    text: "[f()]".into()
                },
                ChatDelta::Finish {
                    reason: FinishReason::Length
                }
            ]
        );
    }
}
