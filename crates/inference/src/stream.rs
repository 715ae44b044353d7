//! Turning a streamed HTTP body into deltas, for any framing: the OpenAI-compatible servers' SSE
//! and Bedrock's event stream differ only in how bytes become events and what an event says.
//!
//! What is common is kept here once: the text seen so far (so that a stream that breaks off
//! becomes [`ChatError::StreamInterrupted`] carrying it), the end of the body before the answer
//! finished, and ending the stream after the first error.

use std::collections::VecDeque;

use bytes::Bytes;
use corral_core::{ChatDelta, ChatError, ChatStream, ErrorKind, ProviderError};
use futures::StreamExt;
use futures::stream::BoxStream;

/// What one event of a stream says.
pub(crate) enum Said {
    Deltas(Vec<ChatDelta>),
    /// The end-of-stream marker (`[DONE]`).
    Done,
    Failed(ErrorKind, String),
}

/// A stream format: bytes in, events out, and what each event means.
pub(crate) trait Framing: Send + 'static {
    type Event: Send;
    /// Events completed by these bytes, and an error when the bytes after them cannot be framed
    /// (the events before the bad bytes still count).
    fn feed(&mut self, bytes: &[u8]) -> (Vec<Self::Event>, Option<String>);
    /// The media type the body must have; another one means the server did not stream.
    fn content_type(&self) -> &'static str;
    /// At the end of the body: a last event, or an error for a frame cut short.
    fn finish(&mut self) -> Result<Option<Self::Event>, String>;
    /// The meaning of event number `number` (counted from 1).
    fn interpret(&mut self, event: Self::Event, number: usize) -> Said;
}

pub(crate) fn deltas<F: Framing>(
    provider: String,
    framing: F,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
) -> ChatStream {
    let state = State {
        provider,
        framing,
        body,
        pending: VecDeque::new(),
        events: 0,
        text: String::new(),
        finished: false,
        ended: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed()
}

struct State<F: Framing> {
    provider: String,
    framing: F,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    pending: VecDeque<Result<ChatDelta, ChatError>>,
    events: usize,
    text: String,
    /// A finish reason was seen: the answer is complete even without an end marker.
    finished: bool,
    ended: bool,
}

impl<F: Framing> State<F> {
    async fn next(&mut self) -> Option<Result<ChatDelta, ChatError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(bytes)) => {
                    let (events, problem) = self.framing.feed(&bytes);
                    events.into_iter().for_each(|e| self.event(e));
                    if let Some(problem) = problem {
                        self.fail(ErrorKind::Permanent, format!("malformed stream: {problem}"));
                    }
                }
                Some(Err(error)) => {
                    let kind = if error.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Transient
                    };
                    self.fail(
                        kind,
                        format!(
                            "the stream broke off: {}",
                            crate::remote::error_chain(&error)
                        ),
                    );
                }
                None => {
                    match self.framing.finish() {
                        Ok(Some(event)) => self.event(event),
                        Ok(None) => {}
                        Err(problem) => self.fail(
                            ErrorKind::Transient,
                            format!("the stream broke off: {problem}"),
                        ),
                    }
                    if !self.ended && !self.finished {
                        self.fail(
                            ErrorKind::Transient,
                            "the stream ended before the answer was complete",
                        );
                    }
                    self.ended = true;
                }
            }
        }
    }

    fn event(&mut self, event: F::Event) {
        if self.ended {
            return;
        }
        self.events += 1;
        match self.framing.interpret(event, self.events) {
            Said::Deltas(deltas) => {
                for delta in deltas {
                    match &delta {
                        ChatDelta::Text { text } => self.text.push_str(text),
                        ChatDelta::Finish { .. } => self.finished = true,
                        _ => {}
                    }
                    self.pending.push_back(Ok(delta));
                }
            }
            Said::Done if self.finished => self.ended = true,
            Said::Done => self.fail(
                ErrorKind::Transient,
                "the stream ended before the answer was complete (no finish reason)",
            ),
            Said::Failed(kind, message) => self.fail(kind, message),
        }
    }

    /// Ends the stream with an error, keeping the text produced so far. Once the answer is
    /// complete (a finish reason arrived), trouble with what follows (a usage event, the close)
    /// costs nothing the caller needs: it is logged and the stream ends normally.
    fn fail(&mut self, kind: ErrorKind, message: impl Into<String>) {
        let message = message.into();
        if self.finished {
            tracing::debug!(provider = %self.provider, %message, "stream trouble after the answer was complete");
            self.ended = true;
            return;
        }
        let source = ProviderError::new(kind, message).with_provider(self.provider.clone());
        let error = if self.text.is_empty() {
            ChatError::Provider(source)
        } else {
            ChatError::StreamInterrupted {
                partial_text: self.text.clone(),
                source,
            }
        };
        self.pending.push_back(Err(error));
        self.ended = true;
    }
}
