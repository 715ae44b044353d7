//! The wrappers against a scripted model, on tokio's paused clock so that waits are exact and instant.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::*;
use crate::chat::{ChatDelta, ChatModel, ChatRequest, GenerateRequest, StreamCollector};
use crate::error::{CapabilityError, ChatError, ErrorKind, ProviderError};
use crate::message::Message;
use crate::testing::{ScriptedChatModel, Step};

fn request() -> ChatRequest {
    ChatRequest::new(vec![Message::user("What is the capital of France?")])
}

fn failure(kind: ErrorKind) -> Step {
    Step::Fail(ProviderError::new(kind, format!("scripted {kind} failure")).into())
}

fn steady() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
        jitter: false,
    }
}

fn text(t: &str) -> Result<ChatDelta, ChatError> {
    Ok(ChatDelta::Text { text: t.into() })
}

#[tokio::test(start_paused = true)]
async fn retrying_retries_transient_errors_with_doubling_backoff() {
    let model = ScriptedChatModel::new([
        failure(ErrorKind::Transient),
        failure(ErrorKind::Timeout),
        failure(ErrorKind::Transient),
        Step::text("Paris"),
    ]);
    let retrying = Retrying::new(model, steady());
    let start = Instant::now();
    let answer = retrying
        .complete(&request())
        .await
        .expect("fourth attempt succeeds");
    assert_eq!(answer.text, "Paris");
    assert_eq!(retrying.inner().calls(), 4);
    // 0.5 s + 1 s + 2 s of backoff, nothing more.
    assert_eq!(start.elapsed(), Duration::from_millis(3500));
}

#[tokio::test(start_paused = true)]
async fn retrying_never_retries_permanent_errors() {
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::Auth,
        ErrorKind::Permanent,
        ErrorKind::ContextLengthExceeded,
    ] {
        let retrying = Retrying::new(ScriptedChatModel::new([failure(kind)]), steady());
        let start = Instant::now();
        let error = retrying.complete(&request()).await.expect_err("fails");
        assert_eq!(error.kind(), kind);
        assert_eq!(retrying.inner().calls(), 1, "{kind} must not be retried");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn retrying_gives_up_after_max_attempts_with_the_last_error() {
    let model = ScriptedChatModel::new([
        failure(ErrorKind::Transient),
        failure(ErrorKind::Transient),
        failure(ErrorKind::Transient),
        failure(ErrorKind::RateLimited),
        Step::text("never reached"),
    ]);
    let retrying = Retrying::new(model, steady());
    let error = retrying.complete(&request()).await.expect_err("fails");
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(retrying.inner().calls(), 4);
    assert_eq!(retrying.inner().remaining(), 1);
}

#[tokio::test(start_paused = true)]
async fn retrying_honours_retry_after() {
    let limited = ProviderError::new(ErrorKind::RateLimited, "slow down")
        .with_retry_after(Duration::from_secs(7));
    let model = ScriptedChatModel::new([Step::Fail(limited.into()), Step::text("Paris")]);
    let retrying = Retrying::new(model, steady());
    let start = Instant::now();
    retrying
        .complete(&request())
        .await
        .expect("second attempt succeeds");
    assert_eq!(start.elapsed(), Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn retrying_does_not_wait_longer_than_max_backoff_for_retry_after() {
    let limited = ProviderError::new(ErrorKind::RateLimited, "come back in an hour")
        .with_retry_after(Duration::from_secs(3600));
    let model = ScriptedChatModel::new([Step::Fail(limited.into()), Step::text("Paris")]);
    let retrying = Retrying::new(model, steady());
    let error = retrying.complete(&request()).await.expect_err("gives up");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(retrying.inner().calls(), 1);
}

#[test]
fn jittered_backoff_stays_in_the_upper_half_of_each_step_and_is_capped() {
    let policy = RetryPolicy {
        jitter: true,
        ..steady()
    };
    for _ in 0..1000 {
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        let third = policy.backoff(3);
        assert!(third >= Duration::from_millis(1000) && third <= Duration::from_millis(2000));
        let capped = policy.backoff(40);
        assert!(capped >= Duration::from_secs(5) && capped <= Duration::from_secs(10));
    }
    let waits: std::collections::HashSet<Duration> = (0..20).map(|_| policy.backoff(2)).collect();
    assert!(waits.len() > 1, "jitter varies the wait");
}

#[tokio::test(start_paused = true)]
async fn retrying_a_stream_retries_until_the_first_delta_only() {
    let broken = ProviderError::new(ErrorKind::Transient, "connection reset");
    let model = ScriptedChatModel::new([
        // Fails before any text: retried.
        Step::Stream(vec![Err(broken.clone().into())]),
        // Fails after text: the caller has seen part of the answer, so the error is theirs.
        Step::Stream(vec![text("Par"), Err(broken.into())]),
        Step::text("never reached"),
    ]);
    let retrying = Retrying::new(model, steady());
    let stream = retrying
        .stream(&request())
        .await
        .expect("second attempt starts");
    let error = StreamCollector::collect(stream)
        .await
        .expect_err("breaks mid-way");
    match error {
        ChatError::StreamInterrupted { partial_text, .. } => assert_eq!(partial_text, "Par"),
        other => panic!("expected StreamInterrupted, got {other:?}"),
    }
    assert_eq!(retrying.inner().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn timeout_fires_on_a_stalled_call() {
    let timeout = Timeout::new(
        ScriptedChatModel::new([Step::Stall]),
        Duration::from_secs(5),
    );
    let start = Instant::now();
    let error = timeout.complete(&request()).await.expect_err("times out");
    assert!(matches!(error, ChatError::Timeout(d) if d == Duration::from_secs(5)));
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn timeout_lets_a_call_within_the_limit_through() {
    let slow = Step::Delayed(Duration::from_secs(4), Box::new(Step::text("Paris")));
    let timeout = Timeout::new(ScriptedChatModel::new([slow]), Duration::from_secs(5));
    assert_eq!(
        timeout.complete(&request()).await.expect("in time").text,
        "Paris"
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_cuts_a_stream_that_stalls_between_deltas() {
    let model = ScriptedChatModel::new([Step::StreamThenStall(vec![text("Paris "), text("is")])]);
    let timeout = Timeout::new(model, Duration::from_secs(2));
    let mut stream = timeout.stream(&request()).await.expect("starts");
    assert_eq!(
        stream.next().await.and_then(Result::ok),
        text("Paris ").ok()
    );
    assert_eq!(stream.next().await.and_then(Result::ok), text("is").ok());
    let start = Instant::now();
    let error = stream
        .next()
        .await
        .expect("an item")
        .expect_err("times out");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn retrying_a_timed_out_call_retries_it() {
    let model = ScriptedChatModel::new([Step::Stall, Step::text("Paris")]);
    let model = Retrying::new(Timeout::new(model, Duration::from_secs(1)), steady());
    let start = Instant::now();
    assert_eq!(
        model.complete(&request()).await.expect("retried").text,
        "Paris"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
}

#[tokio::test]
async fn fallback_moves_on_when_another_provider_may_help() {
    for kind in [
        ErrorKind::Transient,
        ErrorKind::RateLimited,
        ErrorKind::Timeout,
        ErrorKind::Auth,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::Permanent,
    ] {
        let primary = Arc::new(ScriptedChatModel::new([failure(kind)]));
        let secondary = Arc::new(ScriptedChatModel::new([Step::text("from secondary")]));
        let fallback = Fallback::new(primary.clone(), [secondary.clone()]);
        let answer = fallback
            .complete(&request())
            .await
            .expect("secondary answers");
        assert_eq!(answer.text, "from secondary", "after a {kind} error");
        assert_eq!((primary.calls(), secondary.calls()), (1, 1));
    }
}

#[tokio::test]
async fn fallback_does_not_send_an_invalid_request_on() {
    let primary = Arc::new(ScriptedChatModel::new([failure(ErrorKind::InvalidRequest)]));
    let secondary = Arc::new(ScriptedChatModel::new([Step::text("never")]));
    let fallback = Fallback::new(primary.clone(), [secondary.clone()]);
    let error = fallback.complete(&request()).await.expect_err("fails");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(secondary.calls(), 0);
}

#[tokio::test]
async fn fallback_returns_the_last_error_when_every_provider_fails() {
    let chain: Vec<Arc<ScriptedChatModel>> =
        [ErrorKind::Transient, ErrorKind::Auth, ErrorKind::Timeout]
            .into_iter()
            .map(|kind| Arc::new(ScriptedChatModel::new([failure(kind)])))
            .collect();
    let fallback = Fallback::new(chain[0].clone(), chain[1..].iter().cloned());
    let error = fallback.complete(&request()).await.expect_err("all fail");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(chain.iter().all(|m| m.calls() == 1));
}

#[tokio::test]
async fn fallback_stream_moves_on_only_before_the_first_delta() {
    let reset = ProviderError::new(ErrorKind::Transient, "connection reset");
    let primary = Arc::new(ScriptedChatModel::new([Step::Stream(vec![Err(
        reset.into()
    )])]));
    let secondary = Arc::new(ScriptedChatModel::new([Step::text("from secondary")]));
    let fallback = Fallback::new(primary.clone(), [secondary.clone()]);
    let stream = fallback.stream(&request()).await.expect("secondary starts");
    let answer = StreamCollector::collect(stream).await.expect("completes");
    assert_eq!(answer.text, "from secondary");
    assert_eq!((primary.calls(), secondary.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn composed_fallback_over_retrying_over_timeout() {
    // The primary stalls on every attempt; after its retries, the secondary answers.
    let primary = Arc::new(ScriptedChatModel::new([Step::Stall, Step::Stall]));
    let secondary = Arc::new(ScriptedChatModel::new([Step::text("from secondary")]));
    let policy = RetryPolicy {
        max_attempts: 2,
        ..steady()
    };
    let wrap = |m: Arc<ScriptedChatModel>| -> Arc<dyn ChatModel> {
        Arc::new(Retrying::new(
            Timeout::new(m, Duration::from_secs(1)),
            policy.clone(),
        ))
    };
    let model = Fallback::new(wrap(primary.clone()), [wrap(secondary.clone())]);
    let start = Instant::now();
    assert_eq!(
        model.complete(&request()).await.expect("answers").text,
        "from secondary"
    );
    assert_eq!((primary.calls(), secondary.calls()), (2, 1));
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn every_wrapper_forwards_raw_generation() {
    let primary = Arc::new(ScriptedChatModel::new([
        failure(ErrorKind::Transient),
        Step::Stall,
        failure(ErrorKind::Transient),
    ]));
    let secondary = Arc::new(ScriptedChatModel::new([Step::text(" Paris.")]));
    let policy = RetryPolicy {
        max_attempts: 3,
        ..steady()
    };
    let wrap = |m: Arc<ScriptedChatModel>| -> Arc<dyn ChatModel> {
        Arc::new(Retrying::new(
            Timeout::new(m, Duration::from_secs(1)),
            policy.clone(),
        ))
    };
    let model = Fallback::new(wrap(primary.clone()), [wrap(secondary.clone())]);
    let request = GenerateRequest::new("The capital city of France is called");
    // The primary fails, is retried, stalls past its timeout, is retried and fails again; the
    // secondary then answers.
    let stream = model.generate(&request).await.expect("secondary starts");
    let answer = StreamCollector::collect(stream).await.expect("completes");
    assert_eq!(answer.text, " Paris.");
    assert_eq!(primary.prompts(), vec![request.prompt.clone(); 3]);
    assert_eq!(secondary.prompts(), vec![request.prompt]);
}

#[tokio::test]
async fn a_model_that_only_chats_says_so_for_raw_prompts() {
    struct ChatOnly;
    #[async_trait::async_trait]
    impl ChatModel for ChatOnly {
        async fn stream(&self, _: &ChatRequest) -> Result<crate::chat::ChatStream, ChatError> {
            Err(ChatError::InvalidRequest("unused".into()))
        }
    }
    let error = Retrying::new(ChatOnly, steady())
        .generate(&GenerateRequest::new("hi"))
        .await
        .err()
        .expect("refused");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.to_string().contains("chat messages only"), "{error}");
}
