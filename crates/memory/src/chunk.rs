//! Token-aware chunking: cuts an [`Extracted`] document into pieces that each fit an embedder's
//! input, at the strongest boundary that still leaves a piece reasonably full, with consecutive
//! pieces overlapping so that context is not lost at a cut.
//!
//! # Boundaries
//!
//! The text is first cut into *atoms*, the stretches between candidate cut points, each marked
//! with the strength of the boundary at its start, strongest first:
//!
//! 1. a section boundary where the heading path changes;
//! 2. a paragraph break (a blank line, a form feed, U+2029) or a page change;
//! 3. a line break;
//! 4. a sentence boundary (UAX #29);
//! 5. whitespace between words;
//! 6. any other word boundary (UAX #29): at punctuation, and between the characters of CJK and
//!    Thai, which have no spaces. It is not taken before closing punctuation or a small kana,
//!    after opening punctuation, or inside a Thai or Lao syllable (before a following vowel,
//!    after a leading vowel), where a reader would not cut;
//! 7. a grapheme cluster boundary, used only inside one atom longer than `max_tokens` on its own
//!    (a URL, base64, a long run of punctuation).
//!
//! Every cut is a grapheme cluster boundary: a word or section boundary inside a cluster (the
//! UAX #29 word rules break inside some Thai clusters) is not a cut point. A cut lies after
//! whitespace, so a piece keeps the whitespace that follows its text and the next one starts at
//! a non-space character; a stretch of whitespace is never a piece of its own unless the whole
//! text is whitespace.
//!
//! # Counting
//!
//! Each atom is counted once with the embedder's counter, together with the whitespace before
//! it (BPE tokenizers attach a space to the word after it), and a piece's size is estimated from
//! prefix sums of those counts. WordPiece and BPE pre-tokenizers split at whitespace and
//! punctuation, so the estimate is exact or a little high; every piece is then counted for real
//! (that count is [`Piece::tokens`]) and shrunk if it is over. Chunking a long document so costs
//! one count per word and about two per piece (the piece and its overlap), linear in the length
//! of the text.
//!
//! # Filling
//!
//! A piece takes as many atoms as fit, then ends at the strongest boundary among them that leaves
//! it at least half full (half of the room that is left after the overlap), at the latest such
//! boundary of that strength. A heading arriving early in a piece thus does not make a tiny
//! piece, and a weaker boundary is used only where every stronger one would leave the piece less
//! than half full. The end of the text ends the last piece, whatever its size.
//!
//! # Overlap
//!
//! The next piece starts at the earliest word (or stronger) boundary from which the rest of the
//! previous piece counts at most `overlap_tokens`, so the overlap is as close to that as the
//! boundaries allow and never more; in text without spaces between words (CJK, Thai), where a
//! word boundary may fall between any two characters, it starts at a space or stronger boundary
//! instead if that still repeats at least half of `overlap_tokens`. It never reaches back across
//! a heading change (it would carry one section's text under another's heading) nor into an atom
//! that had to be cut at grapheme boundaries (there is no word boundary to start at).

use std::ops::Range;

use corral_core::{PageRange, TokenCounter};
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::text::{Extracted, Section};

/// How big the pieces are and how much consecutive pieces share, in the embedder's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkConfig {
    /// The most tokens a piece holds. Default 512.
    pub max_tokens: usize,
    /// Tokens a piece repeats from the end of the one before it, at most. Default 128; 0 makes
    /// adjacent pieces.
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            overlap_tokens: 128,
        }
    }
}

impl ChunkConfig {
    /// Checks that a piece can hold something beyond its overlap; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_tokens == 0 {
            return Err("max_tokens: must be at least 1".to_owned());
        }
        if self.overlap_tokens >= self.max_tokens {
            return Err(format!(
                "overlap_tokens: {} must be less than max_tokens ({})",
                self.overlap_tokens, self.max_tokens
            ));
        }
        Ok(())
    }
}

/// One piece of a document's text, ready to be embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Byte range in [`Extracted::text`], on grapheme cluster boundaries.
    pub range: Range<usize>,
    /// First and last page of the sections that hold the piece's text, leading and trailing
    /// whitespace aside; `None` when none of them has a page.
    pub pages: Option<PageRange>,
    /// The heading path of the section where the piece's first non-whitespace character lies.
    pub heading_path: Vec<String>,
    /// The counter's count for the piece's text.
    pub tokens: usize,
}

/// Cuts `doc.text` into pieces of at most `config.max_tokens` tokens by `counter`, each after
/// the first overlapping the one before by at most `config.overlap_tokens` (see the module
/// documentation for where it cuts).
///
/// The pieces are in order and cover the text: the first starts at 0, the last ends at its
/// length, and each starts after the one before it starts and no later than it ends. Only a
/// grapheme cluster that alone counts more than `max_tokens` makes a piece over it (of that
/// cluster and any whitespace after it). Empty text makes no pieces. A config that
/// [`ChunkConfig::validate`] rejects is used as near as it can be: `max_tokens` at least 1,
/// `overlap_tokens` below it.
pub fn chunk(doc: &Extracted, counter: &dyn TokenCounter, config: &ChunkConfig) -> Vec<Piece> {
    let text = doc.text.as_str();
    if text.is_empty() {
        return Vec::new();
    }
    let max = config.max_tokens.max(1);
    let marks = Marks::new(doc);
    let cutter = Cutter::new(
        text,
        counter,
        &marks,
        max,
        config.overlap_tokens.min(max - 1),
    );
    cutter
        .cut()
        .into_iter()
        .map(|(range, tokens)| {
            let (first, last) = trimmed(text, &range);
            Piece {
                pages: pages(&doc.sections, first..last),
                heading_path: section_at(&doc.sections, first)
                    .map(|s| s.heading_path.clone())
                    .unwrap_or_default(),
                range,
                tokens,
            }
        })
        .collect()
}

/// Estimates tokens for embedders that cannot count them (remote endpoints), erring on the high
/// side for the WordPiece and BPE tokenizers of common embedding models on ordinary prose.
///
/// It assumes that a tokenizer keeps a short ASCII word whole and spends a token on roughly every
/// four letters of a longer one and every three digits; that punctuation costs a token a
/// character; and that other scripts (CJK, Thai, Devanagari, Cyrillic, combining marks) cost at
/// least a token a character, two outside the Basic Multilingual Plane (emoji, rare CJK), where
/// byte-level BPE spends several tokens. So: a run of ASCII letters (split where a lowercase
/// letter meets an uppercase one, as in `camelCase` and base64) counts ⌈len/4⌉, a run of ASCII
/// digits ⌈len/3⌉, whitespace nothing, every other character 1, or 2 above U+FFFF. English prose
/// comes out some 20–40% above a BERT or GPT tokenizer's count ("The quick brown fox jumps over
/// the lazy dog." is 13 here, 10 there). Random lowercase strings and rare long words may be
/// undercounted, so leave the embedder's limit some headroom above [`ChunkConfig::max_tokens`].
///
/// Cutting a text anywhere never makes the parts count less than the whole, so pieces cut by
/// these counts are never over by them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproxTokenCounter;

impl TokenCounter for ApproxTokenCounter {
    fn count_tokens(&self, text: &str) -> usize {
        let mut tokens = 0;
        let mut letters = 0usize;
        let mut digits = 0usize;
        let mut after_lowercase = false;
        for c in text.chars() {
            if c.is_ascii_alphabetic() {
                tokens += digits.div_ceil(3);
                digits = 0;
                if after_lowercase && c.is_ascii_uppercase() {
                    tokens += letters.div_ceil(4);
                    letters = 0;
                }
                letters += 1;
                after_lowercase = c.is_ascii_lowercase();
                continue;
            }
            tokens += letters.div_ceil(4);
            letters = 0;
            after_lowercase = false;
            if c.is_ascii_digit() {
                digits += 1;
                continue;
            }
            tokens += digits.div_ceil(3);
            digits = 0;
            if !c.is_whitespace() {
                tokens += if c.len_utf8() == 4 { 2 } else { 1 };
            }
        }
        tokens + letters.div_ceil(4) + digits.div_ceil(3)
    }
}

/// How strong a boundary is, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    Grapheme,
    Word,
    Space,
    Sentence,
    Line,
    Paragraph,
    Section,
}

const LEVELS: usize = Break::Section as usize + 1;

impl Break {
    /// The level stored in a mark's low bits (the level plus one; 0 for none).
    fn from_mark(bits: u8) -> Option<Self> {
        Some(match bits {
            1 => Self::Grapheme,
            2 => Self::Word,
            3 => Self::Space,
            4 => Self::Sentence,
            5 => Self::Line,
            6 => Self::Paragraph,
            7 => Self::Section,
            _ => return None,
        })
    }
}

/// Per byte of the text (and one past its end): whether a grapheme cluster starts there, and the
/// strongest boundary found there. One byte each keeps the segmentation passes independent and
/// linear.
struct Marks(Vec<u8>);

const CLUSTER_START: u8 = 0x80;
const LEVEL_BITS: u8 = 0x7f;

impl Marks {
    fn new(doc: &Extracted) -> Self {
        let text = doc.text.as_str();
        let mut marks = Self(vec![0; text.len() + 1]);
        for (at, _) in text.grapheme_indices(true) {
            marks.set_cluster_start(at);
        }
        marks.set_cluster_start(text.len());

        // Word starts, ranked by the whitespace before them.
        let mut in_space = false;
        let mut line_breaks = 0;
        let mut before: Option<char> = None;
        for (at, word) in text.split_word_bound_indices() {
            if word.chars().all(is_break_space) {
                if !in_space {
                    in_space = true;
                    line_breaks = 0;
                }
                line_breaks += count_line_breaks(word);
            } else {
                let level = match (in_space, line_breaks) {
                    (false, _) => Break::Word,
                    (true, 0) => Break::Space,
                    (true, 1) => Break::Line,
                    (true, _) => Break::Paragraph,
                };
                let glued = level == Break::Word
                    && matches!((before, word.chars().next()), (Some(b), Some(a)) if glued(b, a));
                if at > 0 && !glued {
                    marks.raise(at, level);
                }
                in_space = false;
            }
            before = word.chars().next_back();
        }

        // Sentence starts count only where a word starts (UAX #29 sentences also start inside
        // runs of line breaks, which the word pass already ranks).
        for (at, _) in text.split_sentence_bound_indices() {
            if marks.level(at).is_some() {
                marks.raise(at, Break::Sentence);
            }
        }

        let mut previous: Option<&Section> = None;
        for section in doc.sections.iter().filter(|s| s.range.start < s.range.end) {
            if let Some(p) = previous {
                if p.heading_path != section.heading_path {
                    marks.raise(section.range.start, Break::Section);
                } else if p.page != section.page {
                    marks.raise(section.range.start, Break::Paragraph);
                }
            }
            previous = Some(section);
        }
        marks
    }

    fn set_cluster_start(&mut self, at: usize) {
        if let Some(m) = self.0.get_mut(at) {
            *m |= CLUSTER_START;
        }
    }

    fn raise(&mut self, at: usize, level: Break) {
        if let Some(m) = self.0.get_mut(at) {
            let bits = level as u8 + 1;
            if *m & LEVEL_BITS < bits {
                *m = (*m & CLUSTER_START) | bits;
            }
        }
    }

    fn level(&self, at: usize) -> Option<Break> {
        Break::from_mark(self.0.get(at)? & LEVEL_BITS)
    }

    fn is_cluster_start(&self, at: usize) -> bool {
        self.0.get(at).is_some_and(|m| m & CLUSTER_START != 0)
    }

    /// The boundary at `at`, when a piece may be cut there.
    fn cut(&self, at: usize) -> Option<Break> {
        if self.is_cluster_start(at) {
            self.level(at)
        } else {
            None
        }
    }
}

/// Whitespace a line may break at (the no-break spaces are not).
fn is_break_space(c: char) -> bool {
    c.is_whitespace() && !matches!(c, '\u{a0}' | '\u{2007}' | '\u{202f}')
}

/// Line breaks in a run of whitespace; CR LF is one, a form feed or paragraph separator two.
fn count_line_breaks(space: &str) -> usize {
    let mut count = 0;
    let mut after_cr = false;
    for c in space.chars() {
        count += match c {
            '\n' if after_cr => 0,
            '\n' | '\r' | '\u{b}' | '\u{85}' | '\u{2028}' => 1,
            '\u{c}' | '\u{2029}' => 2,
            _ => 0,
        };
        after_cr = c == '\r';
    }
    count
}

/// Word boundaries (UAX #29) between `before` and `after` that a reader would not cut at.
fn glued(before: char, after: char) -> bool {
    const CLOSING: &str = ".,;:!?%)]}>»”’…、。，．！？：；）］｝〉》」』】〕〗〙〛｣।॥ๆฯ،؛؟۔";
    const OPENING: &str = "([{<«“‘（［｛〈《「『【〔〖〘〚｢";
    // Small kana, the prolonged sound mark and iteration marks belong to the kana before them.
    const KANA_TAILS: &str = "ぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶーゝゞヽヾ々";
    // Thai and Lao vowels written after their consonant yet not combining, and those written
    // before it: UAX #29 breaks around both, which would split a syllable.
    let follows = matches!(after, '\u{e30}' | '\u{e32}' | '\u{e33}' | '\u{e45}')
        || matches!(after, '\u{eb0}' | '\u{eb2}' | '\u{eb3}');
    let leads = matches!(before, '\u{e40}'..='\u{e44}' | '\u{ec0}'..='\u{ec4}');
    CLOSING.contains(after)
        || OPENING.contains(before)
        || KANA_TAILS.contains(after)
        || follows
        || leads
}

/// A stretch of text between two cut points, counted once.
#[derive(Debug, Clone, Copy)]
struct Atom {
    start: usize,
    /// The boundary at `start`.
    level: Break,
    tokens: usize,
}

/// The cutting itself, over the atoms of one text.
struct Cutter<'a> {
    text: &'a str,
    counter: &'a dyn TokenCounter,
    marks: &'a Marks,
    atoms: Vec<Atom>,
    /// `prefix[i]`: the estimated tokens of atoms `0..i`.
    prefix: Vec<usize>,
    max: usize,
    overlap: usize,
}

impl<'a> Cutter<'a> {
    fn new(
        text: &'a str,
        counter: &'a dyn TokenCounter,
        marks: &'a Marks,
        max: usize,
        overlap: usize,
    ) -> Self {
        let mut cutter = Self {
            text,
            counter,
            marks,
            atoms: Vec::new(),
            prefix: Vec::new(),
            max,
            overlap,
        };
        cutter.atoms = cutter.make_atoms();
        cutter.prefix = Vec::with_capacity(cutter.atoms.len() + 1);
        let mut sum = 0usize;
        cutter.prefix.push(sum);
        for atom in &cutter.atoms {
            sum = sum.saturating_add(atom.tokens);
            cutter.prefix.push(sum);
        }
        cutter
    }

    fn make_atoms(&self) -> Vec<Atom> {
        let text = self.text;
        let len = text.len();
        let mut cuts = vec![(0, Break::Section)];
        cuts.extend((1..len).filter_map(|at| self.marks.cut(at).map(|level| (at, level))));

        // Join whitespace-only stretches to the atom after them (at the very end, before them),
        // keeping the stronger boundary.
        let mut spans: Vec<(usize, usize, Break)> = Vec::with_capacity(cuts.len());
        let mut carried: Option<(usize, Break)> = None;
        for (k, &(start, level)) in cuts.iter().enumerate() {
            let end = cuts.get(k + 1).map_or(len, |c| c.0);
            let (start, level) = match carried.take() {
                Some((s, l)) => (s, l.max(level)),
                None => (start, level),
            };
            if slice(text, start..end).chars().all(is_break_space) {
                if end < len {
                    carried = Some((start, level));
                    continue;
                }
                if let Some(last) = spans.last_mut() {
                    last.1 = end;
                    continue;
                }
            }
            spans.push((start, end, level));
        }

        let mut atoms = Vec::with_capacity(spans.len());
        let mut counted_to = 0;
        for (start, end, level) in spans {
            let content_end = start
                + slice(text, start..end)
                    .trim_end_matches(is_break_space)
                    .len();
            let tokens = self
                .counter
                .count_tokens(slice(text, counted_to..content_end));
            counted_to = content_end;
            if tokens <= self.max {
                atoms.push(Atom {
                    start,
                    level,
                    tokens,
                });
                continue;
            }
            for (k, (range, tokens)) in self.split_clusters(start..end).into_iter().enumerate() {
                atoms.push(Atom {
                    start: range.start,
                    level: if k == 0 { level } else { Break::Grapheme },
                    tokens,
                });
            }
        }
        atoms
    }

    /// Cuts `range` at grapheme cluster boundaries into the fewest pieces that each count at
    /// most `max` (a cluster that alone counts more is a piece of its own). Galloping keeps the
    /// counting near-linear in the length of `range`.
    fn split_clusters(&self, range: Range<usize>) -> Vec<(Range<usize>, usize)> {
        let mut ends: Vec<usize> = (range.start + 1..range.end)
            .filter(|&at| self.marks.is_cluster_start(at))
            .collect();
        ends.push(range.end);
        let mut out = Vec::new();
        let mut from = range.start;
        let mut first = 0;
        while let Some(&first_end) = ends.get(first) {
            let count = |k: usize| {
                let end = ends.get(k).copied().unwrap_or(range.end);
                self.counter.count_tokens(slice(self.text, from..end))
            };
            let mut good = first;
            let mut tokens = count(first);
            if tokens <= self.max {
                // Gallop to a cluster end that is over, then bisect between the last that fits
                // and it.
                let last = ends.len() - 1;
                let mut over = ends.len();
                let mut step = 1;
                while good < last {
                    let k = (good + step).min(last);
                    let t = count(k);
                    if t > self.max {
                        over = k;
                        break;
                    }
                    (good, tokens) = (k, t);
                    step *= 2;
                }
                while over - good > 1 {
                    let mid = good + (over - good) / 2;
                    let t = count(mid);
                    if t <= self.max {
                        (good, tokens) = (mid, t);
                    } else {
                        over = mid;
                    }
                }
            }
            if tokens > self.max {
                // A cluster over the limit on its own: it takes the whitespace after it along.
                while let (Some(&a), Some(&b)) = (ends.get(good), ends.get(good + 1)) {
                    if !slice(self.text, a..b).chars().all(is_break_space) {
                        break;
                    }
                    good += 1;
                }
                tokens = count(good);
            }
            let end = ends.get(good).copied().unwrap_or(first_end);
            out.push((from..end, tokens));
            from = end;
            first = good + 1;
        }
        out
    }

    /// Where atom `i` starts (the text's length for `i` past the last atom).
    fn pos(&self, i: usize) -> usize {
        self.atoms.get(i).map_or(self.text.len(), |a| a.start)
    }

    fn level(&self, i: usize) -> Break {
        self.atoms.get(i).map_or(Break::Section, |a| a.level)
    }

    fn prefix(&self, i: usize) -> usize {
        self.prefix.get(i).copied().unwrap_or(usize::MAX)
    }

    /// Estimated tokens of atoms `i..j`.
    fn estimate(&self, i: usize, j: usize) -> usize {
        self.prefix(j).saturating_sub(self.prefix(i))
    }

    /// The counter's tokens for atoms `i..j`.
    fn count(&self, i: usize, j: usize) -> usize {
        self.counter
            .count_tokens(slice(self.text, self.pos(i)..self.pos(j)))
    }

    /// Whether atom `i` is one grapheme cluster, whitespace after it aside.
    fn is_lone_cluster(&self, i: usize) -> bool {
        let start = self.pos(i);
        let end = start
            + slice(self.text, start..self.pos(i + 1))
                .trim_end_matches(is_break_space)
                .len();
        !(start + 1..end).any(|at| self.marks.is_cluster_start(at))
    }

    /// The pieces as byte ranges with their counts.
    fn cut(&self) -> Vec<(Range<usize>, usize)> {
        let n = self.atoms.len();
        let mut out = Vec::new();
        let (mut prev_start, mut prev_end) = (0, 0);
        while prev_end < n {
            let placed = self.overlap_starts(prev_start, prev_end).find_map(|start| {
                let overlap = self.estimate(start, prev_end);
                self.fit(start, prev_end + 1, overlap)
                    .map(|(end, tokens)| (start, end, tokens))
            });
            match placed {
                Some((start, end, tokens)) => {
                    out.push((self.pos(start)..self.pos(end), tokens));
                    (prev_start, prev_end) = (start, end);
                }
                None => {
                    // The atom counts more alone than its estimate said (a counter that is not
                    // additive at this boundary): cut it at grapheme clusters after all.
                    out.extend(self.split_clusters(self.pos(prev_end)..self.pos(prev_end + 1)));
                    (prev_start, prev_end) = (prev_end, prev_end + 1);
                }
            }
        }
        out
    }

    /// Where the piece after atoms `prev_start..prev_end` may start, the largest overlap first
    /// and `prev_end` (none) last.
    fn overlap_starts(&self, prev_start: usize, prev_end: usize) -> impl Iterator<Item = usize> {
        let mut floor = prev_end;
        if self.overlap > 0 && prev_start < prev_end {
            floor = (prev_start + 1..=prev_end)
                .rev()
                .find(|&m| self.level(m) == Break::Section)
                .unwrap_or(prev_start + 1);
        }
        let need = self.prefix(prev_end).saturating_sub(self.overlap);
        let first = floor
            + self
                .prefix
                .get(floor..prev_end)
                .map_or(0, |p| p.partition_point(|&c| c < need));
        // Where words are not spaced (CJK, Thai), a word boundary may be any character
        // boundary: start at a space or stronger boundary instead when that still repeats at
        // least half the overlap.
        let half = self.prefix(prev_end).saturating_sub(self.overlap / 2);
        let spaced = (first..prev_end)
            .take_while(|&k| self.prefix(k) <= half)
            .find(|&k| self.level(k) >= Break::Space);
        spaced
            .into_iter()
            .chain((first..prev_end).filter(move |&k| Some(k) != spaced))
            .filter(move |&k| {
                self.level(k) >= Break::Word && self.count(k, prev_end) <= self.overlap
            })
            .chain(std::iter::once(prev_end))
    }

    /// The end of the piece that starts at atom `start` and ends at `min_end` or later, with
    /// its count; `None` when even atoms `start..min_end` count over `max` (unless that is one
    /// grapheme cluster, which is let through).
    fn fit(&self, start: usize, min_end: usize, overlap: usize) -> Option<(usize, usize)> {
        let mut max_end = self.atoms.len();
        let mut budget = self.max;
        loop {
            let end = self.choose_end(start, min_end, max_end, budget, overlap);
            let tokens = self.count(start, end);
            if tokens <= self.max {
                return Some((end, tokens));
            }
            if end <= min_end {
                return (end == start + 1 && self.is_lone_cluster(start)).then_some((end, tokens));
            }
            // The estimate was low here: try again with it lowered by as much as it was over.
            max_end = end - 1;
            budget = self.estimate(start, end).saturating_sub(tokens - self.max);
        }
    }

    /// The best end in `min_end..=max_end` for a piece starting at atom `start` by the
    /// estimates: the strongest boundary that leaves the piece at least half full, the latest of
    /// those; when none does, the strongest of all.
    fn choose_end(
        &self,
        start: usize,
        min_end: usize,
        max_end: usize,
        budget: usize,
        overlap: usize,
    ) -> usize {
        let limit = self.prefix(start).saturating_add(budget);
        let fitting = self
            .prefix
            .get(min_end..=max_end)
            .map_or(0, |p| p.partition_point(|&c| c <= limit));
        if fitting == 0 {
            return min_end;
        }
        let last = min_end + fitting - 1;
        if last == self.atoms.len() {
            return last;
        }
        let half = overlap + budget.saturating_sub(overlap) / 2;
        let full = self.estimate(start, last) >= half;
        let mut best: [Option<usize>; LEVELS] = [None; LEVELS];
        for end in (min_end..=last).rev() {
            if full && self.estimate(start, end) < half {
                break;
            }
            for slot in best.iter_mut().take(self.level(end) as usize + 1) {
                slot.get_or_insert(end);
            }
            if best[LEVELS - 1].is_some() {
                break;
            }
        }
        best.iter().rev().flatten().next().copied().unwrap_or(last)
    }
}

/// `text[range]`, or "" where the range is not on char boundaries (it always is).
fn slice(text: &str, range: Range<usize>) -> &str {
    text.get(range).unwrap_or_default()
}

/// Where `range`'s text starts and ends without its leading and trailing whitespace (all of
/// `range` when it is only whitespace).
fn trimmed(text: &str, range: &Range<usize>) -> (usize, usize) {
    let piece = slice(text, range.clone());
    let start = piece.len() - piece.trim_start().len();
    let end = piece.trim_end().len();
    if start < end {
        (range.start + start, range.start + end)
    } else {
        (range.start, range.end)
    }
}

/// The non-empty section holding byte `at`.
fn section_at(sections: &[Section], at: usize) -> Option<&Section> {
    let after = sections.partition_point(|s| s.range.start <= at);
    sections
        .get(..after)?
        .iter()
        .rev()
        .find(|s| s.range.start <= at && at < s.range.end)
}

/// First and last page of the non-empty sections overlapping `range`.
fn pages(sections: &[Section], range: Range<usize>) -> Option<PageRange> {
    let first = sections.partition_point(|s| s.range.end <= range.start);
    let mut found: Option<PageRange> = None;
    for section in sections.get(first..)? {
        if section.range.start >= range.end {
            break;
        }
        if section.range.start >= section.range.end || section.range.end <= range.start {
            continue;
        }
        if let Some(page) = section.page {
            found = Some(match found {
                Some(p) => PageRange {
                    start: p.start.min(page),
                    end: p.end.max(page),
                },
                None => PageRange {
                    start: page,
                    end: page,
                },
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    use super::*;

    /// One token per UAX #29 word holding a letter or digit, plus one per other non-space
    /// character (punctuation, symbols, marks). Additive across word boundaries.
    struct WordCounter;

    impl TokenCounter for WordCounter {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_word_bounds()
                .map(|word| {
                    let alnum = word.chars().any(char::is_alphanumeric);
                    let other = word
                        .chars()
                        .filter(|c| !c.is_whitespace() && !c.is_alphanumeric())
                        .count();
                    usize::from(alnum) + other
                })
                .sum()
        }
    }

    /// [`WordCounter`] plus one token per 16 bytes of the whole text: the parts of a text count
    /// less than the whole, so the chunker's estimates run low and it has to shrink pieces.
    struct LumpyCounter;

    impl TokenCounter for LumpyCounter {
        fn count_tokens(&self, text: &str) -> usize {
            WordCounter.count_tokens(text) + text.len() / 16
        }
    }

    /// [`WordCounter`] plus one token per whitespace character: a piece's trailing whitespace,
    /// which the chunker's estimates leave out, counts, so even a single word can be over.
    struct SpaceCounter;

    impl TokenCounter for SpaceCounter {
        fn count_tokens(&self, text: &str) -> usize {
            WordCounter.count_tokens(text) + text.chars().filter(|c| c.is_whitespace()).count()
        }
    }

    fn counter(which: usize) -> &'static dyn TokenCounter {
        match which {
            0 => &WordCounter,
            1 => &ApproxTokenCounter,
            2 => &LumpyCounter,
            _ => &SpaceCounter,
        }
    }

    fn config(max_tokens: usize, overlap_tokens: usize) -> ChunkConfig {
        ChunkConfig {
            max_tokens,
            overlap_tokens,
        }
    }

    /// A document from `(text, page, heading path)` sections.
    fn sections(parts: &[(&str, Option<u32>, &[&str])]) -> Extracted {
        let mut doc = Extracted::default();
        for (text, page, headings) in parts {
            let start = doc.text.len();
            doc.text.push_str(text);
            doc.sections.push(Section {
                range: start..doc.text.len(),
                page: *page,
                heading_path: headings.iter().map(|h| h.to_string()).collect(),
            });
        }
        doc
    }

    fn texts<'a>(doc: &'a Extracted, pieces: &[Piece]) -> Vec<&'a str> {
        pieces
            .iter()
            .map(|p| {
                doc.text
                    .get(p.range.clone())
                    .unwrap_or("<not a char boundary>")
            })
            .collect()
    }

    fn words(word: &str, n: usize) -> String {
        vec![word; n].join(" ")
    }

    /// Chunks `doc` and checks every promise [`chunk`] makes; returns the pieces.
    fn check(
        doc: &Extracted,
        counter: &dyn TokenCounter,
        config: &ChunkConfig,
    ) -> Result<Vec<Piece>, String> {
        let pieces = chunk(doc, counter, config);
        let text = doc.text.as_str();
        macro_rules! ensure {
            ($cond:expr, $($msg:tt)+) => {
                if !$cond {
                    return Err(format!($($msg)+));
                }
            };
        }
        ensure!(pieces == chunk(doc, counter, config), "not deterministic");
        if text.is_empty() {
            ensure!(pieces.is_empty(), "pieces for empty text: {pieces:?}");
            return Ok(pieces);
        }
        let mut cluster = vec![false; text.len() + 1];
        for (at, _) in text.grapheme_indices(true) {
            cluster[at] = true;
        }
        cluster[text.len()] = true;
        let mut word_start = cluster.clone();
        word_start.iter_mut().for_each(|b| *b = false);
        for (at, _) in text.split_word_bound_indices() {
            word_start[at] = true;
        }
        for s in &doc.sections {
            word_start[s.range.start] = true;
        }

        ensure!(
            pieces.first().map(|p| p.range.start) == Some(0),
            "first piece does not start at 0: {pieces:?}"
        );
        ensure!(
            pieces.last().map(|p| p.range.end) == Some(text.len()),
            "last piece does not end at {}: {pieces:?}",
            text.len()
        );
        for p in &pieces {
            let r = p.range.clone();
            ensure!(r.start < r.end, "empty piece {r:?}");
            ensure!(
                cluster[r.start] && cluster[r.end],
                "{r:?} is not on grapheme cluster boundaries"
            );
            let piece = &text[r.clone()];
            let tokens = counter.count_tokens(piece);
            ensure!(
                p.tokens == tokens,
                "{r:?} says {} tokens, counts {tokens}",
                p.tokens
            );
            let content_end = r.start + piece.trim_end_matches(is_break_space).len();
            let single_cluster = !(r.start + 1..content_end).any(|at| cluster[at]);
            ensure!(
                tokens <= config.max_tokens || single_cluster,
                "{r:?} {piece:?} counts {tokens} > {}",
                config.max_tokens
            );

            // Heading path and pages, the slow way.
            let lead = piece.len() - piece.trim_start().len();
            let (first, last) = if piece.trim().is_empty() {
                (r.start, r.end)
            } else {
                (r.start + lead, r.start + piece.trim_end().len())
            };
            let holding = doc
                .sections
                .iter()
                .find(|s| s.range.start <= first && first < s.range.end);
            ensure!(
                p.heading_path == holding.map(|s| s.heading_path.clone()).unwrap_or_default(),
                "{r:?}: heading path {:?}, section {holding:?}",
                p.heading_path
            );
            let overlapped: Vec<u32> = doc
                .sections
                .iter()
                .filter(|s| s.range.start < last && first < s.range.end)
                .filter(|s| s.range.start < s.range.end)
                .filter_map(|s| s.page)
                .collect();
            let expected = match (overlapped.iter().min(), overlapped.iter().max()) {
                (Some(&start), Some(&end)) => Some(PageRange { start, end }),
                _ => None,
            };
            ensure!(
                p.pages == expected,
                "{r:?}: pages {:?}, expected {expected:?}",
                p.pages
            );
        }
        for pair in pieces.windows(2) {
            let (a, b) = (&pair[0].range, &pair[1].range);
            ensure!(
                a.start < b.start && a.end < b.end && b.start <= a.end,
                "{a:?} then {b:?} do not advance and cover"
            );
            if config.overlap_tokens == 0 {
                ensure!(
                    b.start == a.end,
                    "{a:?} then {b:?} overlap with overlap_tokens = 0"
                );
            }
            if b.start < a.end {
                let shared = counter.count_tokens(&text[b.start..a.end]);
                ensure!(
                    shared <= config.overlap_tokens,
                    "{a:?} then {b:?} share {shared} tokens > {}",
                    config.overlap_tokens
                );
                ensure!(word_start[b.start], "overlap {b:?} starts inside a word");
            }
        }
        Ok(pieces)
    }

    // ---- examples -------------------------------------------------------------------------

    #[test]
    fn empty_and_blank_texts() {
        let empty = Extracted::plain(String::new());
        assert_eq!(
            check(&empty, &WordCounter, &ChunkConfig::default()),
            Ok(vec![])
        );

        let blank = Extracted::plain(" \n\n\t  \r\n".to_owned());
        let pieces = check(&blank, &WordCounter, &config(3, 1)).expect("valid pieces");
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].range, 0..blank.text.len());
    }

    #[test]
    fn short_text_is_one_piece() {
        let doc = Extracted::plain("Just a few words.\n".to_owned());
        let pieces = check(&doc, &WordCounter, &ChunkConfig::default()).expect("valid pieces");
        assert_eq!(texts(&doc, &pieces), ["Just a few words.\n"]);
        assert_eq!(pieces[0].tokens, 5);
    }

    #[test]
    fn paragraphs_break_at_blank_lines() {
        // 31 tokens a paragraph: two do not fit in 50, one more than half fills it.
        let text = format!(
            "{}.\n\n{}.\n\n{}.",
            words("alpha", 30),
            words("beta", 30),
            words("gamma", 30)
        );
        let doc = Extracted::plain(text);
        let pieces = check(&doc, &WordCounter, &config(50, 0)).expect("valid pieces");
        assert_eq!(
            texts(&doc, &pieces),
            [
                format!("{}.\n\n", words("alpha", 30)),
                format!("{}.\n\n", words("beta", 30)),
                format!("{}.", words("gamma", 30)),
            ]
        );
    }

    #[test]
    fn a_heading_change_starts_a_new_chunk() {
        let a = format!("{}.\n\n", words("apple", 30));
        let b = format!("{}.\n", words("berry", 30));
        let doc = sections(&[(&a, None, &["Fruit", "A"]), (&b, None, &["Fruit", "B"])]);
        // Overlap does not reach back across the heading change either.
        let pieces = check(&doc, &WordCounter, &config(50, 10)).expect("valid pieces");
        assert_eq!(texts(&doc, &pieces), [a.as_str(), b.as_str()]);
        assert_eq!(pieces[0].heading_path, ["Fruit", "A"]);
        assert_eq!(pieces[1].heading_path, ["Fruit", "B"]);
    }

    #[test]
    fn an_early_heading_does_not_make_a_tiny_chunk() {
        let intro = "Short intro.\n\n";
        let body = format!("{}.\n", words("body", 80));
        let doc = sections(&[(intro, None, &["Intro"]), (&body, None, &["Body"])]);
        let pieces = check(&doc, &WordCounter, &config(50, 0)).expect("valid pieces");
        // The first piece runs on past the heading change at 3 tokens and is filled.
        assert!(pieces[0].range.end > intro.len());
        assert!(pieces[0].tokens >= 45, "{pieces:?}");
        assert_eq!(pieces[0].heading_path, ["Intro"]);
        assert_eq!(pieces[1].heading_path, ["Body"]);
    }

    #[test]
    fn pdf_like_pages_give_page_ranges() {
        let pages: Vec<String> = (1..=3)
            .map(|n| format!("{}.\n", words(&format!("page{n}"), 19)))
            .collect();
        let doc = sections(&[
            (&pages[0], Some(1), &[]),
            (&pages[1], Some(2), &[]),
            (&pages[2], Some(3), &[]),
        ]);
        // 20 tokens a page: two pages fill 50 best, cut at the page change.
        let pieces = check(&doc, &WordCounter, &config(50, 0)).expect("valid pieces");
        assert_eq!(
            texts(&doc, &pieces),
            [format!("{}{}", pages[0], pages[1]), pages[2].clone()]
        );
        assert_eq!(pieces[0].pages, Some(PageRange { start: 1, end: 2 }));
        assert_eq!(pieces[1].pages, Some(PageRange { start: 3, end: 3 }));

        let unpaged = Extracted::plain(pages.concat());
        let pieces = check(&unpaged, &WordCounter, &config(50, 0)).expect("valid pieces");
        assert!(pieces.iter().all(|p| p.pages.is_none()));
    }

    /// Thai separates phrases with spaces but not words; marks and following vowels must stay
    /// with their consonant.
    fn is_thai_dependent(c: char) -> bool {
        matches!(c, '\u{e30}'..='\u{e3a}' | '\u{e45}' | '\u{e47}'..='\u{e4e}')
    }

    const THAI: &str = "ประเทศไทยตั้งอยู่ในเอเชียตะวันออกเฉียงใต้ กรุงเทพมหานครเป็นเมืองหลวงของประเทศ \
                        ภาษาไทยเขียนโดยไม่เว้นวรรคระหว่างคำ แต่เว้นวรรคระหว่างวลีหรือประโยค \
                        อาหารไทยมีชื่อเสียงไปทั่วโลก";

    #[test]
    fn thai_breaks_at_the_spaces_between_phrases() {
        let doc = Extracted::plain(THAI.to_owned());
        let pieces = check(&doc, &ApproxTokenCounter, &config(60, 0)).expect("valid pieces");
        let texts = texts(&doc, &pieces);
        assert!(texts.len() > 1, "{texts:?}");
        for t in &texts[..texts.len() - 1] {
            assert!(t.ends_with(' '), "{texts:?}");
        }
    }

    #[test]
    fn thai_without_spaces_breaks_between_syllables() {
        let doc = Extracted::plain(THAI.replace(' ', ""));
        for max in [5, 8, 13] {
            let pieces = check(&doc, &ApproxTokenCounter, &config(max, 2)).expect("valid pieces");
            for t in texts(&doc, &pieces) {
                let first = t.chars().next().unwrap_or(' ');
                let last = t.chars().next_back().unwrap_or(' ');
                assert!(
                    !is_thai_dependent(first),
                    "{t:?} starts with a dependent vowel"
                );
                assert!(
                    !('\u{e40}'..='\u{e44}').contains(&last),
                    "{t:?} ends with a leading vowel"
                );
            }
        }
    }

    #[test]
    fn hindi_breaks_after_sentences() {
        let text = "भारत एक विशाल देश है। यहाँ अनेक भाषाएँ बोली जाती हैं। हिन्दी भारत की राजभाषा है। \
                    दिल्ली भारत की राजधानी है।";
        let doc = Extracted::plain(text.to_owned());
        // Two sentences a piece (43 and 44 of 50 tokens), cut after the danda.
        let pieces = check(&doc, &ApproxTokenCounter, &config(50, 0)).expect("valid pieces");
        let got = texts(&doc, &pieces);
        assert_eq!(got.len(), 2, "{got:?}");
        for t in &got {
            assert!(t.trim_end().ends_with('।'), "{got:?}");
            let first = t.chars().next().unwrap_or(' ');
            assert!(
                !('\u{93e}'..='\u{94d}').contains(&first),
                "{t:?} starts with a mark"
            );
        }
        // With less room, words; never a mark cut from its letter.
        let pieces = check(&doc, &ApproxTokenCounter, &config(9, 3)).expect("valid pieces");
        for t in texts(&doc, &pieces) {
            let first = t.chars().next().unwrap_or(' ');
            assert!(!('\u{900}'..='\u{903}').contains(&first), "{t:?}");
            assert!(!('\u{93a}'..='\u{94f}').contains(&first), "{t:?}");
        }
    }

    #[test]
    fn japanese_breaks_after_sentences_then_between_characters() {
        // Natsume Sōseki, 吾輩は猫である (1905).
        let text = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\
                    何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。";
        let doc = Extracted::plain(text.to_owned());
        let pieces = check(&doc, &ApproxTokenCounter, &config(20, 0)).expect("valid pieces");
        let texts = texts(&doc, &pieces);
        assert_eq!(texts[0], "吾輩は猫である。名前はまだ無い。");
        assert_eq!(texts[1], "どこで生れたかとんと見当がつかぬ。");
        // The last sentence is longer than a piece: it is cut between characters, never before
        // punctuation or a small kana, and the katakana word stays whole.
        assert!(texts.len() >= 4, "{texts:?}");
        for t in &texts {
            let first = t.chars().next().unwrap_or(' ');
            assert!(!"。、ゃゅょっー".contains(first), "{texts:?}");
        }
        assert!(
            texts.iter().any(|t| t.contains("ニャーニャー")),
            "{texts:?}"
        );
    }

    #[test]
    fn a_blob_without_boundaries_splits_at_grapheme_clusters() {
        // 10 000 characters, 5 000 clusters of `e` and a combining acute: no word boundary.
        let blob = "e\u{301}".repeat(5000);
        let doc = Extracted::plain(blob.clone());
        let pieces = check(&doc, &ApproxTokenCounter, &config(100, 20)).expect("valid pieces");
        assert_eq!(pieces.len(), 100);
        let texts = texts(&doc, &pieces);
        assert!(
            texts
                .iter()
                .all(|t| t.starts_with('e') && t.ends_with('\u{301}'))
        );
        // No word boundary to overlap at: the pieces are adjacent.
        assert_eq!(texts.concat(), blob);

        // A long ASCII token: ⌈10 000 / 4⌉ = 2500 tokens, 512 (2048 characters) a piece.
        let doc = Extracted::plain("x".repeat(10_000));
        let pieces = check(&doc, &ApproxTokenCounter, &ChunkConfig::default()).expect("valid");
        let tokens: Vec<usize> = pieces.iter().map(|p| p.tokens).collect();
        assert_eq!(tokens, [512, 512, 512, 512, 452]);
    }

    #[test]
    fn a_long_word_among_others_is_cut_alone() {
        let url = format!("https://example.com/{}", "a1b2".repeat(300));
        let text = format!("See {url} for details. {}.", words("more", 40));
        let doc = Extracted::plain(text);
        let pieces = check(&doc, &ApproxTokenCounter, &config(64, 16)).expect("valid pieces");
        assert!(pieces.len() > 5);
        assert!(texts(&doc, &pieces)[0].starts_with("See "));
    }

    #[test]
    fn overlap_repeats_the_end_of_the_previous_chunk() {
        let text = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let doc = Extracted::plain(text);
        let pieces = check(&doc, &WordCounter, &config(20, 5)).expect("valid pieces");
        assert!(pieces.len() > 5);
        for pair in pieces.windows(2) {
            let (a, b) = (&pair[0].range, &pair[1].range);
            let shared = &doc.text[b.start..a.end];
            assert!(doc.text[a.clone()].ends_with(shared));
            assert!(doc.text[b.clone()].starts_with(shared));
            assert_eq!(WordCounter.count_tokens(shared), 5, "{shared:?}");
            assert_eq!(pair[0].tokens, 20);
        }
        assert_eq!(
            texts(&doc, &pieces)[1],
            (15..35).map(|i| format!("w{i} ")).collect::<String>()
        );
    }

    #[test]
    fn pieces_shrink_when_the_counter_is_not_additive() {
        let text = format!("{}.\n\n{}.", words("lorem ipsum", 60), words("dolor", 90));
        let doc = Extracted::plain(text);
        for max in [7, 20, 64] {
            let pieces = check(&doc, &LumpyCounter, &config(max, max / 4)).expect("valid pieces");
            assert!(pieces.iter().all(|p| p.tokens <= max));
        }
        // A word followed by more whitespace than fits: cut inside the whitespace.
        let doc = Extracted::plain(format!("one{}two", " ".repeat(10)));
        let pieces = check(&doc, &SpaceCounter, &config(4, 1)).expect("valid pieces");
        assert!(pieces.iter().all(|p| p.tokens <= 4), "{pieces:?}");
    }

    #[test]
    fn an_oversized_grapheme_cluster_is_a_piece_of_its_own() {
        // A family emoji is one cluster of seven characters the word counter counts separately.
        let doc = Extracted::plain("a 👨‍👩‍👧‍👦 b".to_owned());
        let pieces = check(&doc, &WordCounter, &config(1, 0)).expect("valid pieces");
        assert_eq!(texts(&doc, &pieces), ["a ", "👨‍👩‍👧‍👦 ", "b"]);
        assert_eq!(pieces[1].tokens, 7);
    }

    #[test]
    fn approx_counter_estimates() {
        let count = |s: &str| ApproxTokenCounter.count_tokens(s);
        assert_eq!(count(""), 0);
        assert_eq!(count(" \n\t "), 0);
        assert_eq!(count("The quick brown fox."), 7);
        assert_eq!(count("tokenization"), 3);
        assert_eq!(count("camelCase"), 3);
        assert_eq!(count("2024-01-31"), 6);
        assert_eq!(count("日本語"), 3);
        assert_eq!(count("हिन्दी"), 6);
        assert_eq!(count("👍"), 2);
    }

    #[test]
    fn config_defaults_validation_and_parsing() {
        assert_eq!(ChunkConfig::default(), config(512, 128));
        assert_eq!(ChunkConfig::default().validate(), Ok(()));
        assert_eq!(
            config(0, 0).validate(),
            Err("max_tokens: must be at least 1".into())
        );
        let err = config(100, 100).validate().expect_err("overlap too large");
        assert!(err.starts_with("overlap_tokens:"), "{err}");

        let parsed: ChunkConfig =
            serde_json::from_str(r#"{"max_tokens": 256}"#).expect("a valid config");
        assert_eq!(parsed, config(256, 128));
        let err = serde_json::from_str::<ChunkConfig>(r#"{"max_token": 256}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("max_token"), "{err}");

        // An invalid config is used as near as it can be, never panics.
        let doc = Extracted::plain(words("word", 10));
        let pieces = check(&doc, &WordCounter, &config(1, 0)).expect("valid pieces");
        assert_eq!(pieces.len(), 10);
        assert_eq!(chunk(&doc, &WordCounter, &config(0, 7)), pieces);
    }

    #[test]
    fn sections_that_split_a_cluster_are_not_cut_points() {
        // A heading change between `e` and its combining accent: the piece cannot start there.
        let doc = sections(&[("caf e", None, &["A"]), ("\u{301} au lait", None, &["B"])]);
        let pieces = check(&doc, &WordCounter, &config(2, 0)).expect("valid pieces");
        assert!(pieces.iter().all(|p| p.range.start != 5));
    }

    // ---- properties -----------------------------------------------------------------------

    const THAI_WORDS: &[&str] = &[
        "ภาษา",
        "ไทย",
        "เขียน",
        "ไม่",
        "เว้น",
        "วรรค",
        "ระหว่าง",
        "คำ",
        "น้ำ",
        "กิน",
        "ข้าว",
        "แล้ว",
        "หรือ",
        "ยัง",
        "ครับ",
        "ค่ะ",
        "สวัสดี",
        "ประเทศ",
    ];
    const EMOJI: &[&str] = &[
        "👨‍👩‍👧‍👦",
        "🏳️‍🌈",
        "👍🏽",
        "🇫🇷🇩🇪",
        "❤️",
        "e\u{301}\u{302}",
        "\r\n",
        "\u{c}",
        "\u{a0}",
    ];

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z0-9]{1,12}[ ,.;:!?()'-]{0,2}( |  |\n|\n\n)?",
            1 => "[ \t\n]{1,4}",
            2 => "[一-龥ぁ-ゖァ-ヺー。、「」]{1,16}",
            2 => prop::collection::vec(select(THAI_WORDS), 1..8)
                .prop_map(|w| w.concat() + " "),
            2 => "([क-ह][ा-ौ्ंँ]{0,2}){1,6}[ ।]",
            1 => select(EMOJI).prop_map(str::to_owned),
            1 => "[a-z0-9/+=]{20,120}",
            1 => any::<String>(),
        ]
    }

    prop_compose! {
        fn document()(text in prop::collection::vec(fragment(), 0..30).prop_map(|f| f.concat()))(
            cuts in prop::collection::vec((any::<Index>(), 0..3usize, 0..2u32), 0..8),
            paged in any::<bool>(),
            text in Just(text),
        ) -> Extracted {
            let mut cuts: Vec<(usize, usize, u32)> = cuts
                .into_iter()
                .map(|(at, heading, page_step)| {
                    let mut at = at.index(text.len() + 1);
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    (at, heading, page_step)
                })
                .collect();
            cuts.sort();
            let headings = [vec![], vec!["H1".to_owned()], vec!["H1".to_owned(), "H2".to_owned()]];
            let mut doc = Extracted::plain(text);
            let mut page = 1;
            doc.sections[0].page = paged.then_some(page);
            for (at, heading, page_step) in cuts {
                page += page_step;
                let Some(last) = doc.sections.last_mut() else { break };
                last.range.end = at;
                doc.sections.push(Section {
                    range: at..doc.text.len(),
                    page: paged.then_some(page),
                    heading_path: headings[heading].clone(),
                });
            }
            doc
        }
    }

    fn configs() -> impl Strategy<Value = ChunkConfig> {
        (1..40usize).prop_flat_map(|max| (Just(max), 0..max).prop_map(|(m, o)| config(m, o)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn pieces_cover_fit_and_overlap(
            doc in document(),
            config in configs(),
            which in 0..4usize,
        ) {
            prop_assert_eq!(doc.check(), Ok(()));
            check(&doc, counter(which), &config).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn overlap_is_as_large_as_the_words_allow(
            text in prop::collection::vec("[a-z]{1,8}( |\n|\n\n)", 1..200)
                .prop_map(|w| w.concat()),
            config in configs().prop_filter("some overlap", |c| c.overlap_tokens > 0),
        ) {
            // One token a word: a piece of n words leaves room to repeat min(n - 1, overlap).
            let doc = Extracted::plain(text);
            let pieces = check(&doc, &WordCounter, &config).map_err(TestCaseError::fail)?;
            for pair in pieces.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let shared = WordCounter.count_tokens(&doc.text[b.range.start..a.range.end]);
                prop_assert_eq!(shared, config.overlap_tokens.min(a.tokens - 1), "{:?}", pieces);
            }
        }
    }
}
