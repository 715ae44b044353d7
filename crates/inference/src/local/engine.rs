//! The generation loop: prompt processing in batches, then token by token with the sampler, stop
//! strings held back until they can no longer match, UTF-8 assembled across tokens, and the caller
//! told through a channel (a dropped receiver cancels the loop at the next token).

use std::sync::Arc;
use std::time::Instant;

use corral_core::{ChatDelta, ChatError, ErrorKind, FinishReason, ProviderError, Usage};
use tokio::sync::mpsc;

use super::model::Model;
use super::sampler::{Sampler, SamplerConfig};
use super::tokenizer::{StreamDecoder, Tokenizer};

/// What one generation needs besides the prompt.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub sampler: SamplerConfig,
    /// Prompt tokens per forward pass.
    pub n_batch: usize,
    /// Hold all text back until the end (the caller parses tool calls from it) once the answer's
    /// first non-blank character shows it may be a tool call.
    pub buffer_tool_calls: bool,
}

/// Figures for benches and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prompt_seconds: f64,
    pub decode_seconds: f64,
}

/// The end of a generation, for the caller that buffered tool-call text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    /// Text held back because it may be a tool call (empty when it was streamed).
    pub held_text: String,
    pub stats: GenerationStats,
}

pub(crate) fn model_error(message: impl std::fmt::Display) -> ChatError {
    // Only the first line: candle appends a backtrace when RUST_BACKTRACE is set.
    let message = message.to_string();
    let message = message.lines().next().unwrap_or_default();
    ChatError::Provider(
        ProviderError::new(ErrorKind::Permanent, format!("local model: {message}"))
            .with_provider("local"),
    )
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished(Finished),
    /// The receiver went away; generation stopped after this many tokens.
    Cancelled {
        generated: usize,
    },
}

/// Runs one generation on the current (blocking) thread. Text deltas go to `tx` as they are
/// produced; usage is sent at the end; the finish is returned for the caller to send (after any
/// tool calls it parses from `held_text`). A dropped receiver stops it before the next token.
pub fn generate(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerationParams,
    tx: &mpsc::Sender<Result<ChatDelta, ChatError>>,
) -> Result<Outcome, ChatError> {
    if prompt.is_empty() {
        return Err(ChatError::InvalidRequest(
            "the prompt is empty: there is nothing to continue".into(),
        ));
    }
    let n_ctx = model.n_ctx;
    if prompt.len() >= n_ctx {
        return Err(ChatError::ContextLengthExceeded {
            needed: prompt.len() + 1,
            limit: n_ctx,
        });
    }
    let room = n_ctx - prompt.len();
    let max_new = params.max_tokens.map_or(room, |m| m.min(room));
    if max_new == 0 {
        return Err(ChatError::InvalidRequest(
            "max_tokens must be at least 1".into(),
        ));
    }
    let mut cache = model
        .new_cache(prompt.len() + max_new)
        .map_err(model_error)?;
    let mut sampler = Sampler::new(params.sampler.clone());
    sampler.observe_all(prompt);

    let started = Instant::now();
    let mut logits = None;
    for chunk in prompt.chunks(params.n_batch.max(1)) {
        if tx.is_closed() {
            return Ok(Outcome::Cancelled { generated: 0 });
        }
        logits = Some(
            model
                .forward(chunk, &mut cache, false)
                .map_err(model_error)?,
        );
    }
    let mut logits = logits
        .ok_or_else(|| model_error("no logits after the prompt"))?
        .to_vec1::<f32>()
        .map_err(model_error)?;
    // A model may have more output rows than its tokenizer has tokens (padding): never pick those.
    let vocab = tokenizer.vocab_size();
    logits.truncate(vocab);
    let prompt_seconds = started.elapsed().as_secs_f64();

    let decode_started = Instant::now();
    let mut decoder = StreamDecoder::new();
    let mut out = StopScanner::new(&params.stop);
    let mut router = Router::new(params.buffer_tool_calls);
    let mut generated = 0usize;
    let reason = loop {
        // A dropped receiver stops the work here, even while nothing is being sent (text held
        // back as a possible tool call or stop string).
        if tx.is_closed() {
            return Ok(Outcome::Cancelled { generated });
        }
        let token = sampler.sample(&mut logits);
        if tokenizer.is_end_of_generation(token) {
            break FinishReason::Stop;
        }
        sampler.observe(token);
        generated += 1;
        let piece = decoder.push(tokenizer, token).map_err(model_error)?;
        let (emit, stopped) = out.push(&piece);
        if let Some(text) = router.push(&emit)
            && tx.blocking_send(Ok(ChatDelta::Text { text })).is_err()
        {
            return Ok(Outcome::Cancelled { generated });
        }
        if stopped {
            break FinishReason::Stop;
        }
        if generated >= max_new {
            break FinishReason::Length;
        }
        logits = model
            .forward(&[token], &mut cache, false)
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(model_error)?;
        logits.truncate(vocab);
    };
    // Whatever was held back for a possible stop string is text after all (unless it stopped).
    if !out.stopped {
        let mut rest = out.flush();
        rest.push_str(&decoder.finish());
        if let Some(text) = router.push(&rest)
            && tx.blocking_send(Ok(ChatDelta::Text { text })).is_err()
        {
            return Ok(Outcome::Cancelled { generated });
        }
    }
    let held = router.finish();
    let stats = GenerationStats {
        prompt_tokens: prompt.len(),
        generated_tokens: generated,
        prompt_seconds,
        decode_seconds: decode_started.elapsed().as_secs_f64(),
    };
    tracing::debug!(
        prompt_tokens = stats.prompt_tokens,
        generated_tokens = stats.generated_tokens,
        prompt_tps = stats.prompt_tokens as f64 / stats.prompt_seconds.max(1e-9),
        decode_tps = stats.generated_tokens as f64 / stats.decode_seconds.max(1e-9),
        "local generation finished"
    );
    let usage = Usage {
        prompt_tokens: u32::try_from(prompt.len()).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(generated).unwrap_or(u32::MAX),
    };
    if tx.blocking_send(Ok(ChatDelta::Usage(usage))).is_err() {
        return Ok(Outcome::Cancelled { generated });
    }
    Ok(Outcome::Finished(Finished {
        reason,
        held_text: held,
        stats,
    }))
}

/// Where generated text goes when the request has tools: streamed as it comes, unless the answer
/// starts like a tool call (`[name(`, `{`, a ``` fence, `<function=`, `<|python_tag|>`), in which
/// case all of it is held for the tool-call parser. A `<|python_tag|>` after some prose holds the
/// rest from there. Without tools everything streams.
#[derive(Debug)]
struct Router {
    state: Route,
    held: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Undecided,
    Streaming,
    Holding,
}

const PYTHON_TAG: &str = "<|python_tag|>";

impl Router {
    fn new(tools: bool) -> Self {
        Self {
            state: if tools {
                Route::Undecided
            } else {
                Route::Streaming
            },
            held: String::new(),
        }
    }

    /// Takes new text; returns what to send now.
    fn push(&mut self, text: &str) -> Option<String> {
        if text.is_empty() {
            return None;
        }
        match self.state {
            Route::Holding => {
                self.held.push_str(text);
                None
            }
            Route::Streaming => match text.find(PYTHON_TAG) {
                Some(at) if self.held.is_empty() => {
                    self.state = Route::Holding;
                    self.held.push_str(&text[at..]);
                    Some(text[..at].to_string()).filter(|t| !t.is_empty())
                }
                _ => Some(text.to_string()),
            },
            Route::Undecided => {
                self.held.push_str(text);
                match looks_like_a_call(&self.held) {
                    Some(true) => {
                        self.state = Route::Holding;
                        None
                    }
                    Some(false) => {
                        self.state = Route::Streaming;
                        let all = std::mem::take(&mut self.held);
                        self.push(&all)
                    }
                    None => None,
                }
            }
        }
    }

    /// The text held for the tool-call parser (empty when everything was streamed).
    fn finish(self) -> String {
        self.held
    }
}

/// Whether text that starts an answer is a tool call: `Some(true)`/`Some(false)` once that is
/// clear, `None` while it could still go either way.
fn looks_like_a_call(text: &str) -> Option<bool> {
    let t = text.trim_start();
    if t.is_empty() {
        return None;
    }
    for marker in ["{", "```", "<function=", PYTHON_TAG] {
        if t.starts_with(marker) {
            return Some(true);
        }
        if marker.starts_with(t) {
            return None;
        }
    }
    // `[get_weather(` is a call; `[1] says…` is a citation.
    if let Some(rest) = t.strip_prefix('[') {
        let rest = rest.trim_start();
        let name_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if name_len == rest.len() {
            return None;
        }
        let starts_with_letter = rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_');
        return Some(starts_with_letter && rest[name_len..].starts_with('('));
    }
    Some(false)
}

/// Streams text while holding back any tail that could still become a stop string.
#[derive(Debug)]
struct StopScanner<'a> {
    stops: &'a [String],
    pending: String,
    stopped: bool,
}

impl<'a> StopScanner<'a> {
    fn new(stops: &'a [String]) -> Self {
        Self {
            stops,
            pending: String::new(),
            stopped: false,
        }
    }

    /// Adds text; returns what is safe to emit and whether a stop string was reached (the stop
    /// string and anything after it are dropped).
    fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.pending.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            self.stopped = true;
            let emit = self.pending[..at].to_string();
            self.pending.clear();
            return (emit, true);
        }
        // Keep the longest tail that is a prefix of some stop string.
        let mut keep = 0;
        for stop in self.stops {
            for (i, _) in self.pending.char_indices() {
                let tail = &self.pending[i..];
                if stop.starts_with(tail) {
                    keep = keep.max(tail.len());
                    break;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let emit = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (emit, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Shared handles for a loaded model.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_held_back_until_they_cannot_match() {
        let stops = vec!["</end>".to_string(), "STOP".to_string()];
        let mut s = StopScanner::new(&stops);
        assert_eq!(s.push("hello <"), ("hello ".to_string(), false));
        assert_eq!(s.push("/e"), (String::new(), false));
        assert_eq!(s.push("x"), ("</ex".to_string(), false));
        assert_eq!(s.push(" ST"), (" ".to_string(), false));
        assert_eq!(s.push("OP and more"), (String::new(), true));
        assert!(s.stopped);
    }

    #[test]
    fn answers_that_start_like_a_tool_call_are_held_and_prose_streams() {
        let route = |pieces: &[&str]| {
            let mut router = Router::new(true);
            let sent: String = pieces.iter().filter_map(|p| router.push(p)).collect();
            (sent, router.finish())
        };
        assert_eq!(
            route(&["[get_", "weather(city=\"Paris\")]"]),
            (String::new(), "[get_weather(city=\"Paris\")]".into())
        );
        assert_eq!(
            route(&["  {\"name\"", ": \"f\"}"]),
            (String::new(), "  {\"name\": \"f\"}".into())
        );
        assert_eq!(
            route(&["`", "``tool_code\nf()\n```"]),
            (String::new(), "```tool_code\nf()\n```".into())
        );
        assert_eq!(
            route(&["[1", "] says so."]),
            ("[1] says so.".into(), String::new())
        );
        assert_eq!(
            route(&["Paris", " is big."]),
            ("Paris is big.".into(), String::new())
        );
        assert_eq!(
            route(&["Let me look.", "<|python_tag|>", "f(a=1)"]),
            ("Let me look.".into(), "<|python_tag|>f(a=1)".into())
        );
        // Without tools everything streams, markers included.
        let mut router = Router::new(false);
        assert_eq!(router.push("[f()]"), Some("[f()]".into()));
        assert_eq!(router.finish(), "");
    }

    #[test]
    fn without_stop_strings_everything_flows() {
        let mut s = StopScanner::new(&[]);
        assert_eq!(s.push("abc"), ("abc".to_string(), false));
        assert_eq!(s.flush(), "");
    }
}
