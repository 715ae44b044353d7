//! HTML: the text a browser shows (no scripts, styles, hidden elements or `<head>`), laid out in
//! lines and paragraphs by block element, whitespace collapsed as a browser collapses it;
//! sections by `<h1>`–`<h6>`; the title from `<title>`, else the first `<h1>`.
//!
//! Bytes are UTF-8; a file that is not, but declares another charset in a `<meta>` near its start
//! (`windows-1252`, `shift_jis`, …), is decoded from that charset.

use std::borrow::Cow;

use ego_tree::iter::Edge;
use scraper::node::Element;
use scraper::{Html, Node};

use crate::text::Extracted;

use super::LoadProblem;
use super::builder::TextBuilder;
use super::plain::{check_not_binary, decode_utf8, normalize_newlines};

const HTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// Where browsers look for a `<meta charset>` (the HTML standard's pre-scan length).
const CHARSET_SNIFF_BYTES: usize = 1024;

pub(crate) fn extract(bytes: &[u8]) -> Result<Extracted, LoadProblem> {
    let source = decode(bytes)?;
    let document = Html::parse_document(&normalize_newlines(&source));
    let extracted = Walker::default().run(&document);
    if extracted.text.trim().is_empty() {
        return Err(LoadProblem::Empty);
    }
    Ok(extracted)
}

/// UTF-8 (BOM stripped); else the charset a `<meta>` declares; else the UTF-8 error.
fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, LoadProblem> {
    check_not_binary(bytes)?;
    let utf8_error = match decode_utf8(bytes) {
        Ok(text) => return Ok(Cow::Borrowed(text)),
        Err(error) => error,
    };
    match declared_encoding(bytes) {
        Some(encoding) if encoding != encoding_rs::UTF_8 => {
            tracing::debug!(
                charset = encoding.name(),
                "decoding HTML from its <meta> charset"
            );
            Ok(Cow::Owned(
                encoding.decode_without_bom_handling(bytes).0.into_owned(),
            ))
        }
        _ => Err(utf8_error),
    }
}

/// The encoding named by the first `charset=` near the start: `<meta charset="…">` or
/// `<meta http-equiv="Content-Type" content="text/html; charset=…">`.
fn declared_encoding(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = bytes.get(..CHARSET_SNIFF_BYTES).unwrap_or(bytes);
    let lower = head.to_ascii_lowercase();
    let at = lower.windows(8).position(|w| w == b"charset=")? + 8;
    let rest = lower.get(at..)?;
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-_:.".contains(b)))
        .unwrap_or(rest.len());
    // A declared UTF-16 means UTF-8 here (bytes that were UTF-16 would hold NULs), as browsers
    // take it: `output_encoding` does that mapping.
    encoding_rs::Encoding::for_label(rest.get(..end)?).map(|e| e.output_encoding())
}

/// Elements whose content a browser does not show as text.
fn is_invisible(element: &Element) -> bool {
    if &*element.name.ns != HTML_NAMESPACE {
        // SVG and MathML: drawings (an SVG's <title> is a tooltip), not running text.
        return true;
    }
    if matches!(
        element.name(),
        "head"
            | "script"
            | "style"
            | "noscript"
            | "template"
            | "iframe"
            | "object"
            | "embed"
            | "canvas"
            | "datalist"
    ) {
        return true;
    }
    if element.attr("hidden").is_some() {
        return true;
    }
    element.attr("style").is_some_and(|style| {
        let style: String = style
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        style.contains("display:none") || style.contains("visibility:hidden")
    })
}

/// How an element separates its content from what is around it.
enum Layout {
    Inline,
    /// Starts on a new line (`div`, `li`, `tr`, …).
    Line,
    /// Set off by blank lines (`p`, `pre`, `table`, `ul`, …).
    Paragraph,
}

fn layout(name: &str) -> Layout {
    match name {
        "p" | "pre" | "blockquote" | "ul" | "ol" | "dl" | "table" | "figure" | "hr" | "section"
        | "article" | "header" | "footer" | "main" | "nav" | "aside" | "form" | "fieldset"
        | "address" | "details" | "hgroup" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
            Layout::Paragraph
        }
        "html" | "body" | "div" | "li" | "dt" | "dd" | "tr" | "thead" | "tbody" | "tfoot"
        | "caption" | "figcaption" | "summary" | "legend" | "option" | "optgroup" | "center"
        | "menu" | "search" | "textarea" | "br" => Layout::Line,
        _ => Layout::Inline,
    }
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

#[derive(Default)]
struct Walker {
    /// Open headings, outermost first: level and text.
    headings: Vec<(u8, String)>,
    /// The heading being read: its level and text so far.
    heading: Option<(u8, String)>,
    /// Inside `<pre>`: whitespace is kept.
    pre_depth: usize,
    /// Whitespace was seen since the last word; it becomes one space before the next word on the
    /// same line.
    pending_space: bool,
    first_h1: Option<String>,
}

impl Walker {
    fn run(mut self, document: &Html) -> Extracted {
        let mut builder = TextBuilder::new();
        let mut skipping = None;
        for edge in document.tree.root().traverse() {
            match edge {
                Edge::Open(node) => {
                    if skipping.is_some() {
                        continue;
                    }
                    match node.value() {
                        Node::Text(text) => self.text(&mut builder, text),
                        Node::Element(element) if is_invisible(element) => {
                            skipping = Some(node.id());
                        }
                        Node::Element(element) => self.open(&mut builder, element),
                        _ => {}
                    }
                }
                Edge::Close(node) => {
                    if let Some(id) = skipping {
                        if id == node.id() {
                            skipping = None;
                        }
                        continue;
                    }
                    if let Node::Element(element) = node.value() {
                        self.close(&mut builder, element);
                    }
                }
            }
        }
        let title = document_title(document).or(self.first_h1);
        builder.finish(title)
    }

    fn open(&mut self, builder: &mut TextBuilder, element: &Element) {
        let name = element.name();
        if let Some(level) = heading_level(name)
            && self.heading.is_none()
        {
            builder.paragraph_break();
            self.pending_space = false;
            self.heading = Some((level, String::new()));
            return;
        }
        if matches!(name, "td" | "th") && self.heading.is_none() {
            if !builder.at_block_start() {
                builder.push("\t");
            }
            self.pending_space = false;
            return;
        }
        if name == "pre" {
            self.pre_depth += 1;
        }
        self.separate(builder, layout(name));
    }

    fn close(&mut self, builder: &mut TextBuilder, element: &Element) {
        let name = element.name();
        if let Some(level) = heading_level(name)
            && self.heading.as_ref().is_some_and(|(l, _)| *l == level)
        {
            self.end_heading(builder);
            return;
        }
        if name == "pre" {
            self.pre_depth = self.pre_depth.saturating_sub(1);
        }
        // `<br>` has no content: its break is made when it opens.
        if name != "br" {
            self.separate(builder, layout(name));
        }
    }

    fn separate(&mut self, builder: &mut TextBuilder, layout: Layout) {
        match layout {
            Layout::Inline => {}
            // A block inside a heading is part of the heading's one line.
            _ if self.heading.is_some() => self.pending_space = true,
            Layout::Line => {
                builder.line_break();
                self.pending_space = false;
            }
            Layout::Paragraph => {
                builder.paragraph_break();
                self.pending_space = false;
            }
        }
    }

    fn end_heading(&mut self, builder: &mut TextBuilder) {
        let Some((level, text)) = self.heading.take() else {
            return;
        };
        self.pending_space = false;
        self.headings.retain(|(l, _)| *l < level);
        builder.paragraph_break();
        if text.is_empty() {
            return;
        }
        if level == 1 && self.first_h1.is_none() {
            self.first_h1 = Some(text.clone());
        }
        self.headings.push((level, text.clone()));
        builder.set_heading_path(self.headings.iter().map(|(_, t)| t.clone()).collect());
        builder.push(&text);
        builder.paragraph_break();
    }

    fn text(&mut self, builder: &mut TextBuilder, text: &str) {
        if self.pre_depth > 0 && self.heading.is_none() {
            builder.push(text);
            return;
        }
        for (i, word) in text.split(is_html_space).enumerate() {
            if i > 0 {
                self.pending_space = true;
            }
            if word.is_empty() {
                continue;
            }
            match &mut self.heading {
                Some((_, heading)) => {
                    if self.pending_space && !heading.is_empty() {
                        heading.push(' ');
                    }
                    heading.push_str(word);
                }
                None => {
                    if self.pending_space && !builder.at_block_start() {
                        builder.push(" ");
                    }
                    builder.push(word);
                }
            }
            self.pending_space = false;
        }
    }
}

/// HTML's whitespace: what browsers collapse (a no-break space is not among it).
fn is_html_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0C' | '\r')
}

/// The first HTML `<title>`, whitespace collapsed.
fn document_title(document: &Html) -> Option<String> {
    let title = document.tree.root().descendants().find(|node| {
        matches!(node.value(), Node::Element(e) if e.name() == "title" && &*e.name.ns == HTML_NAMESPACE)
    })?;
    let mut text = String::new();
    for node in title.descendants() {
        if let Node::Text(t) = node.value() {
            text.push_str(t);
        }
    }
    let text = text
        .split(is_html_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn visible_text_in_blocks_with_whitespace_collapsed() {
        let source = r#"<!DOCTYPE html>
<html><head><title>  The
   Title </title><style>p { color: red }</style><script>var x = "no";</script></head>
<body>
  <p>Hello,   <b>world</b>&amp;friends&nbsp;!</p>
  <div>one</div><div>two<br>three</div>
  <ul><li>a</li><li>b <i>c</i></li></ul>
  <p hidden>secret</p><span style="display: none">gone</span>
  <noscript>enable js</noscript><template><p>tmpl</p></template>
  <svg><title>tooltip</title><text>drawn</text></svg>
  <pre>  keep
    this</pre>
  <table><tr><th>k</th><th>v</th></tr><tr><td>1</td><td>2</td></tr></table>
</body></html>"#;
        let e = extract(source.as_bytes()).expect("html");
        assert_eq!(e.check(), Ok(()));
        assert_eq!(e.title.as_deref(), Some("The Title"));
        assert_eq!(
            e.text,
            "Hello, world&friends\u{a0}!\n\none\ntwo\nthree\n\na\nb c\n\n  keep\n    this\n\nk\tv\n1\t2"
        );
    }

    #[test]
    fn headings_make_sections() {
        let source = "<body><p>lead</p><h1>Top <small>level</small></h1><p>x</p>\
                      <h2>Sub</h2><p>y</p><h3></h3><h2>Next</h2>z</body>";
        let e = extract(source.as_bytes()).expect("html");
        assert_eq!(e.check(), Ok(()));
        assert_eq!(e.title.as_deref(), Some("Top level"));
        let got: Vec<_> = e
            .sections
            .iter()
            .map(|s| (s.heading_path.clone(), &e.text[s.range.clone()]))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![], "lead\n\n"),
                (path(&["Top level"]), "Top level\n\nx\n\n"),
                (path(&["Top level", "Sub"]), "Sub\n\ny\n\n"),
                (path(&["Top level", "Next"]), "Next\n\nz"),
            ]
        );
    }

    #[test]
    fn meta_charset_is_honoured_when_not_utf8() {
        let mut source = b"<html><head><meta charset=\"windows-1252\"><title>caf".to_vec();
        source.extend(b"\xe9</title></head><body>na\xefve \x80</body></html>");
        let e = extract(&source).expect("html");
        assert_eq!(e.title.as_deref(), Some("café"));
        assert_eq!(e.text, "naïve €");
        let mut http_equiv =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=ISO-8859-1\">"
                .to_vec();
        http_equiv.extend(b"<p>\xfcber</p>");
        assert_eq!(extract(&http_equiv).expect("html").text, "über");
    }

    #[test]
    fn invalid_utf8_without_a_charset_is_an_error() {
        assert_eq!(
            extract(b"<p>caf\xe9</p>"),
            Err(LoadProblem::InvalidUtf8 { offset: 6 })
        );
        assert_eq!(
            extract(b"<meta charset=utf-8><p>\xff</p>"),
            Err(LoadProblem::InvalidUtf8 { offset: 23 })
        );
    }

    #[test]
    fn nothing_visible_is_empty() {
        assert_eq!(
            extract(b"<html><head><title>t</title></head><body><script>x</script></body></html>"),
            Err(LoadProblem::Empty)
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let depth = 5_000;
        let source = format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth));
        assert_eq!(extract(source.as_bytes()).expect("html").text, "deep");
    }
}
