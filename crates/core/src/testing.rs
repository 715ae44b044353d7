//! Scripted test doubles for deterministic tests of loops and protocols (feature `testing`).
//!
//! A [`ScriptedChatModel`] plays back one [`Step`] per call and records every request it received,
//! so a test can say exactly what the model answers and then check exactly what it was asked.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::chat::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason, GenerateRequest,
    StreamCollector, ToolCallDelta,
};
use crate::error::ChatError;
use crate::message::ToolCall;

/// What the scripted model does on one call.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answers with this response (streamed as text, tool-call, usage and finish deltas).
    Reply(ChatResponse),
    /// Fails the call.
    Fail(ChatError),
    /// Streams exactly these items (a non-streaming call collects them).
    Stream(Vec<Result<ChatDelta, ChatError>>),
    /// Streams these items, then never sends another.
    StreamThenStall(Vec<Result<ChatDelta, ChatError>>),
    /// Waits, then does the step.
    Delayed(Duration, Box<Step>),
    /// Never answers.
    Stall,
}

impl Step {
    /// A plain text answer that ends the turn.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Reply(ChatResponse {
            text: text.into(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: None,
            tool_call_error: None,
        })
    }

    /// An answer that asks for tool calls.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Self::Reply(ChatResponse {
            text: String::new(),
            tool_calls: calls,
            finish_reason: FinishReason::ToolCalls,
            usage: None,
            tool_call_error: None,
        })
    }
}

/// A chat model that plays back a script. Once the script is used up, every call fails with
/// [`ChatError::InvalidRequest`] saying so, so a test that calls more often than it meant to fails.
#[derive(Debug, Default)]
pub struct ScriptedChatModel {
    script: Mutex<VecDeque<Step>>,
    requests: Mutex<Vec<ChatRequest>>,
    prompts: Mutex<Vec<String>>,
}

impl ScriptedChatModel {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            script: Mutex::new(steps.into_iter().collect()),
            requests: Mutex::new(Vec::new()),
            prompts: Mutex::new(Vec::new()),
        }
    }

    /// How many calls were made, chat and raw.
    pub fn calls(&self) -> usize {
        lock(&self.requests).len() + lock(&self.prompts).len()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }

    /// Steps not yet played.
    pub fn remaining(&self) -> usize {
        lock(&self.script).len()
    }

    /// Raw prompts received by [`ChatModel::generate`], in order.
    pub fn prompts(&self) -> Vec<String> {
        lock(&self.prompts).clone()
    }

    fn next_step(&self, request: &ChatRequest) -> Result<Step, ChatError> {
        let mut requests = lock(&self.requests);
        requests.push(request.clone());
        self.pop(requests.len())
    }

    fn pop(&self, call: usize) -> Result<Step, ChatError> {
        lock(&self.script).pop_front().ok_or_else(|| {
            ChatError::InvalidRequest(format!(
                "scripted model: the script is used up (call {call})"
            ))
        })
    }
}

/// A poisoned lock only means another test thread panicked; the data is still what it recorded.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn deltas_of(response: ChatResponse) -> Vec<Result<ChatDelta, ChatError>> {
    let mut deltas = Vec::new();
    if !response.text.is_empty() {
        deltas.push(Ok(ChatDelta::Text {
            text: response.text,
        }));
    }
    for (index, call) in response.tool_calls.into_iter().enumerate() {
        deltas.push(Ok(ChatDelta::ToolCall(ToolCallDelta {
            index,
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments.to_string(),
        })));
    }
    if let Some(usage) = response.usage {
        deltas.push(Ok(ChatDelta::Usage(usage)));
    }
    deltas.push(Ok(ChatDelta::Finish {
        reason: response.finish_reason,
    }));
    deltas
}

async fn play(step: Step) -> Result<ChatStream, ChatError> {
    let mut step = step;
    loop {
        return match step {
            Step::Reply(response) => Ok(futures::stream::iter(deltas_of(response)).boxed()),
            Step::Fail(error) => Err(error),
            Step::Stream(items) => Ok(futures::stream::iter(items).boxed()),
            Step::StreamThenStall(items) => Ok(futures::stream::iter(items)
                .chain(futures::stream::pending())
                .boxed()),
            Step::Delayed(wait, next) => {
                tokio::time::sleep(wait).await;
                step = *next;
                continue;
            }
            Step::Stall => futures::future::pending().await,
        };
    }
}

#[async_trait]
impl ChatModel for ScriptedChatModel {
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ChatError> {
        let step = self.next_step(request)?;
        play(step).await
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ChatError> {
        let step = self.next_step(request)?;
        StreamCollector::collect(play(step).await?).await
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<ChatStream, ChatError> {
        let call = {
            let mut prompts = lock(&self.prompts);
            prompts.push(request.prompt.clone());
            prompts.len()
        };
        play(self.pop(call)?).await
    }
}
