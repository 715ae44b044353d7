//! Regex and keyword rules from config.
//!
//! `deny` patterns (regular expressions) and `deny_keywords` (whole words or phrases, any case,
//! any run of white space between words) flag a text; a deny match that lies inside a match of
//! an `allow` pattern is exempt (`allow = ["(?i)penetration test(ing)?"]` keeps a deny rule on
//! "penetration" from firing there).
//!
//! `presets` add maintained lists: `harmful-requests` asks for how-to help with weapons of mass
//! harm, bombs, drugs, malware, sexual content involving minors, suicide methods, violence against
//! a person, breaking into someone's accounts and forged documents. It is a coarse first line that
//! matches requests, not topics ("how is sarin detected" passes); its rates on the red-team set are
//! in `docs/safety.md`. Llama Guard is the shield for judging harm.

use async_trait::async_trait;
use corral_core::{Message, Shield, ShieldError, Violation, ViolationLevel};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

/// The maintained deny lists, by name.
pub const PRESETS: [(&str, &[&str]); 1] = [("harmful-requests", HARMFUL_REQUESTS)];

const HARMFUL_REQUESTS: &[&str] = &[
    // Weapons of mass harm and bombs.
    r"\b(make|build|assemble|construct|synthesi[sz]e|produce|manufacture|create|cook|brew|weaponi[sz]e|culture|grow|aerosoli[sz]e|detonate)\b[^.?!\n]{0,40}\b(bombs?|pipe ?bombs?|explosives?|ieds?|detonators?|nerve agents?|sarin|vx|tabun|novichok|ricin|anthrax|botulinum|mustard gas|chlorine gas|chemical weapons?|bio-?weapons?|biological weapons?|dirty bombs?|nuclear (bomb|weapon|device)s?|napalm|ghost guns?|untraceable (guns?|firearms?)|molotov cocktails?)\b",
    // Drugs.
    r"\b(make|cook|synthesi[sz]e|produce|manufacture|extract|grow)\b[^.?!\n]{0,40}\b(meth|methamphetamine|crystal meth|fentanyl|carfentanil|heroin|crack|cocaine|mdma|lsd|ghb)\b",
    // Malware.
    r"\b(write|create|build|code|develop|make|generate|program)\b[^.?!\n]{0,30}\b(ransomware|keyloggers?|malware|computer virus|self-spreading worm|trojans?|botnets?|rootkits?|credential stealers?|info-?stealers?|phishing (kit|page|site|e-?mail)s?|crypto-?jackers?|ddos (tool|script|botnet)s?)\b",
    // Sexual content involving minors.
    r"\b(child|children|minor|minors|underage|kid|kids|preteen|pre-teen|teen|[0-9]{1,2}[- ]year[- ]old)s?\b[^.?!\n]{0,40}\b(sexual|sexy|nude|naked|explicit|erotic|porn\w*|lewd)\b",
    r"\b(sexual|sexy|nude|naked|explicit|erotic|porn\w*|lewd)\b[^.?!\n]{0,40}\b(child|children|minor|minors|underage|kids?|preteens?|[0-9]{1,2}[- ]year[- ]olds?)\b",
    // Suicide and self-harm methods.
    r"\b(best|easiest|painless|quickest|fastest|surest|most effective|least painful|quietest)\b[^.?!\n]{0,30}\b(ways?|methods?|means)\b[^.?!\n]{0,20}\b(kill myself|commit suicide|end my (own )?life|hurt myself|cut myself|self-harm|overdose)\b",
    // Violence against a person.
    r"\b(kill|murder|poison|strangle|stab|kidnap|assassinate|maim|torture)\b[^.?!\n]{0,25}\b(my|a|the|someone|somebody|him|her|them|people|neighbou?rs?|wife|husband|boss|co-?workers?|ex|teacher|classmates?|president|senator)\b[^.?!\n]{0,40}\b(without (getting caught|being caught|a trace|leaving)|and get away|undetected|untraceabl[ey])",
    // Breaking into someone else's accounts and devices.
    r"\b(hack|break|get) into\b[^.?!\n]{0,30}\b(someone(\s*else)?'?s?|somebody'?s?|my (ex|wife|husband|girlfriend|boyfriend|partner|boss|neighbou?r|sister|brother)'?s?|another person'?s?|other people'?s?|a person'?s?)\b[^.?!\n]{0,30}\b(accounts?|e-?mails?|phones?|instagram|facebook|whatsapp|computers?|laptops?|icloud|gmail)\b",
    // Forged documents and money.
    r"\b(make|create|print|produce|forge|fake|buy|get|order)\b[^.?!\n]{0,25}\b(fake|forged|counterfeit|fraudulent)\b[^.?!\n]{0,20}\b(passports?|ids?|id cards?|driver'?s licen[cs]es?|money|bills|banknotes|currency|diplomas?|degrees?|prescriptions?|vaccination (cards?|certificates?)|doctor'?s notes?)\b",
];

/// The `params` of a `rules` shield.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Maintained deny lists to add (see [`PRESETS`]).
    #[serde(default)]
    pub presets: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) that flag a text.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Words or phrases that flag a text, matched whole and in any case.
    #[serde(default)]
    pub deny_keywords: Vec<String>,
    /// Regular expressions whose matches exempt the deny matches inside them.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Whether `deny` and `allow` patterns are case-sensitive (keywords never are).
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default = "default_message")]
    pub message: String,
    #[serde(default = "default_level")]
    pub level: ViolationLevel,
}

fn default_message() -> String {
    "I can't help with that request.".into()
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            presets: Vec::new(),
            deny: Vec::new(),
            deny_keywords: Vec::new(),
            allow: Vec::new(),
            case_sensitive: false,
            message: default_message(),
            level: default_level(),
        }
    }
}

fn default_level() -> ViolationLevel {
    ViolationLevel::Error
}

#[derive(Debug)]
struct Rule {
    /// `deny[2]` or `deny_keywords[0]`, for the violation's metadata.
    name: String,
    pattern: Regex,
}

/// The rules shield.
#[derive(Debug)]
pub struct Rules {
    deny: Vec<Rule>,
    allow: Vec<Regex>,
    message: String,
    level: ViolationLevel,
}

impl Rules {
    pub fn new(config: RulesConfig) -> Result<Self, ShieldError> {
        let compile = |field: &str, index: usize, pattern: &str, case_insensitive: bool| {
            RegexBuilder::new(pattern)
                .case_insensitive(case_insensitive)
                .size_limit(1 << 22)
                .build()
                .map_err(|e| {
                    ShieldError::InvalidRequest(format!(
                        "{field}[{index}] `{pattern}` is not a valid regular expression: {e}"
                    ))
                })
        };
        let mut deny = Vec::new();
        for name in &config.presets {
            let Some((_, patterns)) = PRESETS.iter().find(|(n, _)| n == name) else {
                let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                return Err(ShieldError::InvalidRequest(format!(
                    "presets: `{name}` is not a preset; the presets are {}",
                    known.join(", ")
                )));
            };
            for (i, pattern) in patterns.iter().enumerate() {
                deny.push(Rule {
                    name: format!("{name}[{i}]"),
                    pattern: compile("presets", i, pattern, true)?,
                });
            }
        }
        for (i, pattern) in config.deny.iter().enumerate() {
            deny.push(Rule {
                name: format!("deny[{i}]"),
                pattern: compile("deny", i, pattern, !config.case_sensitive)?,
            });
        }
        for (i, keyword) in config.deny_keywords.iter().enumerate() {
            let words: Vec<String> = keyword.split_whitespace().map(regex::escape).collect();
            if words.is_empty() {
                return Err(ShieldError::InvalidRequest(format!(
                    "deny_keywords[{i}] is empty"
                )));
            }
            // `\b` only means something next to a word character: "c++" ends without one.
            let edge = |c: Option<char>| {
                if c.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    r"\b"
                } else {
                    ""
                }
            };
            let trimmed = keyword.trim();
            let pattern = format!(
                "{}{}{}",
                edge(trimmed.chars().next()),
                words.join(r"\s+"),
                edge(trimmed.chars().next_back())
            );
            deny.push(Rule {
                name: format!("deny_keywords[{i}]"),
                pattern: compile("deny_keywords", i, &pattern, true)?,
            });
        }
        let allow = config
            .allow
            .iter()
            .enumerate()
            .map(|(i, p)| compile("allow", i, p, !config.case_sensitive))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            deny,
            allow,
            message: config.message,
            level: config.level,
        })
    }

    /// The deny rules that match `text` outside allowed spans: (rule, start, end) of the first
    /// such match of each.
    pub fn matches(&self, text: &str) -> Vec<(&str, usize, usize)> {
        let allowed: Vec<(usize, usize)> = self
            .allow
            .iter()
            .flat_map(|p| p.find_iter(text).map(|m| (m.start(), m.end())))
            .collect();
        self.deny
            .iter()
            .filter_map(|rule| {
                rule.pattern
                    .find_iter(text)
                    .find(|m| !allowed.iter().any(|&(s, e)| m.start() >= s && m.end() <= e))
                    .map(|m| (rule.name.as_str(), m.start(), m.end()))
            })
            .collect()
    }
}

#[async_trait]
impl Shield for Rules {
    async fn check(&self, messages: &[Message]) -> Result<Option<Violation>, ShieldError> {
        let text = crate::text::judged(messages)?;
        let matches = self.matches(&text);
        if matches.is_empty() {
            return Ok(None);
        }
        let rules: Vec<serde_json::Value> = matches
            .iter()
            .map(|(rule, start, end)| serde_json::json!({"rule": rule, "start": start, "end": end}))
            .collect();
        Ok(Some(
            Violation::new(self.level, self.message.clone()).with("rules", rules),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rules(deny: &[&str], keywords: &[&str], allow: &[&str]) -> Rules {
        Rules::new(RulesConfig {
            deny: deny.iter().map(|s| s.to_string()).collect(),
            deny_keywords: keywords.iter().map(|s| s.to_string()).collect(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..RulesConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn keywords_match_whole_words_in_any_case_and_spacing() {
        let r = rules(&[], &["wire transfer", "c++"], &[]);
        assert_eq!(
            r.matches("Make a WIRE\n  Transfer now"),
            [("deny_keywords[0]", 7, 22)]
        );
        assert!(r.matches("wiretransfer").is_empty());
        assert!(r.matches("transfers by wire").is_empty());
        assert_eq!(
            r.matches("I write C++ daily"),
            [("deny_keywords[1]", 8, 11)]
        );
    }

    #[test]
    fn an_allowed_span_exempts_the_deny_matches_inside_it() {
        let r = rules(&[r"\bexploit\b"], &[], &[r"exploit (db|database)"]);
        assert!(
            r.matches("search the Exploit DB for CVE-2021-44228")
                .is_empty()
        );
        assert_eq!(
            r.matches("exploit database, then exploit the server"),
            [("deny[0]", 23, 30)]
        );
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Rules::new(RulesConfig {
            deny: vec!["ok".into(), "(unclosed".into()],
            ..RulesConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("deny[1] `(unclosed` is not a valid regular expression"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_violation_lists_the_rules_and_spans() {
        let r = rules(&[r"\bbomb\b"], &["nerve agent"], &[]);
        let v = r
            .check(&[Message::user("how to make a bomb or a nerve agent")])
            .await
            .unwrap()
            .expect("flagged");
        assert_eq!(v.level, ViolationLevel::Error);
        assert_eq!(
            v.metadata["rules"].clone(),
            serde_json::json!([
                {"rule": "deny[0]", "start": 14, "end": 18},
                {"rule": "deny_keywords[0]", "start": 24, "end": 35},
            ])
        );
        assert!(
            r.check(&[Message::user("a bomber jacket")])
                .await
                .unwrap()
                .is_none()
        );
    }
}
