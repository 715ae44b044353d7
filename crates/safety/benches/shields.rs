//! The shields on the red-team set (`data/redteam.jsonl`): detection and false-positive rates per
//! shield, a threshold sweep for the prompt-injection heuristic, and the cost of a check.
//!
//! `cargo bench -p corral-safety --bench shields`. Without `--bench` among its arguments it does
//! nothing, because `cargo test --all-targets` runs bench targets too.

use std::error::Error;
use std::time::Instant;

use corral_core::Shield;
use corral_safety::injection::{self, InjectionConfig, PromptInjection};
use corral_safety::pii::{Pii, PiiConfig};
use corral_safety::redteam::{self, Example, Label, Origin, Rates};
use corral_safety::rules::{Rules, RulesConfig};

fn main() -> Result<(), Box<dyn Error>> {
    if !std::env::args().any(|arg| arg == "--bench") {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn Error>> {
    let set = redteam::parse("data/redteam.jsonl", redteam::BUNDLED)?;
    let count = |label| set.iter().filter(|e| e.label == label).count();
    println!(
        "red-team set: {} examples ({} harmful, {} injection, {} benign)\n",
        set.len(),
        count(Label::Harmful),
        count(Label::Injection),
        count(Label::Benign)
    );

    let injection = PromptInjection::new(InjectionConfig::default(), None)?;
    let rules = Rules::new(RulesConfig {
        presets: vec!["harmful-requests".into()],
        ..RulesConfig::default()
    })?;
    let pii = Pii::new(PiiConfig::default())?;

    println!("| shield | flags | detected | false positives | µs per check |");
    println!("|---|---|---|---|---|");
    let is = |label| move |e: &Example| e.label == label;
    row(
        "prompt-injection",
        "injection",
        &injection,
        &set,
        is(Label::Injection),
    )
    .await?;
    for origin in [Origin::Input, Origin::Document, Origin::ToolResult] {
        let subset: Vec<Example> = set.iter().filter(|e| e.origin == origin).cloned().collect();
        let name = format!("prompt-injection, {origin:?}");
        row(
            &name,
            "injection",
            &injection,
            &subset,
            is(Label::Injection),
        )
        .await?;
    }
    let heldout = redteam::parse("data/heldout.jsonl", redteam::HELDOUT)?;
    row(
        "prompt-injection, held-out set",
        "injection",
        &injection,
        &heldout,
        is(Label::Injection),
    )
    .await?;
    for origin in [Origin::Input, Origin::Document, Origin::ToolResult] {
        let subset: Vec<Example> = heldout
            .iter()
            .filter(|e| e.origin == origin)
            .cloned()
            .collect();
        let name = format!("prompt-injection, held-out, {origin:?}");
        row(
            &name,
            "injection",
            &injection,
            &subset,
            is(Label::Injection),
        )
        .await?;
    }
    row(
        "rules (harmful-requests)",
        "harmful",
        &rules,
        &set,
        is(Label::Harmful),
    )
    .await?;
    row("pii", "nothing", &pii, &set, |_| false).await?;

    println!("\nprompt-injection heuristic, threshold sweep (detected / false positives):");
    println!("| threshold | input | documents and tool results |");
    println!("|---|---|---|");
    let scored: Vec<(&Example, f32)> = set
        .iter()
        .map(|e| (e, injection::score(&e.text).score))
        .collect();
    for step in 6..=16 {
        let threshold = step as f32 * 0.05;
        let cell = |content: bool| {
            let pick = |e: &&(&Example, f32)| (e.0.origin != Origin::Input) == content;
            let mut rates = Rates::default();
            for (e, s) in scored.iter().filter(pick) {
                match e.label {
                    Label::Injection => {
                        rates.positives += 1;
                        rates.detected += usize::from(*s >= threshold);
                    }
                    Label::Benign => {
                        rates.negatives += 1;
                        rates.false_positives += usize::from(*s >= threshold);
                    }
                    Label::Harmful => {}
                }
            }
            format!(
                "{:.0}% / {:.1}%",
                100.0 * rates.detection_rate(),
                100.0 * rates.false_positive_rate()
            )
        };
        println!("| {threshold:.2} | {} | {} |", cell(false), cell(true));
    }
    Ok(())
}

async fn row(
    name: &str,
    flags: &str,
    shield: &dyn Shield,
    set: &[Example],
    should_flag: impl Fn(&Example) -> bool + Copy,
) -> Result<(), Box<dyn Error>> {
    let rates = redteam::evaluate(shield, set, should_flag).await?;
    let checks = rates.positives + rates.negatives;
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        redteam::evaluate(shield, set, should_flag).await?;
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / (rounds * checks.max(1)) as f64;
    let detected = if rates.positives == 0 {
        "—".to_string()
    } else {
        format!(
            "{}/{} ({:.0}%)",
            rates.detected,
            rates.positives,
            100.0 * rates.detection_rate()
        )
    };
    println!(
        "| {name} | {flags} | {detected} | {}/{} ({:.1}%) | {micros:.1} |",
        rates.false_positives,
        rates.negatives,
        100.0 * rates.false_positive_rate()
    );
    if std::env::var_os("CORRAL_REDTEAM_VERBOSE").is_some() {
        for (what, ids) in [
            ("missed", &rates.missed),
            ("wrongly flagged", &rates.wrongly_flagged),
        ] {
            for id in ids {
                let Some(example) = set.iter().find(|e| &e.id == id) else {
                    continue;
                };
                let score = injection::score(&example.text);
                let signals: Vec<String> = score
                    .found
                    .iter()
                    .map(|f| {
                        let hidden = if f.decoded { "decoded:" } else { "" };
                        format!("{hidden}{}={:.2}", f.signal, f.weight)
                    })
                    .collect();
                println!(
                    "  {what}: {id} ({:.2}: {}) {:?}",
                    score.score,
                    signals.join(" "),
                    example.text.chars().take(400).collect::<String>()
                );
            }
        }
    }
    Ok(())
}
