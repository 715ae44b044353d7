//! PDF: text per page with pdf-extract (over lopdf), one section per page, pages separated by a
//! blank line; the title from the document information dictionary.
//!
//! pdf-extract panics on many malformed files (and on some well-formed ones) and can take
//! unbounded time, so the whole parse runs in [`run_isolated`]: on its own thread, panics caught,
//! with a time limit. A panic on one page costs that page only (it is listed in
//! [`UnreadablePage`]s); the file fails only when no page could be read. Two things a
//! caught panic cannot help with are checked first, because pdf-extract follows them by recursion
//! and a stack overflow aborts the process: a page tree whose `Parent` links loop, and form
//! XObjects that draw themselves.
//!
//! Neither pdf-extract nor lopdf prints to stdout or stderr; their diagnostics go to the `log`
//! crate (silent unless the application installs a logger or a bridge to `tracing`).

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use crate::text::{Extracted, Section};

use super::isolate::{Isolated, panic_message, run_isolated};
use super::{LoadProblem, UnreadablePage};

/// Deeper nesting of form XObjects is refused: real documents nest a few levels.
/// The name of the thread the PDF parser runs on, so a panic hook can tell its panics (which
/// are caught and reported as [`LoadProblem::PdfPanicked`] or an unreadable page) from others.
pub const PDF_THREAD_NAME: &str = "corral-pdf";

const MAX_FORM_DEPTH: usize = 32;
/// Longer `Parent` chains are refused: lopdf itself reads page trees at most this deep.
const MAX_PAGE_TREE_DEPTH: usize = 256;

/// What the parser's thread hands back.
#[derive(Debug)]
struct PdfText {
    /// Cleaned text of each page, in page order, numbered from 1.
    pages: Vec<String>,
    title: Option<String>,
    unreadable: Vec<UnreadablePage>,
}

pub(crate) fn extract(
    bytes: Vec<u8>,
    limit: Duration,
) -> Result<(Extracted, Vec<UnreadablePage>), LoadProblem> {
    let read = run_isolated(PDF_THREAD_NAME, limit, move || read_pages(&bytes));
    let pdf = match read {
        Ok(result) => result?,
        Err(Isolated::Panicked(message)) => return Err(LoadProblem::PdfPanicked(message)),
        Err(Isolated::TimedOut) => return Err(LoadProblem::PdfTimedOut { limit }),
        Err(Isolated::NoThread(message)) => {
            return Err(LoadProblem::Io {
                kind: std::io::ErrorKind::Other,
                message: format!("could not start a thread to parse it: {message}"),
            });
        }
    };
    let PdfText {
        pages,
        title,
        unreadable,
    } = pdf;
    Ok((assemble(pages, title)?, unreadable))
}

/// Why one page gave no text.
enum PageFailure {
    Error(String),
    Panic(String),
}

/// Runs on the parser's thread.
fn read_pages(bytes: &[u8]) -> Result<PdfText, LoadProblem> {
    let mut doc = Document::load_mem(bytes).map_err(|e| LoadProblem::PdfCorrupt(e.to_string()))?;
    // lopdf decrypts at load when the empty user password opens the file (an owner password
    // only restricts printing or copying); the Encrypt entry is left only when that failed.
    if doc.trailer.get(b"Encrypt").is_ok() {
        return Err(LoadProblem::PdfEncrypted);
    }
    check_structure(&doc).map_err(LoadProblem::PdfCorrupt)?;
    empty_images(&mut doc);

    let numbers: Vec<u32> = doc.get_pages().into_keys().collect();
    if numbers.is_empty() {
        return Err(LoadProblem::PdfCorrupt("it has no pages".to_owned()));
    }
    let mut pages = Vec::with_capacity(numbers.len());
    let mut unreadable = Vec::new();
    let mut first_failure = None;
    for &number in &numbers {
        let failure = match page_text(&doc, number) {
            Ok(raw) => {
                pages.push(clean_text(&raw));
                continue;
            }
            Err(failure) => failure,
        };
        // One bad page loses that page, not the document.
        let problem = match &failure {
            PageFailure::Error(message) => message.clone(),
            PageFailure::Panic(message) => format!("the PDF parser crashed: {message}"),
        };
        tracing::warn!(page = number, %problem, "PDF page unreadable");
        unreadable.push(UnreadablePage {
            page: number,
            problem,
        });
        first_failure.get_or_insert(failure);
        pages.push(String::new());
    }
    if let Some(failure) = first_failure
        && pages.iter().all(String::is_empty)
    {
        return Err(match failure {
            PageFailure::Error(message) => LoadProblem::PdfCorrupt(message),
            PageFailure::Panic(message) => LoadProblem::PdfPanicked(message),
        });
    }
    Ok(PdfText {
        pages,
        title: title(&doc),
        unreadable,
    })
}

/// One page's text from pdf-extract. A panic is caught here too, so that one page with, say, a
/// font pdf-extract cannot decode costs that page only: each call starts from a fresh parser
/// state, and the document is only read.
fn page_text(doc: &Document, number: u32) -> Result<String, PageFailure> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut raw = String::new();
        let mut output = pdf_extract::PlainTextOutput::new(&mut raw);
        pdf_extract::output_doc_page(doc, &mut output, number).map(|()| raw)
    }));
    match outcome {
        Ok(Ok(raw)) => Ok(raw),
        Ok(Err(error)) => Err(PageFailure::Error(error.to_string())),
        Err(payload) => Err(PageFailure::Panic(panic_message(payload.as_ref()))),
    }
}

/// Joins the pages: each page's section covers its text and the blank line after it; a page
/// without text has an empty section, so page `n` is always section `n - 1`.
fn assemble(pages: Vec<String>, title: Option<String>) -> Result<Extracted, LoadProblem> {
    let page_count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    let Some(last_with_text) = pages.iter().rposition(|p| !p.is_empty()) else {
        return Err(LoadProblem::PdfNoText { pages: page_count });
    };
    let mut text = String::with_capacity(pages.iter().map(|p| p.len() + 2).sum());
    let mut sections = Vec::with_capacity(pages.len());
    for (i, page) in pages.iter().enumerate() {
        let start = text.len();
        text.push_str(page);
        if !page.is_empty() && i < last_with_text {
            text.push_str("\n\n");
        }
        sections.push(Section {
            range: start..text.len(),
            page: Some(u32::try_from(i + 1).unwrap_or(u32::MAX)),
            heading_path: Vec::new(),
        });
    }
    Ok(Extracted {
        text,
        title,
        sections,
    })
}

/// pdf-extract's text, tidied for reading and search: typographic ligatures spelled out (`ﬁ` →
/// `fi`, or "ﬁnd" never matches "find"), control characters dropped, trailing spaces and runs of
/// blank lines removed.
fn clean_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank_lines = 0;
    for line in raw.lines() {
        let mut clean = String::with_capacity(line.len());
        for c in line.chars() {
            match c {
                '\u{FB00}' => clean.push_str("ff"),
                '\u{FB01}' => clean.push_str("fi"),
                '\u{FB02}' => clean.push_str("fl"),
                '\u{FB03}' => clean.push_str("ffi"),
                '\u{FB04}' => clean.push_str("ffl"),
                '\u{FB05}' | '\u{FB06}' => clean.push_str("st"),
                '\t' => clean.push(' '),
                c if c.is_control() => {}
                c => clean.push(c),
            }
        }
        let clean = clean.trim_end();
        if clean.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        out.push_str(clean);
    }
    out
}

/// The `Title` of the document information dictionary, if it has a non-blank one.
fn title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let (_, info) = doc.dereference(info).ok()?;
    let title = info.as_dict().ok()?.get(b"Title").ok()?;
    let (_, title) = doc.dereference(title).ok()?;
    let title = lopdf::decode_text_string(title).ok()?;
    let title: String = title
        .chars()
        .filter(|c| !c.is_control() && *c != '\u{FEFF}')
        .collect();
    let title = title.trim();
    (!title.is_empty()).then(|| title.to_owned())
}

/// Images carry no text, but pdf-extract parses an image drawn with `Do` as if it were a content
/// stream; emptying them first saves that work (and its failures) and memory.
fn empty_images(doc: &mut Document) {
    for object in doc.objects.values_mut() {
        if let Ok(stream) = object.as_stream_mut()
            && stream.dict.get(b"Subtype").and_then(Object::as_name).ok() == Some(&b"Image"[..])
        {
            stream.set_plain_content(Vec::new());
        }
    }
}

/// Refuses what would send pdf-extract into endless recursion: `Parent` links that loop, and
/// form XObjects that draw themselves (directly or through others), or nest absurdly deep.
fn check_structure(doc: &Document) -> Result<(), String> {
    let mut done = HashSet::new();
    for (number, page_id) in doc.get_pages() {
        let page = doc
            .get_dictionary(page_id)
            .map_err(|e| format!("page {number}: {e}"))?;
        check_parents(doc, page).map_err(|e| format!("page {number}: {e}"))?;
        let Some(resources) = inherited(doc, page, b"Resources").and_then(|r| r.as_dict().ok())
        else {
            continue;
        };
        if !has_forms(doc, resources) {
            continue;
        }
        // A page whose content does not parse is pdf-extract's to report.
        let Ok(content) = doc.get_page_content(page_id) else {
            continue;
        };
        let mut stack = Vec::new();
        check_forms(doc, &content, resources, &mut stack, &mut done)
            .map_err(|e| format!("page {number}: {e}"))?;
    }
    Ok(())
}

fn check_parents(doc: &Document, page: &Dictionary) -> Result<(), String> {
    let mut seen = HashSet::new();
    let mut node = page;
    while let Ok(parent) = node.get(b"Parent").and_then(Object::as_reference) {
        if !seen.insert(parent) || seen.len() > MAX_PAGE_TREE_DEPTH {
            return Err("the page tree loops back on itself".to_owned());
        }
        match doc.get_dictionary(parent) {
            Ok(dict) => node = dict,
            Err(_) => break,
        }
    }
    Ok(())
}

/// A page attribute, from the page or the nearest ancestor that has it (as pdf-extract finds it).
fn inherited<'a>(doc: &'a Document, page: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    let mut node = page;
    for _ in 0..=MAX_PAGE_TREE_DEPTH {
        if let Ok(value) = node.get(key) {
            return doc.dereference(value).ok().map(|(_, v)| v);
        }
        let parent = node.get(b"Parent").and_then(Object::as_reference).ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
}

fn xobjects<'a>(doc: &'a Document, resources: &'a Dictionary) -> Option<&'a Dictionary> {
    let xobjects = resources.get(b"XObject").ok()?;
    doc.dereference(xobjects).ok()?.1.as_dict().ok()
}

fn form<'a>(doc: &'a Document, object: &Object) -> Option<(ObjectId, &'a Stream)> {
    let id = object.as_reference().ok()?;
    let stream = doc.get_object(id).ok()?.as_stream().ok()?;
    let subtype = stream.dict.get(b"Subtype").and_then(Object::as_name).ok()?;
    (subtype == b"Form").then_some((id, stream))
}

fn has_forms(doc: &Document, resources: &Dictionary) -> bool {
    xobjects(doc, resources).is_some_and(|x| x.iter().any(|(_, o)| form(doc, o).is_some()))
}

/// Depth-first over the forms a content stream draws; `stack` holds the forms being drawn, and
/// `done` the (form, resources) pairs already checked.
fn check_forms(
    doc: &Document,
    content: &[u8],
    resources: &Dictionary,
    stack: &mut Vec<ObjectId>,
    done: &mut HashSet<(ObjectId, usize)>,
) -> Result<(), String> {
    let Some(xobjects) = xobjects(doc, resources) else {
        return Ok(());
    };
    let Ok(content) = Content::decode(content) else {
        return Ok(());
    };
    for operation in content.operations.iter().filter(|o| o.operator == "Do") {
        let Some(name) = operation.operands.first().and_then(|o| o.as_name().ok()) else {
            continue;
        };
        let Some((id, stream)) = xobjects.get(name).ok().and_then(|o| form(doc, o)) else {
            continue;
        };
        if stack.contains(&id) {
            return Err(format!("form XObject {} {} draws itself", id.0, id.1));
        }
        if stack.len() >= MAX_FORM_DEPTH {
            return Err(format!(
                "form XObjects are nested more than {MAX_FORM_DEPTH} deep"
            ));
        }
        // A form without resources of its own uses those of whatever draws it.
        let own = stream
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|r| doc.dereference(r).ok())
            .and_then(|(_, r)| r.as_dict().ok());
        let resources = own.unwrap_or(resources);
        let key = (id, std::ptr::from_ref(resources) as usize);
        if done.contains(&key) {
            continue;
        }
        let body = stream
            .decompressed_content()
            .unwrap_or_else(|_| stream.content.clone());
        stack.push(id);
        check_forms(doc, &body, resources, stack, done)?;
        stack.pop();
        done.insert(key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_spells_out_ligatures_and_tidies_lines() {
        assert_eq!(
            clean_text("\n\n  \u{FB01}nd the e\u{FB00}ect \n\n\n\nnext\tline\u{0}\n\n"),
            "  find the effect\n\nnext line"
        );
    }

    #[test]
    fn pages_without_text_keep_their_numbered_section() {
        let pages = vec!["one".into(), String::new(), "three".into(), String::new()];
        let e = assemble(pages, Some("T".into())).expect("text");
        assert_eq!(e.check(), Ok(()));
        assert_eq!(e.text, "one\n\nthree");
        let got: Vec<_> = e
            .sections
            .iter()
            .map(|s| (s.page, &e.text[s.range.clone()]))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(1), "one\n\n"),
                (Some(2), ""),
                (Some(3), "three"),
                (Some(4), ""),
            ]
        );
    }

    #[test]
    fn no_text_on_any_page() {
        assert_eq!(
            assemble(vec![String::new(), String::new()], None),
            Err(LoadProblem::PdfNoText { pages: 2 })
        );
    }
}
