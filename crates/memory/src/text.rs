//! Text extracted from a document, with the structure chunking needs: what loaders produce and
//! the chunker consumes.

use std::ops::Range;

/// The text of one document and where its pages and headings lie in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extracted {
    pub text: String,
    /// The document's own title (HTML `<title>`, a PDF's `Title`), when it has one.
    pub title: Option<String>,
    /// In order, non-overlapping, together covering `text` exactly. A new section starts wherever
    /// the page or the heading path changes.
    pub sections: Vec<Section>,
}

/// A stretch of [`Extracted::text`] on one page under one heading path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// Byte range in [`Extracted::text`], on `char` boundaries.
    pub range: Range<usize>,
    /// Page number counted from 1, for paged formats (PDF).
    pub page: Option<u32>,
    /// Headings above this text, outermost first (Markdown and HTML headings).
    pub heading_path: Vec<String>,
}

impl Extracted {
    /// A document of one section: plain text with no pages or headings.
    pub fn plain(text: String) -> Self {
        let sections = vec![Section {
            range: 0..text.len(),
            ..Section::default()
        }];
        Self {
            text,
            title: None,
            sections,
        }
    }

    /// Checks the invariant on `sections`; loaders' tests use it.
    pub fn check(&self) -> Result<(), String> {
        let mut at = 0;
        for (i, s) in self.sections.iter().enumerate() {
            if s.range.start != at {
                return Err(format!("section {i} starts at {} not {at}", s.range.start));
            }
            if s.range.end < s.range.start || s.range.end > self.text.len() {
                return Err(format!("section {i} range {:?} is out of bounds", s.range));
            }
            if !self.text.is_char_boundary(s.range.start)
                || !self.text.is_char_boundary(s.range.end)
            {
                return Err(format!(
                    "section {i} range {:?} splits a character",
                    s.range
                ));
            }
            at = s.range.end;
        }
        if at != self.text.len() {
            return Err(format!("sections end at {at}, text at {}", self.text.len()));
        }
        Ok(())
    }
}
