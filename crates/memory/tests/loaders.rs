//! Loaders and the walker on real files: fixtures under `tests/fixtures/`, PDFs made here with
//! lopdf, and the bad-file matrix (each bad file must give an error that names it).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_memory::Extracted;
use corral_memory::load::{
    Format, LoadError, LoadOptions, LoadProblem, SkipReason, WalkOptions, load_bytes, load_file,
    walk,
};
use lopdf::content::{Content, Operation};
use lopdf::{
    Document, EncryptionState, EncryptionVersion, Object, Permissions, Stream, dictionary,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(path: &Path) -> Result<Extracted, LoadError> {
    let loaded = load_file(path, &LoadOptions::default())?;
    assert_eq!(loaded.path, path);
    assert_eq!(loaded.extracted.check(), Ok(()), "{}", path.display());
    Ok(loaded.extracted)
}

/// Loads a file that must fail, and checks the error names it.
fn problem(path: &Path) -> LoadProblem {
    problem_with(path, &LoadOptions::default())
}

fn problem_with(path: &Path, options: &LoadOptions) -> LoadProblem {
    match load_file(path, options) {
        Ok(loaded) => panic!("{} loaded: {:?}", path.display(), loaded.extracted.text),
        Err(error) => {
            assert_eq!(error.path, path);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("{}: ", path.display())),
                "{message}"
            );
            error.problem
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(&path, bytes).expect("write");
    path
}

fn section_texts(e: &Extracted) -> Vec<(Vec<String>, &str)> {
    e.sections
        .iter()
        .map(|s| (s.heading_path.clone(), &e.text[s.range.clone()]))
        .collect()
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

// --- PDFs made with lopdf -------------------------------------------------------------------

/// What a test page draws.
enum Draw<'a> {
    /// Lines of text in Helvetica with WinAnsiEncoding (Windows-1252), one under another.
    Text(&'a [&'a str]),
    /// A 2×2 grey image and nothing else.
    Image,
}

struct PdfSpec<'a> {
    pages: Vec<Draw<'a>>,
    title: Option<&'a str>,
    /// Leave out every MediaBox (pdf-extract requires one).
    no_media_box: bool,
}

impl<'a> PdfSpec<'a> {
    fn text(pages: &[&'a [&'a str]]) -> Self {
        Self {
            pages: pages.iter().map(|p| Draw::Text(p)).collect(),
            title: None,
            no_media_box: false,
        }
    }

    fn document(&self) -> Document {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding",
        });
        let image_id = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Image",
                "Width" => 2,
                "Height" => 2,
                "ColorSpace" => "DeviceGray",
                "BitsPerComponent" => 8,
            },
            vec![0, 255, 255, 0],
        ));
        let resources_id = doc.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
            "XObject" => dictionary! { "Im1" => image_id },
        });
        let mut kids = Vec::new();
        for draw in &self.pages {
            let operations = match draw {
                Draw::Text(lines) => {
                    let mut ops = vec![
                        Operation::new("BT", vec![]),
                        Operation::new("Tf", vec!["F1".into(), 12.into()]),
                        Operation::new("Td", vec![72.into(), 750.into()]),
                    ];
                    for (i, line) in lines.iter().enumerate() {
                        if i > 0 {
                            ops.push(Operation::new("Td", vec![0.into(), (-18).into()]));
                        }
                        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(line);
                        assert!(!unmappable, "{line} is not in WinAnsiEncoding");
                        ops.push(Operation::new(
                            "Tj",
                            vec![Object::string_literal(bytes.into_owned())],
                        ));
                    }
                    ops.push(Operation::new("ET", vec![]));
                    ops
                }
                Draw::Image => vec![
                    Operation::new("q", vec![]),
                    Operation::new(
                        "cm",
                        vec![
                            200.into(),
                            0.into(),
                            0.into(),
                            200.into(),
                            100.into(),
                            500.into(),
                        ],
                    ),
                    Operation::new("Do", vec!["Im1".into()]),
                    Operation::new("Q", vec![]),
                ],
            };
            let content = Content { operations }.encode().expect("encode content");
            let content_id = doc.add_object(Stream::new(dictionary! {}, content));
            kids.push(
                doc.add_object(dictionary! {
                    "Type" => "Page",
                    "Parent" => pages_id,
                    "Contents" => content_id,
                })
                .into(),
            );
        }
        let mut pages = dictionary! {
            "Type" => "Pages",
            "Count" => i64::try_from(kids.len()).expect("page count"),
            "Kids" => kids,
            "Resources" => resources_id,
        };
        if !self.no_media_box {
            pages.set("MediaBox", vec![0.into(), 0.into(), 612.into(), 792.into()]);
        }
        doc.objects.insert(pages_id, Object::Dictionary(pages));
        let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog_id);
        if let Some(title) = self.title {
            let info_id = doc.add_object(dictionary! { "Title" => lopdf::text_string(title) });
            doc.trailer.set("Info", info_id);
        }
        doc
    }

    fn bytes(&self) -> Vec<u8> {
        save(self.document())
    }
}

fn save(mut doc: Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("save pdf");
    bytes
}

/// `doc` encrypted with RC4-128 (standard security handler, revision 3).
fn encrypted(mut doc: Document, user_password: &str) -> Vec<u8> {
    let id = Object::string_literal(b"corral-test-id-0".to_vec());
    doc.trailer.set("ID", vec![id.clone(), id]);
    let state = EncryptionState::try_from(EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner secret",
        user_password,
        key_length: 128,
        permissions: Permissions::PRINTABLE,
    })
    .expect("encryption state");
    doc.encrypt(&state).expect("encrypt");
    save(doc)
}

#[test]
fn pdf_pages_keep_their_numbers_and_non_ascii_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = PdfSpec {
        title: Some("Grüße aus Zürich"),
        ..PdfSpec::text(&[
            &["Première page : café, naïve, œuvre.", "Second line €5 — ok"],
            &["Zweite Seite: Grüße, Straße, Äpfel."],
            &["Third page, plain ASCII."],
        ])
    };
    let path = write(dir.path(), "three pages.pdf", &spec.bytes());
    let e = load(&path).expect("pdf");
    assert_eq!(e.title.as_deref(), Some("Grüße aus Zürich"));
    let pages: Vec<_> = e
        .sections
        .iter()
        .map(|s| (s.page, e.text[s.range.clone()].trim_end()))
        .collect();
    assert_eq!(
        pages,
        vec![
            (
                Some(1),
                "Première page : café, naïve, œuvre.\nSecond line €5 — ok"
            ),
            (Some(2), "Zweite Seite: Grüße, Straße, Äpfel."),
            (Some(3), "Third page, plain ASCII."),
        ]
    );
    assert!(
        e.text
            .contains("œuvre.\nSecond line €5 — ok\n\nZweite Seite")
    );
    assert!(e.sections.iter().all(|s| s.heading_path.is_empty()));
}

#[test]
fn pdf_blank_page_in_the_middle_keeps_an_empty_section() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = PdfSpec {
        pages: vec![Draw::Text(&["one"]), Draw::Image, Draw::Text(&["three"])],
        title: None,
        no_media_box: false,
    };
    let e = load(&write(dir.path(), "mixed.pdf", &spec.bytes())).expect("pdf");
    assert_eq!(e.text, "one\n\nthree");
    let pages: Vec<_> = e.sections.iter().map(|s| (s.page, s.range.len())).collect();
    assert_eq!(pages, vec![(Some(1), 5), (Some(2), 0), (Some(3), 5)]);
    assert_eq!(e.title, None);
}

#[test]
fn pdf_with_an_owner_password_only_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = PdfSpec::text(&[&["Open to all readers."]]).document();
    let path = write(dir.path(), "owner-only.pdf", &encrypted(doc, ""));
    assert_eq!(load(&path).expect("pdf").text, "Open to all readers.");
}

#[test]
fn pdf_needing_a_password_is_reported_as_encrypted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = PdfSpec::text(&[&["Top secret."]]).document();
    let path = write(dir.path(), "locked.pdf", &encrypted(doc, "user secret"));
    assert_eq!(problem(&path), LoadProblem::PdfEncrypted);
    let message = LoadProblem::PdfEncrypted.to_string();
    assert!(message.contains("password-protected"), "{message}");
}

#[test]
fn pdf_with_only_an_image_has_no_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = PdfSpec {
        pages: vec![Draw::Image, Draw::Image],
        title: None,
        no_media_box: false,
    };
    let path = write(dir.path(), "scan.pdf", &spec.bytes());
    assert_eq!(problem(&path), LoadProblem::PdfNoText { pages: 2 });
}

#[test]
fn corrupt_pdfs_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = PdfSpec::text(&[&["page one"], &["page two"]]).bytes();

    let truncated = write(dir.path(), "truncated.pdf", &good[..good.len() / 2]);
    assert!(
        matches!(problem(&truncated), LoadProblem::PdfCorrupt(_)),
        "truncated"
    );

    // Deterministic garbage after a valid header.
    let mut garbage = b"%PDF-1.7\n".to_vec();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        garbage.push((x >> 24) as u8);
    }
    let garbage = write(dir.path(), "garbage.pdf", &garbage);
    assert!(
        matches!(problem(&garbage), LoadProblem::PdfCorrupt(_)),
        "garbage"
    );

    let not_pdf = write(dir.path(), "letter.pdf", b"Dear reader, this is not a PDF.");
    assert!(matches!(problem(&not_pdf), LoadProblem::PdfCorrupt(_)));
}

#[test]
fn pdf_that_makes_the_parser_panic_is_reported() {
    // pdf-extract `expect`s a MediaBox on every page.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = PdfSpec {
        no_media_box: true,
        ..PdfSpec::text(&[&["no media box"]])
    };
    let path = write(dir.path(), "no-mediabox.pdf", &spec.bytes());
    match problem(&path) {
        LoadProblem::PdfPanicked(message) => assert!(message.contains("MediaBox"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn pdf_form_that_draws_itself_is_refused_before_it_overflows_the_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut doc = PdfSpec::text(&[&["before the loop"]]).document();
    let form_id = doc.new_object_id();
    let form = Stream::new(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Form",
            "BBox" => vec![0.into(), 0.into(), 100.into(), 100.into()],
            "Resources" => dictionary! { "XObject" => dictionary! { "Fm1" => form_id } },
        },
        b"/Fm1 Do".to_vec(),
    );
    doc.objects.insert(form_id, Object::Stream(form));
    let page_id = doc.get_pages().into_values().next().expect("page");
    let page = doc.get_dictionary_mut(page_id).expect("page dict");
    page.set(
        "Resources",
        dictionary! { "XObject" => dictionary! { "Fm1" => form_id } },
    );
    let content_id = doc.add_object(Stream::new(dictionary! {}, b"/Fm1 Do".to_vec()));
    doc.get_dictionary_mut(page_id)
        .expect("page dict")
        .set("Contents", content_id);
    let path = write(dir.path(), "recursive-form.pdf", &save(doc));
    match problem(&path) {
        LoadProblem::PdfCorrupt(message) => assert!(message.contains("draws itself"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn pdf_page_tree_that_loops_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = PdfSpec {
        no_media_box: true,
        ..PdfSpec::text(&[&["looping parents"]])
    };
    let mut doc = spec.document();
    let pages_id = doc
        .catalog()
        .and_then(|c| c.get(b"Pages"))
        .and_then(Object::as_reference)
        .expect("pages");
    doc.get_dictionary_mut(pages_id)
        .expect("pages dict")
        .set("Parent", pages_id);
    let path = write(dir.path(), "loop.pdf", &save(doc));
    match problem(&path) {
        LoadProblem::PdfCorrupt(message) => assert!(message.contains("loops"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn pdf_time_limit_gives_timed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<&str> = vec!["A line of text on a page."; 40];
    let pages: Vec<&[&str]> = vec![&lines; 50];
    let path = write(dir.path(), "slow.pdf", &PdfSpec::text(&pages).bytes());
    let options = LoadOptions {
        pdf_timeout: Duration::ZERO,
        ..LoadOptions::default()
    };
    assert_eq!(
        problem_with(&path, &options),
        LoadProblem::PdfTimedOut {
            limit: Duration::ZERO
        }
    );
    // With time to spare, the same file loads.
    assert_eq!(load(&path).expect("pdf").sections.len(), 50);
}

// --- Markdown, HTML, text -------------------------------------------------------------------

#[test]
fn markdown_fixture() {
    let path = fixture("guide.md");
    let loaded = load_file(&path, &LoadOptions::default()).expect("markdown");
    assert_eq!(loaded.format, Format::Markdown);
    assert_eq!(loaded.content_hash.len(), 64);
    assert!(loaded.content_hash.bytes().all(|b| b.is_ascii_hexdigit()));
    let e = loaded.extracted;
    assert_eq!(e.check(), Ok(()));
    assert_eq!(e.title.as_deref(), Some("Corral field guide"));
    assert!(!e.text.contains("tags:"), "front matter left out");
    assert!(!e.text.contains(['#', '*', '`', '|']), "{}", e.text);
    let sections = section_texts(&e);
    let paths: Vec<_> = sections.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        paths,
        vec![
            strings(&["Getting started"]),
            strings(&["Getting started", "Install"]),
            strings(&["Getting started", "Многоязычие"]),
            strings(&["Getting started", "Многоязычие", "日本語"]),
            strings(&["Reference"]),
        ]
    );
    assert_eq!(
        sections[1].1,
        "Install\n\n1. Download the binary.\n2. Run corral --version.\n\ncorral ingest ./docs\n\n"
    );
    assert!(
        sections[2]
            .1
            .starts_with("Многоязычие\n\nТексты на русском языке")
    );
    assert_eq!(
        sections[3].1,
        "日本語\n\nいろはにほへと　ちりぬるを。Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.\n\n"
    );
    assert_eq!(sections[4].1, "Reference\n\noption\tmeaning\n-v\tverbose");
}

#[test]
fn html_fixture() {
    let path = fixture("page.html");
    let e = load(&path).expect("html");
    assert_eq!(e.title.as_deref(), Some("Corral — a field guide"));
    for hidden in [
        "not text",
        "Home | About",
        "enable JavaScript",
        "drawing",
        "font-family",
    ] {
        assert!(!e.text.contains(hidden), "{hidden:?} in {}", e.text);
    }
    let sections = section_texts(&e);
    let paths: Vec<_> = sections.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        paths,
        vec![
            strings(&["Getting started"]),
            strings(&["Getting started", "Install"]),
            strings(&["Getting started", "多语言"]),
            strings(&["Getting started", "多语言", "Ελληνικά"]),
            strings(&["Reference"]),
        ]
    );
    assert_eq!(
        sections[0].1,
        "Getting started\n\nCorral turns documents into answers & citations.\n\n"
    );
    assert_eq!(
        sections[1].1,
        "Install\n\nDownload the binary.\nRun corral --version.\n\ncorral ingest ./docs\n  --store local\n\n"
    );
    assert_eq!(
        sections[2].1,
        "多语言\n\n中文：天地玄黄，宇宙洪荒。\n\nالعربية: نص تجريبي.\n\n"
    );
    assert_eq!(
        sections[3].1,
        "Ελληνικά\n\nΞεσκεπάζω\nτην ψυχοφθόρα βδελυγμία.\n\n"
    );
    assert_eq!(sections[4].1, "Reference\n\noption\tmeaning\n-v\tverbose");
}

#[test]
fn text_fixture() {
    let e = load(&fixture("notes.txt")).expect("text");
    assert_eq!(
        e.text,
        "Plain notes — UTF-8.\nСписок: один, два.\n漢字かな交じり文。"
    );
    assert_eq!(e.sections.len(), 1);
}

#[test]
fn html_in_a_declared_legacy_charset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = b"<html><head><meta charset=windows-1251><title>".to_vec();
    bytes.extend(encoding_rs::WINDOWS_1251.encode("Привет").0.as_ref());
    bytes.extend(b"</title></head><body><p>");
    bytes.extend(encoding_rs::WINDOWS_1251.encode("Мир").0.as_ref());
    bytes.extend(b"</p></body></html>");
    let e = load(&write(dir.path(), "cp1251.html", &bytes)).expect("html");
    assert_eq!(e.title.as_deref(), Some("Привет"));
    assert_eq!(e.text, "Мир");
}

// --- The bad-file matrix --------------------------------------------------------------------

#[test]
fn empty_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["empty.txt", "empty.md", "empty.html"] {
        assert_eq!(
            problem(&write(dir.path(), name, b"")),
            LoadProblem::Empty,
            "{name}"
        );
    }
    assert_eq!(
        problem(&write(dir.path(), "blank.txt", b"\n  \n\t")),
        LoadProblem::Empty
    );
    assert!(matches!(
        problem(&write(dir.path(), "empty.pdf", b"")),
        LoadProblem::PdfCorrupt(_)
    ));
}

#[test]
fn binary_files_with_text_extensions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR";
    for name in ["image.txt", "image.md", "image.html"] {
        assert_eq!(
            problem(&write(dir.path(), name, png)),
            LoadProblem::Binary { offset: 8 },
            "{name}"
        );
    }
}

#[test]
fn invalid_utf8_gives_the_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "latin1.txt", b"caf\xe9 cr\xe8me");
    assert_eq!(problem(&path), LoadProblem::InvalidUtf8 { offset: 3 });
    let message = load_file(&path, &LoadOptions::default())
        .expect_err("invalid")
        .to_string();
    assert!(
        message.ends_with(
            "latin1.txt: it is not valid UTF-8 (invalid byte at offset 3); convert it to UTF-8"
        ),
        "{message}"
    );
    let md = write(dir.path(), "latin1.md", b"# Titre\n\ncaf\xe9");
    assert_eq!(problem(&md), LoadProblem::InvalidUtf8 { offset: 12 });
}

#[test]
fn too_large_unsupported_and_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = write(dir.path(), "big.txt", &[b'a'; 100]);
    let options = LoadOptions {
        max_file_bytes: 10,
        ..LoadOptions::default()
    };
    assert_eq!(
        problem_with(&big, &options),
        LoadProblem::TooLarge {
            size: 100,
            limit: 10
        }
    );
    let docx = write(dir.path(), "report.docx", b"PK");
    assert_eq!(
        problem(&docx),
        LoadProblem::Unsupported {
            extension: Some("docx".into())
        }
    );
    let missing = dir.path().join("gone.md");
    assert!(matches!(
        problem(&missing),
        LoadProblem::Io {
            kind: std::io::ErrorKind::NotFound,
            ..
        }
    ));
    let folder = dir.path().join("folder.md");
    fs::create_dir(&folder).expect("mkdir");
    assert!(matches!(problem(&folder), LoadProblem::Io { .. }));
}

#[test]
fn bytes_in_memory_load_like_a_file() {
    let name = Path::new("https://example.com/notes.md");
    let loaded = load_bytes(
        name,
        b"# Notes\n\nFrom the web.".to_vec(),
        &LoadOptions::default(),
    )
    .expect("markdown");
    assert_eq!(loaded.format, Format::Markdown);
    assert_eq!(loaded.extracted.text, "Notes\n\nFrom the web.");
    let options = LoadOptions {
        max_file_bytes: 4,
        ..LoadOptions::default()
    };
    let error = load_bytes(name, b"too long".to_vec(), &options).expect_err("too large");
    assert_eq!(error.problem, LoadProblem::TooLarge { size: 8, limit: 4 });
    assert!(
        error
            .to_string()
            .starts_with("https://example.com/notes.md: ")
    );
}

#[test]
fn content_hash_is_sha256_of_the_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "abc.txt", b"abc");
    let loaded = load_file(&path, &LoadOptions::default()).expect("text");
    assert_eq!(
        loaded.content_hash,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

// --- The walker ------------------------------------------------------------------------------

/// A folder (not a git repository) with ignore files, hidden files, a large file and files of
/// unsupported types.
fn tree() -> tempfile::TempDir {
    // Not tempfile's default `.tmp…`: a hidden root is a case of its own.
    let dir = tempfile::Builder::new()
        .prefix("corral-walk")
        .tempdir()
        .expect("tempdir");
    let root = dir.path();
    write(root, ".gitignore", b"build/\n*.log\n");
    write(root, ".ignore", b"drafts/\n");
    write(root, "a.md", b"# A");
    write(root, "app.log", b"ignored by .gitignore");
    write(root, "build/out.md", b"ignored by .gitignore");
    write(root, "drafts/d.md", b"ignored by .ignore");
    write(root, "sub/.corralignore", b"secret.md\n");
    write(root, "sub/secret.md", b"ignored by .corralignore");
    write(root, "sub/b.txt", b"b");
    write(root, "sub/deeper/c.html", b"<p>c</p>");
    write(root, ".hidden/h.md", b"hidden folder");
    write(root, ".dot.md", b"hidden file");
    write(root, "big.txt", &[b'x'; 2000]);
    write(root, "photo.png", b"\x89PNG");
    write(root, "Makefile", b"all:");
    write(root, "z.pdf", b"%PDF-1.4");
    dir
}

fn small() -> WalkOptions {
    WalkOptions {
        max_file_bytes: 1000,
        ..WalkOptions::default()
    }
}

fn relative(root: &Path, paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    paths
        .into_iter()
        .map(|p| {
            p.strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn walk_honours_ignore_files_outside_git_and_skips_hidden() {
    let dir = tree();
    let root = dir.path();
    let walked = walk(&[root.to_owned()], &small());
    let files: Vec<_> = walked.files.iter().map(|(p, f)| (p.clone(), *f)).collect();
    assert_eq!(
        relative(root, files.iter().map(|(p, _)| p.clone())),
        ["a.md", "sub/b.txt", "sub/deeper/c.html", "z.pdf"]
    );
    let formats: Vec<_> = files.iter().map(|(_, f)| *f).collect();
    assert_eq!(
        formats,
        [Format::Markdown, Format::Text, Format::Html, Format::Pdf]
    );
    let skipped: Vec<_> = walked
        .skipped
        .iter()
        .map(|s| {
            (
                s.path.strip_prefix(root).expect("under root").to_owned(),
                s.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        vec![
            (
                PathBuf::from("Makefile"),
                SkipReason::Unsupported { extension: None }
            ),
            (
                PathBuf::from("big.txt"),
                SkipReason::TooLarge {
                    size: 2000,
                    limit: 1000
                }
            ),
            (
                PathBuf::from("photo.png"),
                SkipReason::Unsupported {
                    extension: Some("png".into())
                }
            ),
        ]
    );
    let message = walked.skipped[1].to_string();
    assert!(
        message.ends_with(
            "big.txt: it is 2.0 KiB (2000 bytes), over the 1000 bytes limit on file size"
        ),
        "{message}"
    );
}

#[test]
fn walk_takes_explicit_files_even_if_ignored_or_hidden() {
    let dir = tree();
    let root = dir.path();
    let roots = [
        root.join("app.log"),
        root.join(".dot.md"),
        root.join("build/out.md"),
    ];
    let walked = walk(&roots, &small());
    assert_eq!(
        relative(root, walked.files.iter().map(|(p, _)| p.clone())),
        [".dot.md", "app.log", "build/out.md"]
    );
    assert!(walked.skipped.is_empty());
    // The size limit and supported types still apply.
    let walked = walk(&[root.join("big.txt"), root.join("photo.png")], &small());
    assert!(walked.files.is_empty());
    assert_eq!(walked.skipped.len(), 2);
}

#[test]
fn walk_reports_a_missing_root_and_goes_on() {
    let dir = tree();
    let root = dir.path();
    let missing = root.join("no/such/place");
    let walked = walk(&[missing.clone(), root.join("sub")], &small());
    assert_eq!(
        relative(root, walked.files.iter().map(|(p, _)| p.clone())),
        ["sub/b.txt", "sub/deeper/c.html"]
    );
    assert_eq!(walked.skipped.len(), 1);
    assert_eq!(walked.skipped[0].path, missing);
    assert_eq!(walked.skipped[0].reason, SkipReason::Missing);
    assert_eq!(
        walked.skipped[0].to_string(),
        format!("{}: no such file or directory", missing.display())
    );
}

#[test]
fn walk_output_is_sorted_and_without_duplicates() {
    let dir = tree();
    let root = dir.path();
    let roots = [
        root.join("z.pdf"),
        root.join("sub"),
        root.to_owned(),
        root.join("a.md"),
    ];
    let walked = walk(&roots, &small());
    assert_eq!(
        relative(root, walked.files.iter().map(|(p, _)| p.clone())),
        ["a.md", "sub/b.txt", "sub/deeper/c.html", "z.pdf"]
    );
    let again = walk(&roots, &small());
    assert_eq!(walked, again);
}

#[test]
fn walk_a_hidden_root_folder() {
    // A root is walked even if its own name is hidden (`.docs`, or tempfile's `.tmp…`).
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join(".docs");
    write(&root, "guide.md", b"# Guide");
    let walked = walk(std::slice::from_ref(&root), &WalkOptions::default());
    assert_eq!(
        walked.files,
        vec![(root.join("guide.md"), Format::Markdown)]
    );
}

#[cfg(unix)]
#[test]
fn walk_reports_symlinks_unless_told_to_follow() {
    let dir = tree();
    let root = dir.path();
    std::os::unix::fs::symlink(root.join("a.md"), root.join("sub/link.md")).expect("symlink");
    let walked = walk(&[root.join("sub")], &small());
    assert!(
        walked
            .skipped
            .iter()
            .any(|s| s.path == root.join("sub/link.md") && s.reason == SkipReason::Symlink)
    );
    let follow = WalkOptions {
        follow_links: true,
        ..small()
    };
    let walked = walk(&[root.join("sub")], &follow);
    assert!(
        walked
            .files
            .iter()
            .any(|(p, _)| p == &root.join("sub/link.md"))
    );
}

#[test]
fn walked_files_load() {
    let dir = tree();
    let root = dir.path();
    let walked = walk(&[root.join("sub")], &small());
    for (path, format) in &walked.files {
        let loaded = load_file(path, &LoadOptions::default()).expect("loads");
        assert_eq!(loaded.format, *format);
    }
}
