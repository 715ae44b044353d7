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

/// Runs one generation on the current (blocking) thread. Text deltas go to `tx` as they are
/// produced; usage is sent at the end; the finish is returned for the caller to send (after any
/// tool calls it parses from `held_text`). Returns `Ok(None)` when the receiver went away.
pub fn generate(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerationParams,
    tx: &mpsc::Sender<Result<ChatDelta, ChatError>>,
) -> Result<Option<Finished>, ChatError> {
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
            return Ok(None);
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
    let prompt_seconds = started.elapsed().as_secs_f64();

    let decode_started = Instant::now();
    let mut decoder = StreamDecoder::new();
    let mut out = StopScanner::new(&params.stop);
    let mut generated = 0usize;
    let mut holding = false;
    let mut decided = !params.buffer_tool_calls;
    let mut held = String::new();
    let reason = loop {
        let token = sampler.sample(&mut logits);
        if tokenizer.is_end_of_generation(token) {
            break FinishReason::Stop;
        }
        sampler.observe(token);
        generated += 1;
        let piece = decoder.push(tokenizer, token).map_err(model_error)?;
        let (emit, stopped) = out.push(&piece);
        if !emit.is_empty() {
            if !decided {
                let visible = format!("{held}{emit}");
                if let Some(first) = visible.trim_start().chars().next() {
                    decided = true;
                    holding = first == '[' || first == '{' || visible.contains("<|python_tag|>");
                }
                held = visible;
                if decided
                    && !holding
                    && tx
                        .blocking_send(Ok(ChatDelta::Text {
                            text: std::mem::take(&mut held),
                        }))
                        .is_err()
                {
                    return Ok(None);
                }
            } else if holding {
                held.push_str(&emit);
            } else if tx
                .blocking_send(Ok(ChatDelta::Text { text: emit }))
                .is_err()
            {
                return Ok(None);
            }
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
    };
    // Whatever was held back for a possible stop string is text after all (unless it stopped).
    let mut rest = if reason == FinishReason::Stop && out.stopped {
        String::new()
    } else {
        out.flush()
    };
    if reason != FinishReason::Stop || !out.stopped {
        rest.push_str(&decoder.finish());
    }
    if holding || !decided {
        held.push_str(&rest);
    } else if !rest.is_empty()
        && tx
            .blocking_send(Ok(ChatDelta::Text { text: rest }))
            .is_err()
    {
        return Ok(None);
    }
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
        return Ok(None);
    }
    Ok(Some(Finished {
        reason,
        held_text: held,
        stats,
    }))
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
    fn without_stop_strings_everything_flows() {
        let mut s = StopScanner::new(&[]);
        assert_eq!(s.push("abc"), ("abc".to_string(), false));
        assert_eq!(s.flush(), "");
    }
}
