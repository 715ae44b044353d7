//! The agent loop against a scripted model: every branch of a turn, checked through what the
//! model was asked, what the tools saw, the events streamed and the turn saved.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corral_agents::{
    Agent, AgentEvent, AgentSettings, ContextPolicy, ContextSettings, MemorySessionStore,
    SessionStore, StepDelta, StepDetails, StepKind, StopReason, ToolResult, TurnStatus,
};
use corral_core::testing::{ScriptedChatModel, Step};
use corral_core::{
    ChatDelta, ChatError, ErrorKind, Message, ProviderError, ResponseFormat, Shield, ShieldError,
    Tool, ToolCall, ToolChoice, ToolError, ToolOutput, ToolSpec, Violation, ViolationLevel,
    async_trait,
};
use corral_tools::tool_fn;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

mod support;

fn call(id: &str, name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments,
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct CityArgs {
    city: String,
}

/// A weather tool that counts its calls.
fn weather(calls: Arc<AtomicUsize>) -> Arc<dyn Tool> {
    Arc::new(
        tool_fn("weather", "Weather in a city", move |args: CityArgs| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if args.city == "Atlantis" {
                    return Err(ToolError::Failed("no station in Atlantis".into()));
                }
                Ok(ToolOutput::text(format!("{}: 21°C, sunny", args.city)))
            }
        })
        .expect("tool"),
    )
}

fn agent(model: Arc<ScriptedChatModel>, tools: Vec<Arc<dyn Tool>>) -> Agent {
    Agent::builder(model)
        .instructions("You are terse.")
        .tools(tools)
        .build()
        .expect("agent")
}

async fn events_of(agent: &Agent, session: &str, text: &str) -> Vec<AgentEvent> {
    let stream = agent
        .turn(session, vec![Message::user(text)])
        .await
        .expect("turn starts");
    stream.map(|event| event.expect("no error")).collect().await
}

fn completed(events: &[AgentEvent]) -> corral_agents::Turn {
    match events.last() {
        Some(AgentEvent::TurnCompleted { turn }) => (**turn).clone(),
        other => panic!("expected TurnCompleted last, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tool_call_runs_and_its_result_goes_back_to_the_model() {
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![call("c1", "weather", json!({"city": "Oslo"}))]),
        Step::text("It is 21°C and sunny in Oslo."),
    ]));
    let calls = Arc::new(AtomicUsize::new(0));
    let agent = agent(model.clone(), vec![weather(calls.clone())]);
    let session = agent.create_session("test").await.expect("session");
    let events = events_of(&agent, &session.id, "Weather in Oslo?").await;
    let turn = completed(&events);

    assert_eq!(turn.answer, "It is 21°C and sunny in Oslo.");
    assert_eq!(turn.stop_reason, Some(StopReason::EndOfTurn));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let kinds: Vec<StepKind> = turn.steps.iter().map(|s| s.kind()).collect();
    assert_eq!(
        kinds,
        [
            StepKind::Inference,
            StepKind::ToolExecution,
            StepKind::Inference
        ]
    );

    let requests = model.requests();
    assert_eq!(requests[0].messages[0], Message::system("You are terse."));
    assert_eq!(requests[0].tools[0].name, "weather");
    let second = &requests[1].messages;
    assert_eq!(
        second.last(),
        Some(&Message::tool_result("c1", "Oslo: 21°C, sunny"))
    );

    // The events tell the whole story in order.
    assert!(matches!(events[0], AgentEvent::TurnStarted { .. }));
    let started = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::StepStarted { .. }))
        .count();
    let finished = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::StepCompleted { .. }))
        .count();
    assert_eq!((started, finished), (3, 3));
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::StepProgress { delta: StepDelta::Text { text }, .. } if text.contains("Oslo")
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::StepProgress { delta: StepDelta::ToolCallFinished { result }, .. }
            if result.content == "Oslo: 21°C, sunny"
    )));

    // Saved, and the next turn sees the conversation.
    let saved = agent.sessions().turns(&session.id).await.expect("turns");
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0], turn);
}

#[tokio::test]
async fn a_failing_tool_is_reported_to_the_model_and_the_turn_goes_on() {
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![call("c1", "weather", json!({"city": "Atlantis"}))]),
        Step::text("I could not find Atlantis."),
    ]));
    let agent = agent(model.clone(), vec![weather(Arc::default())]);
    let session = agent.create_session("test").await.expect("session");
    let turn = agent
        .ask(&session.id, "Weather in Atlantis?")
        .await
        .expect("turn");
    assert_eq!(turn.answer, "I could not find Atlantis.");
    let fed_back = model.requests()[1]
        .messages
        .last()
        .cloned()
        .expect("message");
    assert!(
        fed_back.text().contains("no station in Atlantis"),
        "{fed_back:?}"
    );
    match &turn.steps[1].details {
        StepDetails::ToolExecution { results, .. } => assert!(results[0].error.is_some()),
        other => panic!("expected a tool step, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_calls_are_fed_back_a_bounded_number_of_times() {
    // Arguments that were not JSON, an unknown tool, then arguments that break the schema.
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![call("c1", "weather", json!("{city: Oslo"))]),
        Step::tool_calls(vec![call("c2", "wether", json!({"city": "Oslo"}))]),
        Step::tool_calls(vec![call("c3", "weather", json!({"town": "Oslo"}))]),
        Step::text("never reached"),
    ]));
    let calls = Arc::new(AtomicUsize::new(0));
    let agent = agent(model.clone(), vec![weather(calls.clone())]);
    let session = agent.create_session("test").await.expect("session");
    let turn = agent.ask(&session.id, "Weather?").await.expect("turn");
    assert_eq!(
        turn.stop_reason,
        Some(StopReason::MalformedToolCalls { attempts: 3 })
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no bad call reached the tool"
    );
    assert!(turn.answer.contains("could not be used"), "{}", turn.answer);
    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[1]
            .messages
            .last()
            .expect("m")
            .text()
            .contains("not a JSON object")
    );
    assert!(
        requests[2]
            .messages
            .last()
            .expect("m")
            .text()
            .contains("no tool named `wether`")
    );
}

#[tokio::test]
async fn a_call_the_model_could_not_write_is_fed_back_and_recovered() {
    let model = Arc::new(ScriptedChatModel::new([
        Step::Stream(vec![
            Ok(ChatDelta::Text {
                text: "[weather(city=".into(),
            }),
            Ok(ChatDelta::ToolCallError {
                message: "unterminated call".into(),
            }),
        ]),
        Step::text("Sunny."),
    ]));
    let agent = agent(model.clone(), vec![weather(Arc::default())]);
    let session = agent.create_session("test").await.expect("session");
    let turn = agent.ask(&session.id, "Weather?").await.expect("turn");
    assert_eq!(turn.answer, "Sunny.");
    let retry = model.requests()[1]
        .messages
        .last()
        .cloned()
        .expect("message");
    assert!(retry.text().contains("unterminated call"), "{retry:?}");
}

#[tokio::test]
async fn independent_calls_run_concurrently() {
    // Each call waits until both have started: run one after the other, they would deadlock.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let tool: Arc<dyn Tool> = Arc::new(
        tool_fn("weather", "Weather", move |args: CityArgs| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                Ok(ToolOutput::text(format!("{}: ok", args.city)))
            }
        })
        .expect("tool"),
    );
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![
            call("a", "weather", json!({"city": "Oslo"})),
            call("b", "weather", json!({"city": "Rome"})),
        ]),
        Step::text("Both fine."),
    ]));
    let agent = agent(model.clone(), vec![tool]);
    let session = agent.create_session("test").await.expect("session");
    let turn = tokio::time::timeout(Duration::from_secs(10), agent.ask(&session.id, "Both?"))
        .await
        .expect("the calls ran concurrently")
        .expect("turn");
    assert_eq!(turn.answer, "Both fine.");
    let messages = &model.requests()[1].messages;
    let n = messages.len();
    assert_eq!(messages[n - 2], Message::tool_result("a", "Oslo: ok"));
    assert_eq!(messages[n - 1], Message::tool_result("b", "Rome: ok"));
}

#[tokio::test]
async fn a_client_tool_pauses_the_turn_until_its_result_is_supplied() {
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![call("c1", "get_location", json!({}))]),
        Step::text("You are in Lyon."),
    ]));
    let agent = Agent::builder(model.clone())
        .client_tool(ToolSpec {
            name: "get_location".into(),
            description: "The user's location".into(),
            parameters: json!({"type": "object", "properties": {}}),
        })
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let paused = agent.ask(&session.id, "Where am I?").await.expect("turn");
    assert_eq!(paused.status, TurnStatus::AwaitingInput);
    assert_eq!(paused.pending_tool_calls[0].name, "get_location");
    assert_eq!(model.remaining(), 1, "the model waits for the result");

    // A wrong call id is refused; the right one resumes.
    assert!(
        agent
            .resume(&session.id, &paused.id, vec![ToolResult::client("zz", "x")])
            .await
            .is_err()
    );
    let resumed = corral_agents::finish(
        agent
            .resume(
                &session.id,
                &paused.id,
                vec![ToolResult::client("c1", "Lyon")],
            )
            .await
            .expect("resumes"),
    )
    .await
    .expect("turn");
    assert_eq!(resumed.id, paused.id);
    assert_eq!(resumed.status, TurnStatus::Completed);
    assert_eq!(resumed.answer, "You are in Lyon.");
    let last = model.requests()[1]
        .messages
        .last()
        .cloned()
        .expect("message");
    assert_eq!(last, Message::tool_result("c1", "Lyon"));
    let saved = agent.sessions().turns(&session.id).await.expect("turns");
    assert_eq!(saved.len(), 1, "the resumed turn replaced the paused one");
    assert_eq!(saved[0].status, TurnStatus::Completed);
}

/// A shield that flags messages containing a word.
struct WordShield {
    word: &'static str,
    level: ViolationLevel,
}

#[async_trait]
impl Shield for WordShield {
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError> {
        let last = messages.last().map(Message::text).unwrap_or_default();
        Ok(last
            .contains(self.word)
            .then(|| Violation::new(self.level, format!("I can't help with {}.", self.word))))
    }
}

#[tokio::test]
async fn an_input_violation_ends_the_turn_before_any_model_call() {
    let model = Arc::new(ScriptedChatModel::new([]));
    let agent = Agent::builder(model.clone())
        .input_shield(
            "rules",
            Arc::new(WordShield {
                word: "explosives",
                level: ViolationLevel::Error,
            }),
        )
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let turn = agent
        .ask(&session.id, "how to make explosives")
        .await
        .expect("turn");
    assert_eq!(turn.answer, "I can't help with explosives.");
    assert_eq!(
        turn.stop_reason,
        Some(StopReason::Shield {
            shield: "rules".into()
        })
    );
    assert_eq!(model.calls(), 0);
}

#[tokio::test]
async fn an_output_violation_replaces_the_answer_and_a_warning_is_reported() {
    let model = Arc::new(ScriptedChatModel::new([
        Step::text("The password is hunter2."),
        Step::text("ok"),
    ]));
    let agent = Agent::builder(model.clone())
        .input_shield(
            "soft",
            Arc::new(WordShield {
                word: "password",
                level: ViolationLevel::Warn,
            }),
        )
        .output_shield(
            "secrets",
            Arc::new(WordShield {
                word: "hunter2",
                level: ViolationLevel::Error,
            }),
        )
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let events = events_of(&agent, &session.id, "What is the password?").await;
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::StepProgress { delta: StepDelta::ShieldWarning { shield, .. }, .. } if shield == "soft"
    )));
    let turn = completed(&events);
    assert_eq!(turn.answer, "I can't help with hunter2.");
    // The blocked answer is not in the conversation the next turn sees.
    agent.ask(&session.id, "and now?").await.expect("turn");
    let second = &model.requests()[1].messages;
    assert!(
        !second
            .iter()
            .any(|m| m.text() == "The password is hunter2.")
    );
}

#[tokio::test]
async fn a_shield_that_cannot_decide_fails_the_turn() {
    struct Broken;
    #[async_trait]
    impl Shield for Broken {
        async fn check(&self, _: &[Message]) -> Result<Option<Violation>, ShieldError> {
            Err(ShieldError::UnparseableVerdict("maybe".into()))
        }
    }
    let model = Arc::new(ScriptedChatModel::new([]));
    let agent = Agent::builder(model.clone())
        .input_shield("guard", Arc::new(Broken))
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let error = agent
        .ask(&session.id, "hi")
        .await
        .expect_err("fails closed");
    assert!(error.to_string().contains("guard"), "{error}");
    assert_eq!(model.calls(), 0);
    let saved = agent.sessions().turns(&session.id).await.expect("turns");
    assert_eq!(saved[0].status, TurnStatus::Failed);
}

#[tokio::test]
async fn the_loop_stops_at_max_iterations() {
    let model = Arc::new(ScriptedChatModel::new((0..3).map(|i| {
        Step::tool_calls(vec![call(
            &format!("c{i}"),
            "weather",
            json!({"city": format!("City {i}")}),
        )])
    })));
    let agent = Agent::builder(model.clone())
        .tools([weather(Arc::default())])
        .settings(AgentSettings {
            max_infer_iters: 3,
            ..AgentSettings::default()
        })
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let turn = agent.ask(&session.id, "Tour?").await.expect("turn");
    assert_eq!(
        turn.stop_reason,
        Some(StopReason::MaxIterations { limit: 3 })
    );
    assert!(turn.answer.contains("3 model calls"), "{}", turn.answer);
    assert_eq!(model.calls(), 3);
}

#[tokio::test]
async fn repeating_the_same_call_stops_the_loop_with_a_reason() {
    // The same call with its keys in another order is still the same call.
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![call("a", "search", json!({"q": "x", "n": 1}))]),
        Step::tool_calls(vec![call("b", "search", json!({"n": 1, "q": "x"}))]),
        Step::tool_calls(vec![call("c", "search", json!({"q": "x", "n": 1}))]),
        Step::text("the next turn"),
    ]));
    #[derive(Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Q {
        q: String,
        n: u32,
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let search: Arc<dyn Tool> = Arc::new(
        tool_fn("search", "Search", move |_: Q| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(ToolOutput::text("nothing")) }
        })
        .expect("tool"),
    );
    let agent = agent(model.clone(), vec![search]);
    let session = agent.create_session("test").await.expect("session");
    let turn = agent.ask(&session.id, "Find x").await.expect("turn");
    assert_eq!(
        turn.stop_reason,
        Some(StopReason::RepeatedToolCall {
            tool: "search".into(),
            times: 3
        })
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(
        turn.answer.contains("same arguments 3 times"),
        "{}",
        turn.answer
    );
    // The next turn sees a well-formed conversation: the stopped turn ends with an assistant
    // message, not with a tool result or an unanswered call.
    agent
        .ask(&session.id, "Try again")
        .await
        .expect("next turn");
    let next = &model.requests()[3].messages;
    let before = &next[next.len() - 2];
    assert_eq!(before, &Message::assistant(turn.answer.clone()));
}

#[tokio::test]
async fn an_answer_that_breaks_the_schema_is_repaired_once() {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
        "required": ["city", "temp"]
    });
    let settings = AgentSettings {
        response_format: ResponseFormat::JsonSchema {
            name: "reading".into(),
            schema,
            strict: true,
        },
        ..AgentSettings::default()
    };
    let repaired = Arc::new(ScriptedChatModel::new([
        Step::text("{\"city\": \"Oslo\"}"),
        Step::text("```json\n{\"city\": \"Oslo\", \"temp\": 21}\n```"),
    ]));
    let agent = Agent::builder(repaired.clone())
        .settings(settings.clone())
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let turn = agent.ask(&session.id, "Reading?").await.expect("turn");
    assert_eq!(turn.stop_reason, Some(StopReason::EndOfTurn));
    assert!(turn.answer.contains("\"temp\": 21"));
    let ask = repaired.requests()[1]
        .messages
        .last()
        .cloned()
        .expect("message");
    assert!(ask.text().contains("`temp`"), "{ask:?}");
    assert!(matches!(
        repaired.requests()[0].response_format,
        ResponseFormat::JsonSchema { .. }
    ));

    let hopeless = Arc::new(ScriptedChatModel::new([
        Step::text("not json"),
        Step::text("still not json"),
    ]));
    let agent = Agent::builder(hopeless.clone())
        .settings(settings)
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let turn = agent.ask(&session.id, "Reading?").await.expect("turn");
    assert!(matches!(
        turn.stop_reason,
        Some(StopReason::InvalidOutput { .. })
    ));
    assert_eq!(hopeless.calls(), 2);
}

#[tokio::test]
async fn tool_choice_applies_to_the_first_call_only() {
    let model = Arc::new(ScriptedChatModel::new([
        Step::tool_calls(vec![call("c1", "weather", json!({"city": "Oslo"}))]),
        Step::text("done"),
    ]));
    let agent = Agent::builder(model.clone())
        .tools([weather(Arc::default())])
        .settings(AgentSettings {
            tool_choice: ToolChoice::Required,
            ..AgentSettings::default()
        })
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    agent.ask(&session.id, "Weather?").await.expect("turn");
    let requests = model.requests();
    assert_eq!(requests[0].tool_choice, ToolChoice::Required);
    assert_eq!(requests[1].tool_choice, ToolChoice::Auto);

    let unknown = Agent::builder(model)
        .settings(AgentSettings {
            tool_choice: ToolChoice::Tool("nope".into()),
            ..AgentSettings::default()
        })
        .build();
    assert!(unknown.is_err());
}

#[tokio::test]
async fn a_provider_error_fails_the_turn_and_keeps_earlier_turns() {
    let model = Arc::new(ScriptedChatModel::new([
        Step::text("first answer"),
        Step::Fail(ChatError::Provider(ProviderError::new(
            ErrorKind::Transient,
            "connection reset",
        ))),
    ]));
    let agent = agent(model, vec![]);
    let session = agent.create_session("test").await.expect("session");
    agent.ask(&session.id, "one").await.expect("first turn");
    let error = agent
        .ask(&session.id, "two")
        .await
        .expect_err("second fails");
    assert!(error.to_string().contains("connection reset"), "{error}");
    let saved = agent.sessions().turns(&session.id).await.expect("turns");
    assert_eq!(saved.len(), 2);
    assert_eq!(saved[0].status, TurnStatus::Completed);
    assert_eq!(saved[1].status, TurnStatus::Failed);
}

#[tokio::test]
async fn history_carries_over_and_old_turns_are_dropped_when_the_context_is_full() {
    let model =
        Arc::new(ScriptedChatModel::new((0..4).map(|i| {
            Step::text(format!("answer {i} {}", "word ".repeat(100)))
        })));
    let agent = Agent::builder(model.clone())
        .settings(AgentSettings {
            max_tokens: Some(100),
            context: ContextSettings {
                max_tokens: 500,
                policy: ContextPolicy::DropOldest,
            },
            ..AgentSettings::default()
        })
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    for i in 0..4 {
        agent
            .ask(&session.id, &format!("question {i}"))
            .await
            .expect("turn");
    }
    let requests = model.requests();
    // Turn 1 sees turn 0; by turn 3 the oldest turns no longer fit and are left out whole.
    assert!(
        requests[1]
            .messages
            .iter()
            .any(|m| m.text() == "question 0")
    );
    let last = &requests[3].messages;
    assert!(!last.iter().any(|m| m.text() == "question 0"), "{last:?}");
    assert!(last.iter().any(|m| m.text() == "question 2"));
    assert_eq!(
        last.last().map(Message::text).as_deref(),
        Some("question 3")
    );

    // The current turn alone too long: a clear error, never a silent cut.
    let long = "word ".repeat(2_000);
    let error = agent.ask(&session.id, &long).await.expect_err("too long");
    assert!(matches!(
        error,
        corral_agents::AgentError::ContextTooLong { .. }
    ));
}

#[tokio::test]
async fn the_summarize_policy_replaces_old_turns_with_a_summary() {
    let mut steps: Vec<Step> = (0..3)
        .map(|i| Step::text(format!("answer {i} {}", "word ".repeat(100))))
        .collect();
    steps.push(Step::text("The user asked questions 0 and 1."));
    steps.push(Step::text("final"));
    let model = Arc::new(ScriptedChatModel::new(steps));
    let agent = Agent::builder(model.clone())
        .settings(AgentSettings {
            max_tokens: Some(100),
            context: ContextSettings {
                max_tokens: 500,
                policy: ContextPolicy::Summarize,
            },
            ..AgentSettings::default()
        })
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    for i in 0..3 {
        agent
            .ask(&session.id, &format!("question {i}"))
            .await
            .expect("turn");
    }
    let turn = agent.ask(&session.id, "question 3").await.expect("turn");
    assert_eq!(turn.answer, "final");
    let requests = model.requests();
    let summary_request = &requests[3];
    assert!(summary_request.messages[1].text().contains("question 0"));
    let last = &requests[4].messages;
    assert!(
        last.iter().any(|m| m
            .text()
            .contains("Summary of the earlier conversation: The user asked")),
        "{last:?}"
    );
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_turn() {
    let model = Arc::new(ScriptedChatModel::new([Step::StreamThenStall(vec![Ok(
        ChatDelta::Text {
            text: "thinking".into(),
        },
    )])]));
    let store = Arc::new(MemorySessionStore::new());
    let agent = Agent::builder(model)
        .sessions(store.clone())
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let mut stream = agent
        .turn(&session.id, vec![Message::user("hi")])
        .await
        .expect("turn");
    // Read until the text arrives, then walk away.
    while let Some(event) = stream.next().await {
        if matches!(
            event.expect("event"),
            AgentEvent::StepProgress {
                delta: StepDelta::Text { .. },
                ..
            }
        ) {
            break;
        }
    }
    drop(stream);
    // The session is free again at once, and nothing of the cancelled turn was saved.
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        agent.turn(&session.id, vec![Message::user("again")]),
    )
    .await
    .expect("the session lock was released");
    assert!(next.is_ok());
    assert!(store.turns(&session.id).await.expect("turns").is_empty());
}

#[tokio::test]
async fn concurrent_sessions_are_independent() {
    let model = Arc::new(ScriptedChatModel::new(
        (0..20).map(|i| Step::text(format!("answer {i}"))),
    ));
    let agent = agent(model, vec![]);
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(agent.create_session("test").await.expect("session").id);
    }
    let turns = futures::future::join_all(sessions.iter().flat_map(|id| {
        let agent = agent.clone();
        (0..2).map(move |i| {
            let agent = agent.clone();
            let id = id.clone();
            async move { agent.ask(&id, &format!("q{i}")).await }
        })
    }))
    .await;
    assert!(turns.iter().all(Result::is_ok));
    for id in &sessions {
        let saved = agent.sessions().turns(id).await.expect("turns");
        assert_eq!(
            saved.iter().map(|t| t.seq).collect::<Vec<_>>(),
            [0, 1],
            "turns of one session run one after the other"
        );
    }
}

#[tokio::test]
async fn retrieved_passages_reach_the_model_with_numbers_and_become_citations() {
    let chunk = support::chunk(
        "c1",
        "animals.md",
        "The llama is a domesticated South American camelid.",
    );
    let retriever = support::retriever(vec![chunk]);
    let model = Arc::new(ScriptedChatModel::new([
        Step::text("A llama is a camelid [1]."),
        Step::text("You're welcome."),
    ]));
    let agent = Agent::builder(model.clone())
        .retriever(retriever)
        .build()
        .expect("agent");
    let session = agent.create_session("test").await.expect("session");
    let turn = agent
        .ask(&session.id, "What is a llama?")
        .await
        .expect("turn");
    assert_eq!(turn.citations.len(), 1);
    assert_eq!(turn.citations[0].source, "animals.md");
    assert_eq!(turn.steps[0].kind(), StepKind::Retrieval);
    let prompt = model.requests()[0].messages.last().expect("m").text();
    assert!(prompt.contains("[1] animals.md › Llamas"), "{prompt}");
    assert!(prompt.contains("Question: What is a llama?"), "{prompt}");

    // The next turn's history holds the question as asked, not the passages.
    agent.ask(&session.id, "Thanks").await.expect("turn");
    let second = &model.requests()[1].messages;
    assert!(second.iter().any(|m| m.text() == "What is a llama?"));
}

#[tokio::test]
async fn an_empty_input_and_an_unknown_session_are_errors() {
    let agent = agent(Arc::new(ScriptedChatModel::new([])), vec![]);
    assert!(agent.turn("nope", vec![Message::user("hi")]).await.is_err());
    let session = agent.create_session("test").await.expect("session");
    assert!(agent.turn(&session.id, vec![]).await.is_err());
}
