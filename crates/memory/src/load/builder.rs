//! Assembles extracted text and its sections from a walk over a document's blocks: separators
//! between blocks are added lazily, so the text never starts or ends with one, and a section
//! starts exactly at the first text under a new heading path.

use crate::text::{Extracted, Section};

/// How much space the next text needs from the text before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    None,
    Line,
    Paragraph,
}

#[derive(Debug)]
pub(crate) struct TextBuilder {
    text: String,
    sections: Vec<Section>,
    /// Heading path of the open section, which starts at `open_start`.
    open_path: Vec<String>,
    open_start: usize,
    /// Heading path for the next text pushed.
    next_path: Vec<String>,
    pending: Break,
}

impl TextBuilder {
    pub(crate) fn new() -> Self {
        Self {
            text: String::new(),
            sections: Vec::new(),
            open_path: Vec::new(),
            open_start: 0,
            next_path: Vec::new(),
            pending: Break::None,
        }
    }

    /// Text pushed from now on lies under these headings.
    pub(crate) fn set_heading_path(&mut self, path: Vec<String>) {
        self.next_path = path;
    }

    /// The next text starts on a new line.
    pub(crate) fn line_break(&mut self) {
        self.pending = self.pending.max(Break::Line);
    }

    /// The next text starts a new paragraph, after a blank line.
    pub(crate) fn paragraph_break(&mut self) {
        self.pending = Break::Paragraph;
    }

    /// Whether nothing has been pushed since the last break (or at all).
    pub(crate) fn at_block_start(&self) -> bool {
        self.pending != Break::None || self.text.is_empty()
    }

    /// Appends text, after any pending break.
    pub(crate) fn push(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if !self.text.is_empty() {
            let newlines = match self.pending {
                Break::None => 0,
                Break::Line => 1,
                Break::Paragraph => 2,
            };
            if newlines > 0 {
                let trimmed = self.text.trim_end_matches([' ', '\t']).len();
                // The separator belongs to the section it ends; never cut into an earlier one.
                self.text.truncate(trimmed.max(self.open_start));
                let have = self.text.len() - self.text.trim_end_matches('\n').len();
                for _ in have..newlines {
                    self.text.push('\n');
                }
            }
        }
        self.pending = Break::None;
        if self.next_path != self.open_path {
            if self.text.len() > self.open_start {
                self.sections.push(Section {
                    range: self.open_start..self.text.len(),
                    page: None,
                    heading_path: std::mem::take(&mut self.open_path),
                });
            }
            self.open_start = self.text.len();
            self.open_path = self.next_path.clone();
        }
        self.text.push_str(s);
    }

    pub(crate) fn finish(mut self, title: Option<String>) -> Extracted {
        if self.text.len() > self.open_start || self.sections.is_empty() {
            self.sections.push(Section {
                range: self.open_start..self.text.len(),
                page: None,
                heading_path: self.open_path,
            });
        }
        // Trailing whitespace goes, and with it any section that held nothing else.
        let end = self.text.trim_end().len();
        self.text.truncate(end);
        while self.sections.len() > 1 && self.sections.last().is_some_and(|s| s.range.start >= end)
        {
            self.sections.pop();
        }
        if let Some(last) = self.sections.last_mut() {
            last.range.end = end;
        }
        Extracted {
            text: self.text,
            title,
            sections: self.sections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn breaks_are_lazy_and_sections_start_at_their_text() {
        let mut b = TextBuilder::new();
        b.paragraph_break();
        b.push("intro");
        b.paragraph_break();
        b.set_heading_path(path(&["A"]));
        b.push("A");
        b.paragraph_break();
        b.push("one");
        b.line_break();
        b.push("two ");
        b.paragraph_break();
        let e = b.finish(None);
        assert_eq!(e.text, "intro\n\nA\n\none\ntwo");
        assert_eq!(e.check(), Ok(()));
        assert_eq!(e.sections.len(), 2);
        assert_eq!(&e.text[e.sections[0].range.clone()], "intro\n\n");
        assert_eq!(&e.text[e.sections[1].range.clone()], "A\n\none\ntwo");
        assert_eq!(e.sections[1].heading_path, path(&["A"]));
    }

    #[test]
    fn a_heading_path_with_no_text_makes_no_section() {
        let mut b = TextBuilder::new();
        b.set_heading_path(path(&["A"]));
        b.set_heading_path(path(&["B"]));
        b.push("b");
        let e = b.finish(None);
        assert_eq!(e.sections.len(), 1);
        assert_eq!(e.sections[0].heading_path, path(&["B"]));
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn empty_input_gives_one_empty_section() {
        let e = TextBuilder::new().finish(None);
        assert_eq!(e.text, "");
        assert_eq!(e.sections.len(), 1);
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn existing_newlines_count_towards_a_break() {
        let mut b = TextBuilder::new();
        b.push("code\n");
        b.paragraph_break();
        b.push("after");
        assert_eq!(b.finish(None).text, "code\n\nafter");
    }
}
