//! Markdown (CommonMark with GitHub's tables, task lists, strikethrough and footnotes): the
//! readable text without markup, sections by heading, and the title from front matter or the
//! first level-1 heading.

use pulldown_cmark::{Event, HeadingLevel, MetadataBlockKind, Options, Parser, Tag, TagEnd};

use crate::text::Extracted;

use super::LoadProblem;
use super::builder::TextBuilder;
use super::plain::{decode_utf8, normalize_newlines};

pub(crate) fn extract(bytes: &[u8]) -> Result<Extracted, LoadProblem> {
    let source = normalize_newlines(decode_utf8(bytes)?);
    let extracted = Walker::default().run(&source);
    if extracted.text.trim().is_empty() {
        return Err(LoadProblem::Empty);
    }
    Ok(extracted)
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS
        | Options::ENABLE_GFM
        | Options::ENABLE_DEFINITION_LIST
}

#[derive(Default)]
struct Walker {
    /// Open headings, outermost first: level and text.
    headings: Vec<(HeadingLevel, String)>,
    /// Text of the heading being read.
    heading: Option<String>,
    /// Text of the front matter being read, and its kind.
    metadata: Option<(MetadataBlockKind, String)>,
    /// For each open list, the number of its next item (`None`: a bullet list).
    lists: Vec<Option<u64>>,
    cell: usize,
    /// An item has started and has no text yet: its first paragraph follows its marker.
    fresh_item: bool,
    first_h1: Option<String>,
    front_matter_title: Option<String>,
}

impl Walker {
    fn run(mut self, source: &str) -> Extracted {
        let mut builder = TextBuilder::new();
        for event in Parser::new_ext(source, options()) {
            self.event(&mut builder, event);
        }
        let title = self.front_matter_title.or(self.first_h1);
        builder.finish(title)
    }

    /// Where inline text goes: the heading being read, or the document.
    fn text(&mut self, builder: &mut TextBuilder, s: &str) {
        if let Some((_, meta)) = &mut self.metadata {
            meta.push_str(s);
        } else if let Some(heading) = &mut self.heading {
            heading.push_str(s);
        } else {
            builder.push(s);
            self.fresh_item = false;
        }
    }

    fn event(&mut self, builder: &mut TextBuilder, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(builder, tag),
            Event::End(tag) => self.end(builder, tag),
            Event::Text(s) | Event::Code(s) | Event::InlineMath(s) | Event::DisplayMath(s) => {
                self.text(builder, &s)
            }
            Event::SoftBreak => self.text(builder, " "),
            Event::HardBreak => {
                if let Some(heading) = &mut self.heading {
                    heading.push(' ');
                } else {
                    builder.line_break();
                }
            }
            Event::Rule => builder.paragraph_break(),
            // Raw HTML is markup; footnote marks and task boxes are not text a reader needs.
            Event::Html(_)
            | Event::InlineHtml(_)
            | Event::FootnoteReference(_)
            | Event::TaskListMarker(_) => {}
        }
    }

    fn start(&mut self, builder: &mut TextBuilder, tag: Tag<'_>) {
        match tag {
            Tag::Heading { .. } => {
                builder.paragraph_break();
                self.heading = Some(String::new());
            }
            Tag::MetadataBlock(kind) => self.metadata = Some((kind, String::new())),
            Tag::Paragraph if self.fresh_item => {}
            Tag::Paragraph
            | Tag::BlockQuote(_)
            | Tag::CodeBlock(_)
            | Tag::HtmlBlock
            | Tag::FootnoteDefinition(_)
            | Tag::DefinitionList
            | Tag::Table(_) => builder.paragraph_break(),
            Tag::List(first) => {
                if self.lists.is_empty() {
                    builder.paragraph_break();
                } else {
                    builder.line_break();
                }
                self.lists.push(first);
            }
            Tag::Item => {
                builder.line_break();
                if let Some(Some(number)) = self.lists.last_mut() {
                    builder.push(&format!("{number}. "));
                    *number += 1;
                }
                self.fresh_item = true;
            }
            Tag::TableHead | Tag::TableRow => {
                builder.line_break();
                self.cell = 0;
            }
            Tag::TableCell => {
                if self.cell > 0 {
                    builder.push("\t");
                }
                self.cell += 1;
            }
            Tag::DefinitionListTitle | Tag::DefinitionListDefinition => builder.line_break(),
            Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
            | Tag::Image { .. } => {}
        }
    }

    fn end(&mut self, builder: &mut TextBuilder, tag: TagEnd) {
        match tag {
            TagEnd::Heading(level) => {
                let text = collapse_whitespace(&self.heading.take().unwrap_or_default());
                self.headings.retain(|(l, _)| *l < level);
                if text.is_empty() {
                    return;
                }
                if level == HeadingLevel::H1 && self.first_h1.is_none() {
                    self.first_h1 = Some(text.clone());
                }
                self.headings.push((level, text.clone()));
                builder.set_heading_path(self.headings.iter().map(|(_, t)| t.clone()).collect());
                builder.push(&text);
                builder.paragraph_break();
            }
            TagEnd::MetadataBlock(_) => {
                if let Some((kind, meta)) = self.metadata.take() {
                    self.front_matter_title = front_matter_title(kind, &meta);
                }
            }
            TagEnd::List(_) => {
                self.lists.pop();
                if self.lists.is_empty() {
                    builder.paragraph_break();
                } else {
                    builder.line_break();
                }
            }
            TagEnd::Paragraph
            | TagEnd::BlockQuote(_)
            | TagEnd::CodeBlock
            | TagEnd::HtmlBlock
            | TagEnd::FootnoteDefinition
            | TagEnd::DefinitionList
            | TagEnd::Table => builder.paragraph_break(),
            TagEnd::Item
            | TagEnd::TableHead
            | TagEnd::TableRow
            | TagEnd::DefinitionListTitle
            | TagEnd::DefinitionListDefinition => builder.line_break(),
            TagEnd::TableCell
            | TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image => {}
        }
    }
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `title: …` in YAML front matter, `title = "…"` in TOML (`+++`) front matter; top level only.
fn front_matter_title(kind: MetadataBlockKind, meta: &str) -> Option<String> {
    let separator = match kind {
        MetadataBlockKind::YamlStyle => ':',
        MetadataBlockKind::PlusesStyle => '=',
    };
    meta.lines().find_map(|line| {
        let (key, value) = line.split_once(separator)?;
        if key.trim_end() != "title" {
            return None;
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
            .unwrap_or(value)
            .trim();
        (!unquoted.is_empty()).then(|| unquoted.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(e: &Extracted) -> Vec<(Vec<String>, &str)> {
        e.sections
            .iter()
            .map(|s| (s.heading_path.clone(), &e.text[s.range.clone()]))
            .collect()
    }

    fn path(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn text_without_markup_and_sections_by_heading() {
        let source = "Intro with *emphasis* and a [link](https://example.com).\n\
                      \n\
                      # Guide\n\
                      \n\
                      First   paragraph,\nwrapped.\n\
                      \n\
                      ## Install `corral`\n\
                      \n\
                      - one\n\
                      - two\n  - nested\n\
                      \n\
                      1. first\n\
                      2. second\n\
                      \n\
                      ```sh\n\
                      cargo install corral\n\
                      ```\n\
                      \n\
                      # Other\n\
                      \n\
                      > quoted\n";
        let e = extract(source.as_bytes()).expect("markdown");
        assert_eq!(e.check(), Ok(()));
        assert_eq!(e.title.as_deref(), Some("Guide"));
        assert_eq!(
            e.text,
            "Intro with emphasis and a link.\n\n\
             Guide\n\n\
             First   paragraph, wrapped.\n\n\
             Install corral\n\n\
             one\ntwo\nnested\n\n\
             1. first\n2. second\n\n\
             cargo install corral\n\n\
             Other\n\n\
             quoted"
        );
        assert_eq!(
            sections(&e),
            vec![
                (vec![], "Intro with emphasis and a link.\n\n"),
                (path(&["Guide"]), "Guide\n\nFirst   paragraph, wrapped.\n\n"),
                (
                    path(&["Guide", "Install corral"]),
                    "Install corral\n\none\ntwo\nnested\n\n1. first\n2. second\n\n\
                     cargo install corral\n\n"
                ),
                (path(&["Other"]), "Other\n\nquoted"),
            ]
        );
    }

    #[test]
    fn loose_list_items_keep_their_number_on_their_line() {
        let e = extract(b"1. first\n\n   more\n\n2. second\n").expect("markdown");
        assert_eq!(e.text, "1. first\n\nmore\n\n2. second");
    }

    #[test]
    fn front_matter_is_skipped_and_gives_the_title() {
        let source = "---\ntitle: \"Release notes\"\nauthor: me\n---\n\n# Heading\n\nBody.\n";
        let e = extract(source.as_bytes()).expect("markdown");
        assert_eq!(e.title.as_deref(), Some("Release notes"));
        assert_eq!(e.text, "Heading\n\nBody.");
        let toml = "+++\ntitle = 'From TOML'\n+++\nBody.\n";
        let e = extract(toml.as_bytes()).expect("markdown");
        assert_eq!(e.title.as_deref(), Some("From TOML"));
        assert_eq!(e.text, "Body.");
    }

    #[test]
    fn tables_and_setext_headings() {
        let source = "Title\n=====\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let e = extract(source.as_bytes()).expect("markdown");
        assert_eq!(e.text, "Title\n\na\tb\n1\t2");
        assert_eq!(e.title.as_deref(), Some("Title"));
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn a_lower_heading_closes_deeper_ones() {
        let source = "## A\n\na\n\n### B\n\nb\n\n## C\n\nc\n\n# D\n\nd\n";
        let e = extract(source.as_bytes()).expect("markdown");
        let paths: Vec<_> = e.sections.iter().map(|s| s.heading_path.clone()).collect();
        assert_eq!(
            paths,
            vec![path(&["A"]), path(&["A", "B"]), path(&["C"]), path(&["D"])]
        );
        assert_eq!(e.title.as_deref(), Some("D"));
    }

    #[test]
    fn only_markup_is_empty() {
        assert_eq!(
            extract(b"<!-- comment -->\n\n---\n"),
            Err(LoadProblem::Empty)
        );
        assert_eq!(extract(b"\n\n"), Err(LoadProblem::Empty));
    }
}
