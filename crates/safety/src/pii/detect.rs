//! Detection of personal data and secrets in free text.
//!
//! A [`Detector`] compiles its regular expressions once; each candidate a pattern finds is then
//! validated in code — checksums (Luhn, ISO 13616 mod 97, Verhoeff, the French NIR key), issuer
//! prefixes, country lengths, and the characters around the match — so that everyday technical
//! text (versions, dates, hashes, UUIDs, ports, Rust paths) is left alone.
//!
//! Offsets are UTF-8 byte offsets into the checked text and always fall on `char` boundaries.
//!
//! Overlaps: [`Detector::find`] keeps the longer of two overlapping candidates; on equal lengths
//! the kind that comes first in [`PiiKind::ALL`] wins, then the more specific detector (a named
//! token format beats a generic `password = …` assignment), then the earlier start. The result is
//! therefore the same whatever order the kinds were given in.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use regex::{Captures, Regex};

/// A kind of personal data or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    NationalId,
    IpAddress,
    Secret,
}

impl PiiKind {
    /// Every kind, in the order used to break ties between overlapping matches.
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::PaymentCard,
        PiiKind::Iban,
        PiiKind::NationalId,
        PiiKind::IpAddress,
        PiiKind::Secret,
    ];

    /// snake_case name: "email", "phone", "payment_card", "iban", "national_id", "ip_address",
    /// "secret".
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::PaymentCard => "payment_card",
            PiiKind::Iban => "iban",
            PiiKind::NationalId => "national_id",
            PiiKind::IpAddress => "ip_address",
            PiiKind::Secret => "secret",
        }
    }

    /// The kind with this [`name`](PiiKind::name), if any.
    pub fn from_name(name: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What redaction puts in place of a match: "[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]",
    /// "[NATIONAL_ID]", "[IP]", "[SECRET]".
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::PaymentCard => "[CARD]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::NationalId => "[NATIONAL_ID]",
            PiiKind::IpAddress => "[IP]",
            PiiKind::Secret => "[SECRET]",
        }
    }
}

/// One finding: byte offsets into the checked text (`text[start..end]` is the match, on char
/// boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    /// A finer label: "email"; "e164", "nanp", "national"; the card issuer ("visa",
    /// "mastercard", "amex", "discover", "jcb", "diners", "unionpay"); "iban"; "us_ssn",
    /// "uk_nino", "ca_sin", "fr_nir", "in_aadhaar"; "ipv4", "ipv6"; "aws_access_key",
    /// "aws_secret_key", "github_token", "github_pat", "slack_token", "openai_key",
    /// "anthropic_key", "stripe_key", "google_api_key", "jwt", "private_key", "assignment".
    pub detail: &'static str,
}

/// Compiled detectors (build once, reuse; `Send + Sync`).
#[derive(Debug)]
pub struct Detector {
    rules: Vec<Rule>,
}

impl Detector {
    /// Detectors for these kinds only (duplicates and order do not matter).
    pub fn new(kinds: &[PiiKind]) -> Detector {
        let rules = RULES
            .iter()
            .enumerate()
            .filter(|(_, (kind, _, _))| kinds.contains(kind))
            .map(|(priority, &(kind, check, pattern))| Rule {
                kind,
                check,
                priority,
                // The patterns are constants, covered by the tests; none depends on input.
                re: Regex::new(pattern).expect("built-in PII pattern compiles"),
            })
            .collect();
        Detector { rules }
    }

    /// Every match, sorted by start, non-overlapping.
    ///
    /// When two candidates overlap the longer one is kept; on a tie the kind earlier in
    /// [`PiiKind::ALL`] wins, then the more specific detector (e.g. `openai_key` over a generic
    /// `assignment`), then the earlier start.
    pub fn find(&self, text: &str) -> Vec<PiiMatch> {
        let mut candidates = Vec::new();
        for rule in &self.rules {
            rule.scan(text, &mut candidates);
        }
        resolve(candidates)
    }
}

/// `text` with every match replaced by its kind's placeholder.
///
/// Matches may come in any order. A match that overlaps one already replaced (taking them by
/// start, longer first), is empty, or does not fall on `char` boundaries of `text` is skipped.
pub fn redact(text: &str, matches: &[PiiMatch]) -> String {
    let mut sorted: Vec<&PiiMatch> = matches.iter().collect();
    sorted.sort_by_key(|m| (m.start, std::cmp::Reverse(m.end)));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for m in sorted {
        if m.start < cursor || m.end <= m.start || text.get(m.start..m.end).is_none() {
            continue;
        }
        out.push_str(text.get(cursor..m.start).unwrap_or_default());
        out.push_str(m.kind.placeholder());
        cursor = m.end;
    }
    out.push_str(text.get(cursor..).unwrap_or_default());
    out
}

// ---------------------------------------------------------------------------------------------
// Rules

/// How a pattern's candidates are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Email,
    PhoneE164,
    PhoneNanp,
    PhoneFrench,
    PhoneNational,
    Card,
    Iban,
    Ssn,
    Nino,
    Sin,
    Nir,
    Aadhaar,
    Ipv4,
    Ipv6,
    /// A fixed-format token: its label, and the non-alphanumeric characters that may continue it
    /// (it must not be glued to a longer run of those or of alphanumerics).
    Token {
        detail: &'static str,
        extra: &'static str,
    },
    OpenAi,
    Jwt,
    Pem,
    AwsSecret,
    Assignment,
}

impl Check {
    /// Whether the check reads capture groups.
    fn needs_captures(self) -> bool {
        matches!(self, Check::Pem | Check::AwsSecret | Check::Assignment)
    }

    /// Whether a rejected candidate is searched again from its second character (short,
    /// bounded patterns whose span may hide a valid match) or skipped whole (long or
    /// keyword-led patterns, where retrying could only be rejected again and would cost
    /// quadratic time on adversarial input).
    fn retry_inside(self) -> bool {
        !matches!(
            self,
            Check::Email
                | Check::Token { .. }
                | Check::OpenAi
                | Check::Jwt
                | Check::Pem
                | Check::AwsSecret
                | Check::Assignment
        )
    }
}

const EMAIL: &str = r"[A-Za-z0-9_%+~-]+(?:\.[A-Za-z0-9_%+~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}";
const PHONE_E164: &str = r"\+[1-9](?:[ .-]?(?:[0-9]|\([0-9]{1,5}\))){7,16}";
const PHONE_NANP: &str = r"(?:1-)?[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}|[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}|(?:1 )?\([2-9][0-9]{2}\) ?[0-9]{3}[-. ][0-9]{4}";
const PHONE_FRENCH: &str = r"0[1-9](?: [0-9]{2}){4}|0[1-9](?:\.[0-9]{2}){4}|0[1-9](?:-[0-9]{2}){4}";
const PHONE_NATIONAL: &str = r"\(?0[1-9][0-9]{0,3}\)?[ -][0-9]{2,8}(?:[ -][0-9]{2,8}){0,2}";
const CARD: &str = r"[0-9]{13,19}|[0-9]{4}(?: [0-9]{4}){2} [0-9]{1,4}(?: [0-9]{1,3})?|[0-9]{4}(?:-[0-9]{4}){2}-[0-9]{1,4}(?:-[0-9]{1,3})?|[0-9]{4} [0-9]{6} [0-9]{4,5}|[0-9]{4}-[0-9]{6}-[0-9]{4,5}";
const IBAN: &str = r"[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,8}(?: [A-Z0-9]{1,3})?)";
const SSN: &str = r"[0-9]{3}-[0-9]{2}-[0-9]{4}";
const NINO: &str = r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]";
const SIN: &str = r"[1-79][0-9]{2}-[0-9]{3}-[0-9]{3}|[1-79][0-9]{2} [0-9]{3} [0-9]{3}";
const NIR: &str = r"[12] ?[0-9]{2} ?(?:0[1-9]|1[0-2]|[2-9][0-9]) ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}";
const AADHAAR: &str = r"[2-9][0-9]{3} [0-9]{4} [0-9]{4}|[2-9][0-9]{3}-[0-9]{4}-[0-9]{4}";
const IPV4: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}";
const IPV6: &str = r"(?:[0-9A-Fa-f]{0,4}:){2,8}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?";
const PEM: &str = r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----";
const AWS_SECRET: &str =
    r#"(?i)aws_?secret_?access_?key["']?[ \t]*(?::=|=>|[:=])[ \t]*["']?([A-Za-z0-9/+=]{40})"#;
const ASSIGNMENT: &str = r#"(?i)(?:password|passwd|passphrase|pwd|secret|token|secret[_-]?key|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret)["']?[ \t]*(?::=|=>|[:=])[ \t]*(?:"([^"\r\n]*)"|'([^'\r\n]*)'|([^\s"'`,;&=][^\s"'`,;&]*))"#;

/// Every detector, in priority order: within one kind, earlier entries win ties.
const RULES: &[(PiiKind, Check, &str)] = &[
    (PiiKind::Email, Check::Email, EMAIL),
    (PiiKind::Phone, Check::PhoneE164, PHONE_E164),
    (PiiKind::Phone, Check::PhoneNanp, PHONE_NANP),
    (PiiKind::Phone, Check::PhoneFrench, PHONE_FRENCH),
    (PiiKind::Phone, Check::PhoneNational, PHONE_NATIONAL),
    (PiiKind::PaymentCard, Check::Card, CARD),
    (PiiKind::Iban, Check::Iban, IBAN),
    (PiiKind::NationalId, Check::Ssn, SSN),
    (PiiKind::NationalId, Check::Nino, NINO),
    (PiiKind::NationalId, Check::Sin, SIN),
    (PiiKind::NationalId, Check::Nir, NIR),
    (PiiKind::NationalId, Check::Aadhaar, AADHAAR),
    (PiiKind::IpAddress, Check::Ipv4, IPV4),
    (PiiKind::IpAddress, Check::Ipv6, IPV6),
    (PiiKind::Secret, Check::Pem, PEM),
    (
        PiiKind::Secret,
        Check::Token {
            detail: "aws_access_key",
            extra: "",
        },
        r"(?:AKIA|ASIA)[A-Z0-9]{16}",
    ),
    (PiiKind::Secret, Check::AwsSecret, AWS_SECRET),
    (
        PiiKind::Secret,
        Check::Token {
            detail: "github_pat",
            extra: "_",
        },
        r"github_pat_[A-Za-z0-9_]{82}",
    ),
    (
        PiiKind::Secret,
        Check::Token {
            detail: "github_token",
            extra: "_",
        },
        r"gh[pousr]_[A-Za-z0-9]{36}",
    ),
    (
        PiiKind::Secret,
        Check::Token {
            detail: "slack_token",
            extra: "",
        },
        r"xox[abposr]-[0-9A-Za-z-]{8,}[0-9A-Za-z]",
    ),
    (
        PiiKind::Secret,
        Check::Token {
            detail: "anthropic_key",
            extra: "_-",
        },
        r"sk-ant-[A-Za-z0-9_-]{20,}",
    ),
    (
        PiiKind::Secret,
        Check::OpenAi,
        r"sk-(?:proj-)?[A-Za-z0-9_-]{20,}",
    ),
    (
        PiiKind::Secret,
        Check::Token {
            detail: "stripe_key",
            extra: "_",
        },
        r"(?:sk|rk)_live_[A-Za-z0-9]{16,}|sk_test_[A-Za-z0-9]{16,}",
    ),
    (
        PiiKind::Secret,
        Check::Token {
            detail: "google_api_key",
            extra: "_-",
        },
        r"AIza[0-9A-Za-z_-]{35}",
    ),
    (
        PiiKind::Secret,
        Check::Jwt,
        r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
    ),
    (PiiKind::Secret, Check::Assignment, ASSIGNMENT),
];

#[derive(Debug)]
struct Rule {
    kind: PiiKind,
    check: Check,
    priority: usize,
    re: Regex,
}

/// A validated candidate, before overlaps are resolved.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    kind: PiiKind,
    detail: &'static str,
    priority: usize,
}

/// A validated span.
type Hit = (usize, usize, &'static str);

impl Rule {
    fn scan(&self, text: &str, out: &mut Vec<Candidate>) {
        let mut pos = 0;
        while pos <= text.len() {
            let (start, end, hit) = if self.check.needs_captures() {
                let Some(caps) = self.re.captures_at(text, pos) else {
                    break;
                };
                let Some(m) = caps.get(0) else { break };
                (
                    m.start(),
                    m.end(),
                    self.eval(text, m.start(), m.end(), Some(&caps)),
                )
            } else {
                let Some(m) = self.re.find_at(text, pos) else {
                    break;
                };
                (
                    m.start(),
                    m.end(),
                    self.eval(text, m.start(), m.end(), None),
                )
            };
            let after_first_char = next_boundary(text, start);
            match hit {
                Some((s, e, detail)) => {
                    out.push(Candidate {
                        start: s,
                        end: e,
                        kind: self.kind,
                        detail,
                        priority: self.priority,
                    });
                    pos = e.max(after_first_char);
                }
                None if self.check.retry_inside() => pos = after_first_char,
                None => pos = end.max(after_first_char),
            }
        }
    }

    fn eval(&self, text: &str, s: usize, e: usize, caps: Option<&Captures<'_>>) -> Option<Hit> {
        let m = text.get(s..e)?;
        match self.check {
            Check::Email => check_email(text, s, e, m),
            Check::PhoneE164 => check_e164(text, s, e, m),
            Check::PhoneNanp | Check::PhoneFrench => {
                let detail = if self.check == Check::PhoneNanp {
                    "nanp"
                } else {
                    "national"
                };
                numeric_context_ok(text, s, e).then_some((s, e, detail))
            }
            Check::PhoneNational => check_national_phone(text, s, e, m),
            Check::Card => check_card(text, s, e, m),
            Check::Iban => check_iban(text, s, e, m),
            Check::Ssn => check_ssn(text, s, e, m),
            Check::Nino => check_nino(text, s, e, m),
            Check::Sin => {
                let digits = digits_of(m);
                (numeric_context_ok(text, s, e) && luhn(&digits)).then_some((s, e, "ca_sin"))
            }
            Check::Nir => check_nir(text, s, e, m),
            Check::Aadhaar => {
                let digits = digits_of(m);
                (numeric_context_ok(text, s, e) && verhoeff(&digits)).then_some((
                    s,
                    e,
                    "in_aadhaar",
                ))
            }
            Check::Ipv4 => check_ipv4(text, s, e),
            Check::Ipv6 => check_ipv6(text, s, e, m),
            Check::Token { detail, extra } => {
                let cont = |c: char| c.is_ascii_alphanumeric() || extra.contains(c);
                let (p, _) = before(text, s);
                let (n, _) = after(text, e);
                (!p.is_some_and(|c| is_word(c) || cont(c)) && !n.is_some_and(cont))
                    .then_some((s, e, detail))
            }
            Check::OpenAi => check_openai(text, s, e, m),
            Check::Jwt => {
                let cont = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
                let (p, _) = before(text, s);
                let (n, _) = after(text, e);
                (!p.is_some_and(|c| is_word(c) || cont(c) || c == '.') && !n.is_some_and(cont))
                    .then_some((s, e, "jwt"))
            }
            Check::Pem => check_pem(text, s, e, caps?),
            Check::AwsSecret => {
                let v = caps?.get(1)?;
                let (n, _) = after(text, v.end());
                let cont = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '+' | '=');
                (!n.is_some_and(cont)).then_some((v.start(), v.end(), "aws_secret_key"))
            }
            Check::Assignment => check_assignment(text, caps?),
        }
    }
}

/// Keeps the longest candidates, then by kind order, detector priority and start; the survivors
/// sorted by start.
fn resolve(mut candidates: Vec<Candidate>) -> Vec<PiiMatch> {
    candidates.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.kind.cmp(&b.kind))
            .then(a.priority.cmp(&b.priority))
            .then(a.start.cmp(&b.start))
    });
    let mut taken: BTreeMap<usize, Candidate> = BTreeMap::new();
    for c in candidates {
        // Kept spans never overlap, so only the last one starting before `c.end` can reach it.
        let overlaps = taken
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, k)| k.end > c.start);
        if !overlaps {
            taken.insert(c.start, c);
        }
    }
    taken
        .into_values()
        .map(|c| PiiMatch {
            kind: c.kind,
            start: c.start,
            end: c.end,
            detail: c.detail,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Context helpers

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The two characters before byte offset `at`, nearest first.
fn before(text: &str, at: usize) -> (Option<char>, Option<char>) {
    let mut it = text.get(..at).unwrap_or_default().chars().rev();
    (it.next(), it.next())
}

/// The two characters from byte offset `at` on.
fn after(text: &str, at: usize) -> (Option<char>, Option<char>) {
    let mut it = text.get(at..).unwrap_or_default().chars();
    (it.next(), it.next())
}

/// The byte offset just past the character at `at` (past the end when there is none).
fn next_boundary(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|rest| rest.chars().next())
        .map_or(text.len() + 1, |c| at + c.len_utf8())
}

/// Whether `head` ends with `word` (ASCII case-insensitive) as a whole word.
fn ends_with_word(head: &str, word: &str) -> bool {
    let Some(cut) = head.len().checked_sub(word.len()) else {
        return false;
    };
    match (head.get(cut..), head.get(..cut)) {
        (Some(tail), Some(rest)) => {
            tail.eq_ignore_ascii_case(word) && !rest.chars().next_back().is_some_and(is_word)
        }
        _ => false,
    }
}

/// Whether the number at `start` is labelled as an ISBN ("ISBN 978-…", "ISBN-13: …").
fn preceded_by_isbn(text: &str, start: usize) -> bool {
    let head = text.get(..start).unwrap_or_default();
    let head = head.trim_end_matches([' ', '\t', ':', '#']);
    let head = head
        .strip_suffix("-13")
        .or_else(|| head.strip_suffix("-10"))
        .unwrap_or(head);
    ends_with_word(head, "isbn")
}

/// Context rules shared by the number-like formats: not glued to letters, digits or `_`; not a
/// piece of a longer dotted, dashed or slashed token (`v1.555…`, `…-555-…`, `a/…`); not after
/// `+` (that is E.164's) or after `digit:`/`digit,`; when the number itself is grouped by
/// spaces, not the tail of a longer space-grouped run (digits just before it) nor followed by
/// another full group (4+ digits; a short CVV or "12/26" expiry may follow) nor amid hex-dump
/// bytes; and not labelled as an ISBN.
fn numeric_context_ok(text: &str, start: usize, end: usize) -> bool {
    let spaced = text.get(start..end).is_some_and(|m| m.contains(' '));
    let head = text.get(..start).unwrap_or_default();
    let tail = text.get(end..).unwrap_or_default();
    let run_before = head.strip_suffix(' ').map_or(0, |h| {
        h.chars().rev().take_while(char::is_ascii_digit).count()
    });
    let run_after = tail
        .strip_prefix(' ')
        .map_or(0, |t| t.chars().take_while(char::is_ascii_digit).count());
    // Hex dumps: "48 8d 05 12 00 00 00" has byte-like neighbours on either side.
    let hex_byte = |token: &str| {
        token.len() == 2
            && token.bytes().all(|b| b.is_ascii_hexdigit())
            && token.bytes().any(|b| b.is_ascii_digit())
    };
    let token_before = head
        .strip_suffix(' ')
        .and_then(|h| h.rsplit(char::is_whitespace).next())
        .unwrap_or_default();
    let token_after = tail
        .strip_prefix(' ')
        .and_then(|t| t.split(char::is_whitespace).next())
        .unwrap_or_default();
    if spaced && (hex_byte(token_before) || hex_byte(token_after)) {
        return false;
    }
    let glued = |c: Option<char>, next: Option<char>, run: usize, limit: usize| match c {
        None => false,
        Some(c) if is_word(c) => true,
        Some('.' | '-' | '/' | '\\') => next.is_some_and(is_word),
        Some(':' | ',') => next.is_some_and(|n| n.is_ascii_digit()),
        Some(' ') => spaced && run >= limit,
        Some(_) => false,
    };
    let (p, pp) = before(text, start);
    let (n, nn) = after(text, end);
    p != Some('+')
        && !glued(p, pp, run_before, 1)
        && !glued(n, nn, run_after, 4)
        && !preceded_by_isbn(text, start)
}

fn digits_of(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

fn number_of(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |acc, &d| {
        acc.wrapping_mul(10).wrapping_add(u64::from(d))
    })
}

// ---------------------------------------------------------------------------------------------
// Checksums

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

fn verhoeff(digits: &[u8]) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0usize;
    for (i, &d) in digits.iter().rev().enumerate() {
        let d = usize::from(d % 10);
        c = usize::from(D[c][usize::from(P[i % 8][d])]);
    }
    !digits.is_empty() && c == 0
}

/// ISO 13616: the first four characters moved to the end, letters as 10–35, mod 97 == 1.
fn iban_mod97(compact: &str) -> bool {
    let (head, tail) = compact.split_at(compact.len().min(4));
    let mut rem = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let Some(v) = c.to_digit(36) else {
            return false;
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

/// IBAN length per country (ISO 13616 registry): all SEPA countries and many others.
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AL" => 28,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "BY" => 28,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IQ" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LC" => 32,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SC" => 31,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "ST" => 25,
        "SV" => 28,
        "TL" => 23,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VA" => 22,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Per-format checks

/// Top-level domains that are really file extensions (`icon@2x.png`, `pkg@latest.js`).
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "css", "js", "mjs",
    "cjs", "ts", "tsx", "jsx", "json", "html", "htm", "xml", "yaml", "yml", "toml", "lock", "txt",
    "pdf", "wasm",
];

fn check_email(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    let local_char = |c: char| c.is_ascii_alphanumeric() || "_%+~-.".contains(c);
    let (p, _) = before(text, s);
    if p.is_some_and(|c| is_word(c) || local_char(c) || c == '@') {
        return None;
    }
    let (n, nn) = after(text, e);
    let glued = match n {
        Some(c) if is_word(c) || c == '-' || c == '@' => true,
        // "a@b.com.1x": the domain goes on in a way an address cannot.
        Some('.') => nn.is_some_and(is_word),
        // scp/git remotes: "git@github.com:org/repo.git".
        Some(':') => nn.is_some_and(|c| !c.is_whitespace()),
        _ => false,
    };
    if glued {
        return None;
    }
    let (local, domain) = m.split_once('@')?;
    if local.len() > 64 || domain.len() > 253 || !local.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let tld = domain.rsplit('.').next()?;
    if FILE_EXTENSIONS.iter().any(|x| tld.eq_ignore_ascii_case(x)) {
        return None;
    }
    // Retina asset names: "logo@2x.webp", "icon@3x.ios.png".
    let retina = |label: &str| {
        label
            .strip_suffix(['x', 'X'])
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    if domain.split('.').any(retina) {
        return None;
    }
    Some((s, e, "email"))
}

fn check_e164(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    if !numeric_context_ok(text, s, e) {
        return None;
    }
    let digits = digits_of(m);
    if !(8..=15).contains(&digits.len()) {
        return None;
    }
    // At least one group of two or more digits: not "+1.2.3.4.5.6.7.8".
    let longest_run = m
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_run < 2 {
        return None;
    }
    // "+2024-03-15", "+19370-01-01" and "+70000-2-18" are dates.
    let groups: Vec<usize> = m[1..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    if m.contains('-') && matches!(groups.as_slice(), [y, 1..=2, 1..=2] if *y >= 4) {
        return None;
    }
    // One dot is a decimal ("+255959.999"); dotted numbers have several ("+49.30.1234567").
    if m.matches('.').count() == 1 {
        return None;
    }
    Some((s, e, "e164"))
}

fn check_national_phone(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    if m.starts_with('(') != m.contains(')') || !numeric_context_ok(text, s, e) {
        return None;
    }
    let bare = m.replace(['(', ')'], "");
    let mut separators = bare.chars().filter(|c| *c == ' ' || *c == '-');
    let first = separators.next()?;
    if separators.any(|c| c != first) {
        return None;
    }
    let groups: Vec<&str> = bare.split(first).collect();
    // A US ZIP+4 code: "02110-1301".
    if first == '-' && groups.len() == 2 && groups[0].len() == 5 && groups[1].len() == 4 {
        return None;
    }
    let total: usize = groups.iter().map(|g| g.len()).sum();
    let long_group = groups.iter().skip(1).any(|g| g.len() >= 4);
    ((9..=12).contains(&total) && (total >= 10 || long_group)).then_some((s, e, "national"))
}

fn card_issuer(d: &[u8]) -> Option<&'static str> {
    let prefix = |n: usize| number_of(&d[..n.min(d.len())]);
    let len = d.len();
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    let long = (16..=19).contains(&len);
    if p2 == 34 || p2 == 37 {
        (len == 15).then_some("amex")
    } else if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 {
        (14..=19).contains(&len).then_some("diners")
    } else if (3528..=3589).contains(&p4) {
        long.then_some("jcb")
    } else if p1 == 4 {
        matches!(len, 13 | 16 | 19).then_some("visa")
    } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        (len == 16).then_some("mastercard")
    } else if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) {
        long.then_some("discover")
    } else if p2 == 62 {
        long.then_some("unionpay")
    } else {
        None
    }
}

fn check_card(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    // Ungrouped, only 13-16 digits: 17-19 digit runs are mostly 64-bit integers, not cards.
    if !m.contains([' ', '-']) && m.len() > 16 {
        return None;
    }
    // The grouped patterns are greedy: "4111 1111 1111 1111 123" (a CVV after the number) ends
    // one group too late, so shorter prefixes ending at a group boundary are tried as well.
    let mut ends: Vec<usize> = m
        .char_indices()
        .filter(|&(_, c)| c == ' ' || c == '-')
        .map(|(i, _)| i)
        .collect();
    ends.push(m.len());
    ends.into_iter()
        .rev()
        .find_map(|cut| {
            let digits = digits_of(&m[..cut]);
            if !(13..=19).contains(&digits.len())
                || !luhn(&digits)
                || !numeric_context_ok(text, s, s + cut)
            {
                return None;
            }
            card_issuer(&digits).map(|issuer| (s, s + cut, issuer))
        })
        .filter(|&(_, end, _)| end <= e)
}

fn check_iban(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    let (p, _) = before(text, s);
    if p.is_some_and(is_word) {
        return None;
    }
    let want = iban_length(m.get(..2)?)?;
    // Cut the match where the country's length is reached; that must be the end of a group
    // (so "DE89 3704 0044 0532 0130 00 DATE" stops before "DATE").
    let mut count = 0;
    let mut cut = None;
    for (i, c) in m.char_indices() {
        if c == ' ' {
            continue;
        }
        count += 1;
        if count == want {
            let end = i + c.len_utf8();
            if m[end..].is_empty() || m[end..].starts_with(' ') {
                cut = Some(end);
            }
            break;
        }
    }
    let cut = cut?;
    let e_cut = s + cut;
    if e_cut > e || after(text, e_cut).0.is_some_and(is_word) {
        return None;
    }
    let compact: String = m[..cut].chars().filter(|c| *c != ' ').collect();
    iban_mod97(&compact).then_some((s, e_cut, "iban"))
}

fn check_ssn(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    let d = digits_of(m);
    if d.len() != 9 || !numeric_context_ok(text, s, e) {
        return None;
    }
    let area = number_of(&d[..3]);
    let group = number_of(&d[3..5]);
    let serial = number_of(&d[5..]);
    let bad = area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0;
    (!bad).then_some((s, e, "us_ssn"))
}

fn check_nino(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    let (p, _) = before(text, s);
    let (n, _) = after(text, e);
    if p.is_some_and(is_word) || n.is_some_and(is_word) {
        return None;
    }
    let spaces = m.matches(' ').count();
    if spaces != 0 && spaces != 4 {
        return None;
    }
    let prefix = m.get(..2)?;
    if ["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"].contains(&prefix) {
        return None;
    }
    Some((s, e, "uk_nino"))
}

fn check_nir(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    let spaces = m.matches(' ').count();
    if (spaces != 0 && spaces != 6) || !numeric_context_ok(text, s, e) {
        return None;
    }
    let compact: String = m.chars().filter(|c| *c != ' ').collect();
    let body = compact.get(..13)?;
    // Corsica: department 2A counts as 19 and 2B as 18 for the key.
    let body = body.replacen("2A", "19", 1).replacen("2B", "18", 1);
    let n = number_of(&digits_of(&body));
    let key = number_of(&digits_of(compact.get(13..)?));
    (body.len() == 13 && key == 97 - n % 97).then_some((s, e, "fr_nir"))
}

/// Words after which a dotted quad is a version or a section number, not an address.
const NOT_ADDRESS_LABELS: &[&str] = &[
    "v",
    "ver",
    "ver.",
    "version",
    "release",
    "section",
    "sections",
    "sec.",
    "chapter",
    "clause",
    "paragraph",
    "appendix",
    "figure",
    "fig.",
    "table",
    "step",
    "schema",
];

fn check_ipv4(text: &str, s: usize, e: usize) -> Option<Hit> {
    let (p, _) = before(text, s);
    if p.is_some_and(|c| is_word(c) || c == '.') {
        return None;
    }
    let (n, nn) = after(text, e);
    if n.is_some_and(is_word) || (n == Some('.') && nn.is_some_and(is_word)) {
        return None;
    }
    // "v1.2.3.4", "version 1.2.3.4", "Ver: 1.2.3.4" are versions; "section 4.1.2.8",
    // "#section-2.4.4.3", "§ 9.2.1.1" are section numbers.
    let head = text.get(..s).unwrap_or_default();
    let head = head.strip_suffix(' ').unwrap_or(head);
    let head = head.strip_suffix([':', '=', '-']).unwrap_or(head);
    if NOT_ADDRESS_LABELS.iter().any(|w| ends_with_word(head, w)) || head.ends_with('§') {
        return None;
    }
    Some((s, e, "ipv4"))
}

fn check_ipv6(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    let (p, _) = before(text, s);
    if p.is_some_and(|c| is_word(c) || matches!(c, ':' | '.' | '+' | '-')) {
        return None;
    }
    // "a::b", "std::io", "::" carry no decimal digit; real addresses nearly always do. One that
    // starts with "::" is the loopback "::1", or has two groups or an embedded IPv4 ("::34" is
    // more likely an offset or a path than an address).
    // With only one or two groups written out, the first must be a real prefix of 3-4 hex
    // digits ("fe80::1", "2001::") — not "1::2" (a slice), "1::59" or "c::B0" (a C path). Hex
    // letters are all of one case.
    let valid = |cand: &str| {
        let groups: Vec<&str> = cand.split(':').filter(|g| !g.is_empty()).collect();
        let short_ok = if cand.starts_with("::") {
            cand == "::1" || groups.len() >= 2 || cand.contains('.')
        } else {
            groups.len() >= 3 || groups.first().is_some_and(|g| g.len() >= 3)
        };
        let lower = cand.bytes().any(|b| b.is_ascii_lowercase());
        let upper = cand.bytes().any(|b| b.is_ascii_uppercase());
        cand.matches(':').count() >= 2
            && cand.bytes().any(|b| b.is_ascii_digit())
            && short_ok
            && !(lower && upper)
            && cand.parse::<Ipv6Addr>().is_ok()
    };
    // A trailing single ':' may be punctuation ("2001:db8::1: unreachable").
    let e = if valid(m) {
        e
    } else if m.ends_with(':') && !m.ends_with("::") && valid(&m[..m.len() - 1]) {
        e - 1
    } else {
        return None;
    };
    let (n, nn) = after(text, e);
    // `E3::<u8>` is a turbofish.
    if n.is_some_and(|c| is_word(c) || c == '<') || (n == Some('.') && nn.is_some_and(is_word)) {
        return None;
    }
    Some((s, e, "ipv6"))
}

fn check_openai(text: &str, s: usize, e: usize, m: &str) -> Option<Hit> {
    if m.starts_with("sk-ant-") {
        return None;
    }
    let (p, _) = before(text, s);
    let (n, _) = after(text, e);
    let cont = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if p.is_some_and(|c| is_word(c) || c == '-') || n.is_some_and(cont) {
        return None;
    }
    // Keys mix letters and digits; "sk-learn-is-a-great-library" does not.
    let body = m.strip_prefix("sk-proj-").or(m.strip_prefix("sk-"))?;
    let has_digit = body.bytes().any(|b| b.is_ascii_digit());
    let has_letter = body.bytes().any(|b| b.is_ascii_alphabetic());
    (has_digit && has_letter).then_some((s, e, "openai_key"))
}

/// How far past a BEGIN line the END line is looked for.
const PEM_WINDOW: usize = 64 * 1024;

fn check_pem(text: &str, s: usize, e: usize, caps: &Captures<'_>) -> Option<Hit> {
    let label = caps.get(1)?.as_str();
    let end_marker = format!("-----END {label}-----");
    let mut window_end = (e + PEM_WINDOW).min(text.len());
    while !text.is_char_boundary(window_end) {
        window_end -= 1;
    }
    let window = text.get(e..window_end)?;
    // A key has a body; "-----BEGIN PRIVATE KEY-----" alone, in documentation, does not.
    let has_body = |between: &str| {
        between
            .bytes()
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
            .count()
            >= 16
    };
    if let Some(i) = window.find(&end_marker) {
        let body = window.get(..i).unwrap_or_default();
        return has_body(body).then_some((s, e + i + end_marker.len(), "private_key"));
    }
    // No END line (a truncated paste): take the header and the key body lines that follow.
    let mut end = e;
    let mut offset = e;
    for (i, line) in window.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        let ok = if i == 0 {
            body.trim().is_empty()
        } else {
            body.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
                || body.starts_with("Proc-Type:")
                || body.starts_with("DEK-Info:")
        };
        if !ok {
            break;
        }
        if !body.trim().is_empty() {
            end = offset + body.len();
        }
        offset += line.len();
    }
    has_body(text.get(e..end).unwrap_or_default()).then_some((s, end, "private_key"))
}

/// Lowercased fragments that mark a value as a placeholder or an indirection, not a secret.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "changeit",
    "your_",
    "your-",
    "yourpass",
    "yoursecret",
    "yourtoken",
    "yourkey",
    "yourapikey",
    "example",
    "sample",
    "placeholder",
    "dummy",
    "fake",
    "redacted",
    "xxxx",
    "****",
    "...",
    "todo",
    "fixme",
    "replace",
    "insert",
    "<",
    ">",
    "${",
    "{{",
    "$(",
    "%(",
    "%s",
    "process.env",
    "os.environ",
    "getenv",
    "://",
];

/// Endings of file names: `private_key: server.key.pem` names a file, it is not a key.
const FILE_SUFFIXES: &[&str] = &[
    ".pem", ".key", ".crt", ".cer", ".p12", ".pfx", ".jks", ".json", ".txt", ".env", ".yaml",
    ".yml", ".toml",
];

/// Key names that end in a keyword but hold no secret: pagination cursors and the like
/// (`nextPageToken`, `progressToken`, `cancellation_token`), lowercased without `_`/`-`.
const NON_SECRET_KEY_PREFIXES: &[&str] = &[
    "page",
    "progress",
    "continuation",
    "cancellation",
    "sync",
    "resume",
    "next",
    "cursor",
];

fn check_assignment(text: &str, caps: &Captures<'_>) -> Option<Hit> {
    let (value, quoted) = match (caps.get(1), caps.get(2), caps.get(3)) {
        (Some(v), _, _) | (_, Some(v), _) => (v, true),
        (_, _, Some(v)) => (v, false),
        _ => return None,
    };
    let key_start = caps.get(0)?.start();
    let head = text.get(..key_start).unwrap_or_default();
    let rest = head.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let prefix: String = head
        .get(rest.len()..)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if NON_SECRET_KEY_PREFIXES.iter().any(|p| prefix.ends_with(p)) {
        return None;
    }
    let (s, mut e) = (value.start(), value.end());
    if !quoted {
        // Punctuation after a bare value: "token: abc…123.", "(secret=abc…123)".
        let raw = value.as_str();
        let trimmed = if raw.contains(['(', '[', '{']) {
            raw.trim_end_matches(['.', '!', '?'])
        } else {
            raw.trim_end_matches(['.', '!', '?', ')', ']', '}'])
        };
        e = s + trimmed.len();
    }
    let v = text.get(s..e)?;
    if v.chars().count() < 12 || v.chars().any(char::is_whitespace) {
        return None;
    }
    let lower = v.to_ascii_lowercase();
    // Rust and C++ paths: `token::Brace`, `Token::Paren` (the keyword was a path segment).
    if v.starts_with(':')
        || v.contains("::")
        || PLACEHOLDERS.iter().any(|p| lower.contains(p))
        || FILE_SUFFIXES.iter().any(|x| lower.ends_with(x))
        || v.starts_with(['$', '%', '/', '~', '@'])
        || v.starts_with("./")
        || v.starts_with("../")
    {
        return None;
    }
    // Code, not a literal: calls, indexing, blocks, dotted paths (`os.environ["X"]`,
    // `settings.API_KEY`, `getpass()`).
    if !quoted {
        // `password:persistence:` is an Objective-C selector, `token: name:` a YAML key.
        if v.contains(['(', ')', '[', ']', '{', '}']) || v.ends_with(':') {
            return None;
        }
        let ident = |part: &str| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if v.contains('.') && v.split('.').all(ident) {
            return None;
        }
        // A variable, constant or type name: `secret=SECRET_KEY_2024`, `_bindgen_ty_3`.
        let name = v.trim_start_matches('_');
        let snake = |case: fn(&char) -> bool| {
            name.contains('_')
                && name
                    .split('_')
                    .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit() || case(&c)))
                && name.chars().next().is_some_and(|c| case(&c))
        };
        if snake(char::is_ascii_lowercase) || snake(char::is_ascii_uppercase) {
            return None;
        }
    }
    // Few distinct characters: "aaaaaaaaaaaa", "abababababab".
    let mut distinct: Vec<char> = v.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 || v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if looks_like_identifier(v) {
        return None;
    }
    Some((s, e, "assignment"))
}

/// Names rather than secrets: no digit, only letters and `_ - .`, and either single-case
/// (`invalid_token_error`, `OPENAI_API_KEY`) or CamelCase with at most a third of the letters
/// capitals (`DefaultTokenProvider`, `CFOptionFlags`). A random key of twelve or more characters
/// nearly always has a digit, or about as many capitals as small letters.
fn looks_like_identifier(v: &str) -> bool {
    if !v
        .chars()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, '_' | '-' | '.'))
    {
        return false;
    }
    let lower = !v.chars().any(|c| c.is_ascii_uppercase());
    let upper = !v.chars().any(|c| c.is_ascii_lowercase());
    let capitals = v.chars().filter(char::is_ascii_uppercase).count();
    let letters = v.chars().filter(char::is_ascii_alphabetic).count();
    lower || upper || capitals * 3 <= letters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Detector {
        Detector::new(&PiiKind::ALL)
    }

    /// Asserts that `text` holds exactly one finding, `needle`, with this kind and detail, and
    /// that redaction replaces exactly it.
    #[track_caller]
    fn assert_one(text: &str, needle: &str, kind: PiiKind, detail: &str) {
        let Some(start) = text.find(needle) else {
            panic!("{needle:?} is not in {text:?}");
        };
        let found = all().find(text);
        let want = PiiMatch {
            kind,
            start,
            end: start + needle.len(),
            detail: "",
        };
        assert_eq!(found.len(), 1, "in {text:?}: {found:?}");
        assert_eq!(
            (found[0].kind, found[0].start, found[0].end, found[0].detail),
            (want.kind, want.start, want.end, detail),
            "in {text:?}"
        );
        let expected = format!(
            "{}{}{}",
            &text[..start],
            kind.placeholder(),
            &text[start + needle.len()..]
        );
        assert_eq!(redact(text, &found), expected);
    }

    #[track_caller]
    fn assert_none(text: &str) {
        let found = all().find(text);
        assert!(found.is_empty(), "in {text:?}: {found:?}");
    }

    #[test]
    fn kinds_have_names_and_placeholders() {
        for kind in PiiKind::ALL {
            assert_eq!(PiiKind::from_name(kind.name()), Some(kind));
            assert!(kind.placeholder().starts_with('['));
        }
        assert_eq!(PiiKind::from_name("passport"), None);
        assert_eq!(PiiKind::PaymentCard.name(), "payment_card");
        assert_eq!(PiiKind::IpAddress.placeholder(), "[IP]");
        assert_eq!(PiiKind::PaymentCard.placeholder(), "[CARD]");
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Detector>();
    }

    #[test]
    fn emails() {
        assert_one(
            "Write to jane.doe+news@mail.example.co.uk today.",
            "jane.doe+news@mail.example.co.uk",
            PiiKind::Email,
            "email",
        );
        assert_one(
            "mailto:J_Smith@Example.ORG.",
            "J_Smith@Example.ORG",
            PiiKind::Email,
            "email",
        );
        assert_one("<bob@b-c.io>", "bob@b-c.io", PiiKind::Email, "email");
        for text in [
            "ssh user@host",
            "user@localhost is local",
            "user@example.c is too short a TLD",
            "see icon@2x.png and logo@3x.webp",
            "git clone git@github.com:org/repo.git",
            "npm i lodash@4.17.21",
            "pip install pkg@latest.js",
            "@decorator.name",
            "escaped \\+@bar.example.com",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn phones_e164() {
        for (text, needle) in [
            ("Call +44 20 7946 0958 now.", "+44 20 7946 0958"),
            ("Call +1 (555) 123-4567 now.", "+1 (555) 123-4567"),
            ("Call +15551234567 now.", "+15551234567"),
            ("Call +1 555 123 4567 now.", "+1 555 123 4567"),
            ("Call +33 6 12 34 56 78 now.", "+33 6 12 34 56 78"),
            ("Call +49.30.1234567 now.", "+49.30.1234567"),
            ("tel:+4930123456", "+4930123456"),
        ] {
            assert_one(text, needle, PiiKind::Phone, "e164");
        }
        for text in [
            "a +1234567 b",                 // 7 digits
            "a +1234567890123456 b",        // 16 digits
            "x+15551234567",                // glued to a word
            "+1.2.3.4.5.6.7.8",             // single-digit groups
            "released +2024-03-15 already", // a date
            "year +19370-01-01",            // a date
            "year +70000-2-18",             // a date
            "offset +255959.999",           // a decimal
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn phones_north_american() {
        for (text, needle) in [
            ("Office: (555) 123-4567.", "(555) 123-4567"),
            ("Office: (555)123-4567.", "(555)123-4567"),
            ("Office: 555-123-4567.", "555-123-4567"),
            ("Office: 555.123.4567.", "555.123.4567"),
            ("Office: 1-555-123-4567.", "1-555-123-4567"),
        ] {
            assert_one(text, needle, PiiKind::Phone, "nanp");
        }
        // Area codes start at 2; mixed separators are not a phone number.
        assert_none("part 155-123-4567");
        assert_none("part 555-123.4567");
        assert_none("id 555-123-4567-89");
    }

    #[test]
    fn phones_european() {
        for (text, needle) in [
            ("Berlin: 030 1234567.", "030 1234567"),
            ("Berlin: (030) 1234567.", "(030) 1234567"),
            ("Paris: 06 12 34 56 78.", "06 12 34 56 78"),
            ("Paris: 06.12.34.56.78.", "06.12.34.56.78"),
            ("London: 020 7946 0958.", "020 7946 0958"),
            ("Amsterdam: 06-12345678.", "06-12345678"),
        ] {
            assert_one(text, needle, PiiKind::Phone, "national");
        }
        for text in [
            "on 01-12-2024",
            "on 05 03 2024",
            "from 0100-0200",
            "codes 010 020 030",
            "Boston, MA  02110-1301  USA",
            "mixed 030 123-4567",
            "dump 48 8d 05 12 00 00 00",
            "dump 04 00 00 00 00 00 00 00",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn payment_cards() {
        for (text, needle, issuer) in [
            ("pay 4111 1111 1111 1111 now", "4111 1111 1111 1111", "visa"),
            ("pay 4111-1111-1111-1111 now", "4111-1111-1111-1111", "visa"),
            ("pay 4012888888881881 now", "4012888888881881", "visa"),
            ("pay 4222222222222 now", "4222222222222", "visa"),
            (
                "pay 5555 5555 5555 4444 now",
                "5555 5555 5555 4444",
                "mastercard",
            ),
            ("pay 2221000000000009 now", "2221000000000009", "mastercard"),
            ("pay 3782 822463 10005 now", "3782 822463 10005", "amex"),
            ("pay 3782-822463-10005 now", "3782-822463-10005", "amex"),
            ("pay 6011111111111117 now", "6011111111111117", "discover"),
            ("pay 6500000000000002 now", "6500000000000002", "discover"),
            ("pay 3530111333300000 now", "3530111333300000", "jcb"),
            ("pay 3056 930902 5904 now", "3056 930902 5904", "diners"),
            ("pay 36000000000008 now", "36000000000008", "diners"),
            ("pay 6200000000000005 now", "6200000000000005", "unionpay"),
            (
                "pay 6200 0000 0000 0000 000 now",
                "6200 0000 0000 0000 000",
                "unionpay",
            ),
            (
                "pay 4111 1111 1111 1111 123 (cvv)",
                "4111 1111 1111 1111",
                "visa",
            ),
            (
                "pay 4111 1111 1111 1111 12/26",
                "4111 1111 1111 1111",
                "visa",
            ),
        ] {
            assert_one(text, needle, PiiKind::PaymentCard, issuer);
        }
    }

    #[test]
    fn payment_cards_rejected() {
        for text in [
            "pay 4111 1111 1111 1112 now",   // Luhn fails
            "pay 4111111111111112 now",      // Luhn fails
            "pay 1234567812345670 now",      // Luhn passes, no issuer
            "pay 41111111111111110 now",     // Visa is never 17 digits
            "seed 4611686018427387900 u64",  // 19 digits ungrouped
            "hash deadbeef4111111111111111", // inside a hex run
            "id 4111111111111111ab",         // glued to letters
            "id 99-4111111111111111",        // a piece of a longer token
            "pay 4111 1111 1111 1111 1234",  // a longer space-grouped run
            "pay 123 4111 1111 1111 1111",   // a longer space-grouped run
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn ibans() {
        for (text, needle) in [
            (
                "IBAN DE89 3704 0044 0532 0130 00, thanks",
                "DE89 3704 0044 0532 0130 00",
            ),
            ("to DE89370400440532013000.", "DE89370400440532013000"),
            (
                "to GB29 NWBK 6016 1331 9268 19 DATE",
                "GB29 NWBK 6016 1331 9268 19",
            ),
            (
                "to FR14 2004 1010 0505 0001 3M02 606",
                "FR14 2004 1010 0505 0001 3M02 606",
            ),
            ("to CH9300762011623852957", "CH9300762011623852957"),
            ("to NO93 8601 1117 947", "NO93 8601 1117 947"),
            ("to NL91ABNA0417164300", "NL91ABNA0417164300"),
            (
                "to TR33 0006 1005 1978 6457 8413 26",
                "TR33 0006 1005 1978 6457 8413 26",
            ),
            (
                "to SA03 8000 0000 6080 1016 7519",
                "SA03 8000 0000 6080 1016 7519",
            ),
            (
                "to AE07 0331 2345 6789 0123 456",
                "AE07 0331 2345 6789 0123 456",
            ),
            (
                "to BR9700360305000010009795493P1",
                "BR9700360305000010009795493P1",
            ),
        ] {
            assert_one(text, needle, PiiKind::Iban, "iban");
        }
        for text in [
            "to DE88 3704 0044 0532 0130 00",  // bad check digits
            "to DE89370400440532013001",       // bad check
            "to DE89 3704 0044 0532 0130 0",   // too short for DE
            "to DE8937040044053201300012",     // too long for DE
            "to ZZ89370400440532013000",       // unknown country
            "to XDE89370400440532013000",      // glued to a letter
            "to de89 3704 0044 0532 0130 00x", // lowercase
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn us_ssn() {
        assert_one(
            "SSN: 536-22-1234.",
            "536-22-1234",
            PiiKind::NationalId,
            "us_ssn",
        );
        for text in [
            "SSN: 000-22-1234",
            "SSN: 666-22-1234",
            "SSN: 900-22-1234",
            "SSN: 999-22-1234",
            "SSN: 536-00-1234",
            "SSN: 536-22-0000",
            "ref 1536-22-1234",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn uk_nino() {
        for (text, needle) in [
            ("NI number AB123456C.", "AB123456C"),
            ("NI number AB 12 34 56 C.", "AB 12 34 56 C"),
        ] {
            assert_one(text, needle, PiiKind::NationalId, "uk_nino");
        }
        for text in [
            "NI QQ123456C",  // Q is never a first letter
            "NI AO123456C",  // O is never a second letter
            "NI BG123456C",  // unallocated prefix
            "NI AB123456E",  // suffix is A-D
            "NI AB12 3456C", // odd spacing
            "NI XAB123456C", // glued
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn ca_sin() {
        for (text, needle) in [
            ("SIN 130-692-544.", "130-692-544"),
            ("SIN 546 454 281.", "546 454 281"),
        ] {
            assert_one(text, needle, PiiKind::NationalId, "ca_sin");
        }
        assert_none("SIN 130-692-545"); // Luhn fails
        assert_none("SIN 830-692-544"); // never starts with 8
    }

    #[test]
    fn fr_nir() {
        for (text, needle) in [
            ("NIR 1 85 05 78 006 084 91.", "1 85 05 78 006 084 91"),
            ("NIR 185057800608491.", "185057800608491"),
            ("NIR 2 90 02 2A 123 456 78.", "2 90 02 2A 123 456 78"),
            ("NIR 2 90 02 2B 123 456 08.", "2 90 02 2B 123 456 08"),
        ] {
            assert_one(text, needle, PiiKind::NationalId, "fr_nir");
        }
        assert_none("NIR 1 85 05 78 006 084 92"); // bad key
        assert_none("NIR 2 90 02 2A 123 456 08"); // 2B's key on 2A
    }

    #[test]
    fn in_aadhaar() {
        for (text, needle) in [
            ("Aadhaar 2345 6789 0124.", "2345 6789 0124"),
            ("Aadhaar 2345-6789-0124.", "2345-6789-0124"),
        ] {
            assert_one(text, needle, PiiKind::NationalId, "in_aadhaar");
        }
        assert_none("Aadhaar 2345 6789 0125"); // bad Verhoeff
        assert_none("Aadhaar 1345 6789 0124"); // never starts with 0 or 1
        assert!(verhoeff(&[2, 3, 6, 3]));
        assert!(!verhoeff(&[2, 3, 6, 4]));
    }

    #[test]
    fn ipv4() {
        for (text, needle) in [
            ("from 192.168.1.100 today", "192.168.1.100"),
            ("server 10.0.0.1:8080 is up", "10.0.0.1"),
            ("host=255.255.255.0.", "255.255.255.0"),
            ("(8.8.8.8)", "8.8.8.8"),
        ] {
            assert_one(text, needle, PiiKind::IpAddress, "ipv4");
        }
        for text in [
            "256.1.1.1 is not an address",
            "01.2.3.4",
            "10.0.19041.1",
            "1.2.3.4.5",
            "v1.2.3.4",
            "version 1.2.3.4",
            "Version: 1.2.3.4",
            "ver 1.2.3.4",
            "Per RFC 5280, section 4.1.2.8, these",
            "rfc7049#section-2.4.4.3",
            "See JSON Schema 9.2.1.1. allOf",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn ipv6() {
        for (text, needle) in [
            (
                "at 2001:0db8:85a3:0000:0000:8a2e:0370:7334 now",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            ),
            ("at 2001:db8::8a2e:370:7334 now", "2001:db8::8a2e:370:7334"),
            ("at ::1 now", "::1"),
            ("at fe80::1%eth0 now", "fe80::1"),
            ("at ::ffff:192.168.1.1 now", "::ffff:192.168.1.1"),
            ("at [2001:db8::1]:443 now", "2001:db8::1"),
            ("at 2001:db8::1: unreachable", "2001:db8::1"),
        ] {
            assert_one(text, needle, PiiKind::IpAddress, "ipv6");
        }
        for text in [
            "12:30:45",
            "std::net::Ipv6Addr",
            "a::b",
            "use ::std;",
            "dead::beef",
            "00:1A:2B:3C:4D:5E",
            "assert_eq!(E3::<1>::Baz, E3::Bar)",
            "offset +12::34 and +12 ::34",
            "c::B0 => Some(0), c::FF0",
            "odd_sum = a[:, 1::2].sum()",
            "parse_duration(\"1::59\")",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn named_secrets() {
        let cases = [
            (
                "key AKIAIOSFODNN7EXAMPLE here",
                "AKIAIOSFODNN7EXAMPLE",
                "aws_access_key",
            ),
            (
                "key ASIAY34FZKBOKMUTVV7A here",
                "ASIAY34FZKBOKMUTVV7A",
                "aws_access_key",
            ),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_key",
            ),
            (
                "token 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 here",
                "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",
                "github_token",
            ),
            (
                "token gho_16C7e42F292c6912E7710c838347Ae178B4a here",
                "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                "github_token",
            ),
            (
                "xoxb-2345678901-2345678901234-AbCdEfGhIjKlMnOpQrStUvWx is slack",
                "xoxb-2345678901-2345678901234-AbCdEfGhIjKlMnOpQrStUvWx",
                "slack_token",
            ),
            (
                "use sk-ant-api03-AbCdEf0123456789_GhIjKlMn-OpQrStUv now",
                "sk-ant-api03-AbCdEf0123456789_GhIjKlMn-OpQrStUv",
                "anthropic_key",
            ),
            (
                "use sk-proj-Ab12Cd34Ef56Gh78Ij90_Kl-Mn now",
                "sk-proj-Ab12Cd34Ef56Gh78Ij90_Kl-Mn",
                "openai_key",
            ),
            (
                "use sk-Ab12Cd34Ef56Gh78Ij90KlMnOpQrSt now",
                "sk-Ab12Cd34Ef56Gh78Ij90KlMnOpQrSt",
                "openai_key",
            ),
            (
                "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc done",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "stripe_key",
            ),
            (
                "stripe rk_live_4eC39HqLyjWDarjtT1zdp7dc done",
                "rk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "stripe_key",
            ),
            (
                "stripe sk_test_4eC39HqLyjWDarjtT1zdp7dc done",
                "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
                "stripe_key",
            ),
            (
                "maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe ok",
                "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
                "google_api_key",
            ),
            (
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt",
            ),
        ];
        for (text, needle, detail) in cases {
            assert_one(text, needle, PiiKind::Secret, detail);
        }
        let pat = format!(
            "github_pat_{}",
            "A1b2C3d4E5_f".repeat(7).get(..82).unwrap_or_default()
        );
        assert_eq!(pat.len(), 93);
        assert_one(
            &format!("pat {pat} ok"),
            &pat,
            PiiKind::Secret,
            "github_pat",
        );
        for text in [
            "ghp_tooShort123",
            "x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",
            "scikit sk-learn-is-a-great-library-for-ml",
            "task-AbCdEf0123456789AbCdEf",
            "AKIAIOSFODNN7EXAMPLEX",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYTOOLONG",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn private_keys() {
        for label in [
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "DSA PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "PRIVATE KEY",
        ] {
            let block = format!(
                "-----BEGIN {label}-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END {label}-----"
            );
            assert_one(
                &format!("key:\n{block}\ntrailing text"),
                &block,
                PiiKind::Secret,
                "private_key",
            );
        }
        // A truncated paste still covers the header and the body lines.
        let truncated =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcN\nKUpRKfFLfRYC9AIKjbJT";
        assert_one(
            &format!("{truncated}\n(cut here)"),
            truncated,
            PiiKind::Secret,
            "private_key",
        );
        assert_none(
            "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD9\n-----END PUBLIC KEY-----",
        );
        assert_none("-----BEGIN CERTIFICATE-----");
        assert_none("r\"-----BEGIN PRIVATE KEY-----\"");
        assert_none("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----");
    }

    #[test]
    fn generic_assignments_cover_the_value_only() {
        for (text, value) in [
            (r#"password = "hunter2Hunter2!""#, "hunter2Hunter2!"),
            (
                "api_key: 'a8f5f167f44f4964e6c998dee827110c'",
                "a8f5f167f44f4964e6c998dee827110c",
            ),
            ("secret=Zx9QpL2mN7vR4tY8", "Zx9QpL2mN7vR4tY8"),
            ("token: 3f9a7b2c1d8e4f6a0b5c", "3f9a7b2c1d8e4f6a0b5c"),
            (
                r#"{"db_password": "S3cure-P@ssw0rd-2024"}"#,
                "S3cure-P@ssw0rd-2024",
            ),
            (
                "export CLIENT_SECRET=qW3rTy7uI9oP1aS5dF",
                "qW3rTy7uI9oP1aS5dF",
            ),
            ("url?access_token=a1B2c3D4e5F6g7H8&x=1", "a1B2c3D4e5F6g7H8"),
            ("AUTH_TOKEN := 'k8s-Tok3n-9f8e7d6c'", "k8s-Tok3n-9f8e7d6c"),
            ("(secret=Zx9QpL2mN7vR4tY8)", "Zx9QpL2mN7vR4tY8"),
            (
                "SECRET_KEY = 'django-insecure-k3y+9x!q2w@e#r$t%y^u'",
                "django-insecure-k3y+9x!q2w@e#r$t%y^u",
            ),
            ("password => 'summer_vacation_2024'", "summer_vacation_2024"),
        ] {
            assert_one(text, value, PiiKind::Secret, "assignment");
        }
    }

    #[test]
    fn generic_assignment_placeholders_are_not_secrets() {
        for text in [
            r#"password = "changeme""#,
            r#"password = "changeme-please-123""#,
            "api_key: '<your-key>'",
            "api_key: '<your-api-key-here>'",
            "token: ${GITHUB_TOKEN}",
            "token: ${{ secrets.GITHUB_TOKEN }}",
            "secret=xxxxxxxxxxxxxxxx",
            r#"password: "****************""#,
            "password: ...............",
            "api_key = os.environ['OPENAI_API_KEY']",
            "api_key = settings.OPENAI_API_KEY",
            "password = getpass.getpass()",
            "token = request.headers.authorization",
            "api_key: OPENAI_API_KEY",
            r#"token: "invalid_token_error""#,
            "private_key: /etc/ssl/private/server.pem",
            "private_key: server-cert-2024.pem",
            r#"password: "must be at least 12 characters""#,
            "Password: must be at least 12 characters",
            "password = 123456789012345",
            "password: aaaaaaaaaaaaaaaa",
            "tokenizer: bert-base-uncased-v2",
            "max_tokens: 4096000000000",
            r#"if password == "hunter2hunter2":"#,
            "token: short",
            "password: %(db_password)s",
            "secret=SECRET_KEY_NAME_2024",
            "api_key=api_key_from_env_v2",
            "pub brace_token: token::Brace,",
            "kind: token::LitKind::Str,",
            "[`CancellationToken::run_until_cancelled`]",
            "ZipError::InvalidPassword => ZipError::InvalidPassword,",
            "const DEVCONF_STABLE_SECRET: _bindgen_ty_3 = _bindgen_ty_3;",
            "ApplicationPassword: CFOptionFlags = 1 << 31;",
            "token: OAuthTokenResponse) -> Creds",
            r#"{"progressToken": "progress-test-1", "nextPageToken": "CiAKGjBpNDd2Nmp2Zml2cXRw"}"#,
            "#[method(initWithUser:password:persistence:)]",
            r#"aws_secret_access_key = "object_store:fake_secret_key""#,
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn benign_technical_text_finds_nothing() {
        let benign = [
            "version 1.2.3",
            "Windows build 10.0.19041.1",
            "firmware v1.2.3.4",
            "released version 1.2.3.4",
            "Version 2.0.0.1 notes",
            "ver 4.3.2.1",
            "Rust 1.88.0 and python3.11",
            "on 2024-03-15",
            "on 15.03.2024",
            "on 03/15/2024",
            "on 15/03/2024",
            "on 2024/03/15",
            "on 2024.03.15",
            "on 15-Mar-2024",
            "on March 15, 2024",
            "at 12:30:45 and 09:30-17:00",
            "at 12:30",
            "stamp 2024-03-15T12:30:45Z",
            "stamp 2024-03-15T12:30:45.123+01:00",
            "commit e83c5163316f89bfbde7d9ab23ca2e25604af290",
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "uuid 550e8400-e29b-41d4-a716-446655440000",
            "uuid 12345678-1234-5678-1234-567812345678",
            "colour #ff8800 and #FFF and #0a0b0c",
            "open localhost:8080/path",
            "open http://example.com:8080/path",
            "error std::io::Error",
            "path a::b and u8::MAX and <T as Trait>::f",
            "see CVE-2021-44228",
            "ISBN 978-3-16-148410-0",
            "ISBN-13: 9783161484100",
            "ISBN 0-306-40615-2",
            "size 1,048,576 bytes",
            "range 100-200",
            "ports 80, 443, 8080-8090",
            "at 48.8566, 2.3522",
            "pi 3.14159265358979",
            "ssh user@host",
            "stamp 20240315123045",
            "id 1234567890",
            "mask 0x7fffffff",
            "oid 1.3.6.1.4.1.311",
            "mac 00:1A:2B:3C:4D:5E",
            "image nginx:1.25.3",
            "offset +05:30",
            "x86_64 and arm64",
            "cost $ 1,234.56",
            "ratio 12.5% and 1e-10",
            "pages 123 of 456",
            "numbers 1 2 3 4 5 6 7 8 9 10",
            "C++17 and C++20",
            "10.0.0 is three parts",
            "epoch 1710505845123",
            "kind: Secret",
            "-----BEGIN PUBLIC KEY-----",
        ];
        assert!(benign.len() >= 40);
        for text in benign {
            assert_none(text);
        }
    }

    #[test]
    fn multibyte_text_gives_byte_offsets() {
        let text = "Grüße, 日本語 — écrivez à jane@example.com ou 192.168.0.1 ✓";
        let found = all().find(text);
        assert_eq!(found.len(), 2, "{found:?}");
        let email = "jane@example.com";
        let ip = "192.168.0.1";
        let (Some(e), Some(i)) = (text.find(email), text.find(ip)) else {
            panic!("needles missing");
        };
        assert_eq!((found[0].start, found[0].end), (e, e + email.len()));
        assert_eq!(&text[found[0].start..found[0].end], email);
        assert_eq!((found[1].start, found[1].end), (i, i + ip.len()));
        assert_eq!(
            redact(text, &found),
            "Grüße, 日本語 — écrivez à [EMAIL] ou [IP] ✓"
        );
        // A candidate glued to a non-ASCII letter is inside a word.
        assert_none("éjane@example.com");
    }

    #[test]
    fn overlaps_resolve_deterministically() {
        // Same span from a named format and a generic assignment: the named one wins.
        let text = "OPENAI_API_KEY=sk-proj-Ab12Cd34Ef56Gh78Ij90_Kl-Mn";
        let found = all().find(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detail, "openai_key");
        // IPv6 with embedded IPv4 beats the shorter IPv4 inside it.
        assert_one(
            "at ::ffff:10.1.2.3 now",
            "::ffff:10.1.2.3",
            PiiKind::IpAddress,
            "ipv6",
        );
        // E.164 beats the NANP number inside it.
        assert_one(
            "+1 (555) 123-4567",
            "+1 (555) 123-4567",
            PiiKind::Phone,
            "e164",
        );
        // Kind order breaks ties between equal spans, whatever order kinds were given in.
        let c = |start, end, kind, priority| Candidate {
            start,
            end,
            kind,
            detail: kind.name(),
            priority,
        };
        let candidates = vec![
            c(0, 10, PiiKind::Secret, 20),
            c(0, 10, PiiKind::Phone, 3),
            c(5, 20, PiiKind::NationalId, 9),
            c(30, 35, PiiKind::Email, 0),
            c(32, 37, PiiKind::Email, 0),
        ];
        let mut reversed = candidates.clone();
        reversed.reverse();
        let a = resolve(candidates);
        let b = resolve(reversed);
        assert_eq!(a, b);
        let spans: Vec<_> = a.iter().map(|m| (m.start, m.end, m.kind)).collect();
        assert_eq!(
            spans,
            [(5, 20, PiiKind::NationalId), (30, 35, PiiKind::Email)]
        );
        let forward = Detector::new(&PiiKind::ALL);
        let mut kinds = PiiKind::ALL;
        kinds.reverse();
        let backward = Detector::new(&kinds);
        let sample = "jane@example.com +44 20 7946 0958 token: 3f9a7b2c1d8e4f6a0b5c ::1";
        assert_eq!(forward.find(sample), backward.find(sample));
    }

    #[test]
    fn detectors_cover_only_the_kinds_asked_for() {
        let text = "jane@example.com 4111 1111 1111 1111 10.0.0.1";
        let cards = Detector::new(&[PiiKind::PaymentCard]).find(text);
        assert_eq!(cards.len(), 1);
        assert_eq!(cards[0].kind, PiiKind::PaymentCard);
        assert!(Detector::new(&[]).find(text).is_empty());
        assert_eq!(all().find(text).len(), 3);
    }

    #[test]
    fn redact_handles_unsorted_overlapping_and_bad_spans() {
        let text = "abc 日本 xyz";
        let m = |start, end| PiiMatch {
            kind: PiiKind::Secret,
            start,
            end,
            detail: "",
        };
        // Unsorted; the second overlaps the first; one splits a char; one is past the end.
        let matches = [m(11, 14), m(0, 3), m(1, 5), m(5, 6), m(20, 30)];
        assert_eq!(redact(text, &matches), "[SECRET] 日本 [SECRET]");
        assert_eq!(redact(text, &[]), text);
    }

    #[test]
    fn several_findings_in_one_text() {
        let text = "Jane <jane@example.com>, +44 20 7946 0958, card 4111 1111 1111 1111, \
                    IBAN GB29 NWBK 6016 1331 9268 19, SSN 536-22-1234, host 10.1.2.3, \
                    key AKIAIOSFODNN7EXAMPLE.";
        let found = all().find(text);
        let kinds: Vec<PiiKind> = found.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                PiiKind::Email,
                PiiKind::Phone,
                PiiKind::PaymentCard,
                PiiKind::Iban,
                PiiKind::NationalId,
                PiiKind::IpAddress,
                PiiKind::Secret
            ]
        );
        assert_eq!(
            redact(text, &found),
            "Jane <[EMAIL]>, [PHONE], card [CARD], IBAN [IBAN], SSN [NATIONAL_ID], host [IP], \
             key [SECRET]."
        );
    }

    /// `cargo test -- --ignored --nocapture timing` prints how long 100 KB takes.
    #[test]
    #[ignore]
    fn timing() {
        let chunk = "Release v1.2.3.4 on 2024-03-15T12:30:45Z by jane@example.com; see \
                     std::io::Error at 10.0.0.1:8080, commit e83c5163316f89bfbde7d9ab23ca2e25604af290, \
                     call +44 20 7946 0958, token: 3f9a7b2c1d8e4f6a0b5c, card 4111 1111 1111 1111.\n";
        let text = chunk.repeat(100_000 / chunk.len() + 1);
        let detector = all();
        let started = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..10 {
            n = detector.find(&text).len();
        }
        let per = started.elapsed() / 10;
        println!("{} bytes, {n} matches, {per:?} per find", text.len());
    }
}
