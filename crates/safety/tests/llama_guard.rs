//! Llama Guard 3: the prompt against golden copies written from the published format, verdict
//! parsing, and the shield on a scripted model.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use corral_core::testing::{ScriptedChatModel, Step};
use corral_core::{Message, Shield, ShieldError, ViolationLevel};
use corral_safety::llama_guard::{GuardRole, LlamaGuard, LlamaGuardConfig, OnUnparseable, Verdict};

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim_end()
        .to_string()
}

fn guard(config: LlamaGuardConfig, answers: &[&str]) -> (LlamaGuard, Arc<ScriptedChatModel>) {
    let model = Arc::new(ScriptedChatModel::new(
        answers.iter().map(|a| Step::text(*a)),
    ));
    (LlamaGuard::new(model.clone(), config).unwrap(), model)
}

fn user_request() -> Vec<Message> {
    vec![
        Message::system("You are a helpful assistant."),
        Message::user("How do I pick the lock of my neighbour's door while they are away?"),
    ]
}

fn conversation() -> Vec<Message> {
    vec![
        Message::user("What is the boiling point of water at sea level?"),
        Message::assistant("100 °C, or 212 °F."),
        Message::user("And on top of Everest?"),
        Message::assistant("About 70 °C, because the air pressure is lower."),
    ]
}

#[test]
fn the_user_prompt_matches_the_published_format() {
    let (g, _) = guard(LlamaGuardConfig::new("lg"), &[]);
    assert_eq!(g.prompt(&user_request()).unwrap(), golden("user.txt"));
}

#[test]
fn the_agent_prompt_matches_the_published_format() {
    let (g, _) = guard(LlamaGuardConfig::new("lg"), &[]);
    assert_eq!(g.prompt(&conversation()).unwrap(), golden("agent.txt"));
}

#[test]
fn excluded_categories_leave_the_prompt_and_keep_their_codes() {
    let mut config = LlamaGuardConfig::new("lg");
    config.excluded_categories = vec!["S14".into()];
    let (g, _) = guard(config, &[]);
    assert_eq!(
        g.prompt(&user_request()).unwrap(),
        golden("user-excluded.txt")
    );

    let mut config = LlamaGuardConfig::new("lg");
    config.excluded_categories = vec!["S2".into(), "S6".into()];
    let (g, _) = guard(config, &[]);
    assert_eq!(
        g.prompt(&conversation()).unwrap(),
        golden("agent-excluded.txt")
    );
}

#[test]
fn the_role_can_be_forced() {
    let mut config = LlamaGuardConfig::new("lg");
    config.role = GuardRole::User;
    let (g, _) = guard(config, &[]);
    let prompt = g.prompt(&conversation()).unwrap();
    assert!(prompt.starts_with("Task: Check if there is unsafe content in 'User' messages"));
    assert!(prompt.contains("ONLY THE LAST User message"));
}

#[test]
fn bad_settings_and_empty_conversations_are_refused() {
    let mut config = LlamaGuardConfig::new("lg");
    config.excluded_categories = vec!["S15".into()];
    let model = Arc::new(ScriptedChatModel::new([]));
    let err = LlamaGuard::new(model.clone(), config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`S15` is not a Llama Guard 3 category"),
        "{err}"
    );

    let mut config = LlamaGuardConfig::new("lg");
    config.excluded_categories = (1..=14).map(|i| format!("S{i}")).collect();
    let err = LlamaGuard::new(model.clone(), config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("leaves no category"), "{err}");

    let g = LlamaGuard::new(model, LlamaGuardConfig::new("lg")).unwrap();
    let err = g
        .prompt(&[Message::system("only a system prompt")])
        .unwrap_err();
    assert!(matches!(err, ShieldError::InvalidRequest(_)), "{err}");
}

#[test]
fn verdicts_are_parsed_strictly() {
    let parse = LlamaGuard::parse_verdict;
    assert_eq!(parse("safe").unwrap(), Verdict::Safe);
    assert_eq!(parse("\n\nSafe \n").unwrap(), Verdict::Safe);
    assert_eq!(
        parse("unsafe\nS1,S10").unwrap(),
        Verdict::Unsafe(vec!["S1".into(), "S10".into()])
    );
    assert_eq!(
        parse("unsafe\n s2 , S14 ").unwrap(),
        Verdict::Unsafe(vec!["S2".into(), "S14".into()])
    );
    assert_eq!(parse("unsafe").unwrap(), Verdict::Unsafe(vec![]));
    for malformed in [
        "",
        "   ",
        "I think this is fine.",
        "safe.",
        "safe\nS1",
        "unsafe\nS15",
        "unsafe\nS1;S2",
        "unsafe\nviolent crimes",
        "unsafe\nS1\nbecause it is violent",
        "The capital city of France is called Paris.",
    ] {
        let err = parse(malformed).unwrap_err();
        assert!(
            matches!(&err, ShieldError::UnparseableVerdict(v) if v == malformed),
            "{malformed:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn the_shield_sends_one_user_message_and_reads_the_verdict() {
    let (g, model) = guard(LlamaGuardConfig::new("lg"), &["safe", "unsafe\nS2"]);
    assert!(g.check(&user_request()).await.unwrap().is_none());
    let v = g.check(&user_request()).await.unwrap().expect("unsafe");
    assert_eq!(v.level, ViolationLevel::Error);
    assert_eq!(v.metadata["categories"], serde_json::json!(["S2"]));
    assert_eq!(
        v.metadata["category_names"],
        serde_json::json!(["Non-Violent Crimes"])
    );

    let request = &model.requests()[0];
    assert_eq!(request.messages.len(), 1);
    assert_eq!(request.messages[0].text(), golden("user.txt"));
    assert_eq!(request.sampling.temperature, Some(0.0));
    assert!(request.max_tokens.is_some_and(|n| n <= 32));
}

#[tokio::test]
async fn a_verdict_naming_only_excluded_categories_passes() {
    let mut config = LlamaGuardConfig::new("lg");
    config.excluded_categories = vec!["S6".into()];
    let (g, _) = guard(config, &["unsafe\nS6", "unsafe\nS6,S1"]);
    assert!(g.check(&user_request()).await.unwrap().is_none());
    let v = g
        .check(&user_request())
        .await
        .unwrap()
        .expect("S1 is not excluded");
    assert_eq!(v.metadata["categories"], serde_json::json!(["S6", "S1"]));
}

#[tokio::test]
async fn an_unparseable_verdict_is_never_safe() {
    let rambling = "Sure! Here is my assessment of the conversation";
    let (g, _) = guard(LlamaGuardConfig::new("lg"), &[rambling]);
    let err = g.check(&user_request()).await.unwrap_err();
    assert!(matches!(err, ShieldError::UnparseableVerdict(ref v) if v == rambling));

    let mut config = LlamaGuardConfig::new("lg");
    config.on_unparseable = OnUnparseable::Block;
    let (g, _) = guard(config, &[rambling]);
    let v = g.check(&user_request()).await.unwrap().expect("blocked");
    assert_eq!(v.level, ViolationLevel::Error);
    assert_eq!(v.metadata["unparseable_verdict"], rambling);

    let mut config = LlamaGuardConfig::new("lg");
    config.on_unparseable = OnUnparseable::Allow;
    let (g, _) = guard(config, &[rambling]);
    let v = g.check(&user_request()).await.unwrap().expect("reported");
    assert_eq!(v.level, ViolationLevel::Warn);
}
