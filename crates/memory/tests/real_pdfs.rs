//! The PDF loader on real documents nobody here made: the GLPK manuals from Debian's glpk-doc
//! package (6 PDFs, 471 pages, typeset with TeX, in English, Spanish and Portuguese), fetched by
//! `scripts/fetch-test-pdfs.sh` into `${CORRAL_CACHE:-~/.cache/corral}/pdfs/glpk-doc/`, or found
//! in `CORRAL_TEST_PDFS`. Missing files fail the tests: they are never skipped silently.

use std::collections::BTreeMap;
use std::env;
use std::path::PathBuf;
use std::sync::OnceLock;

use corral_memory::load::{Format, LoadOptions, Loaded, WalkOptions, load_file, walk};

fn pdf_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CORRAL_TEST_PDFS") {
        return dir.into();
    }
    let cache = env::var_os("CORRAL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cache/corral")
        });
    cache.join("pdfs/glpk-doc")
}

/// Every PDF in the directory, loaded once for all tests, by file name.
fn loaded() -> &'static BTreeMap<String, Loaded> {
    static LOADED: OnceLock<BTreeMap<String, Loaded>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let dir = pdf_dir();
        let missing = format!(
            "the test PDFs are missing from {}: run scripts/fetch-test-pdfs.sh (or point \
             CORRAL_TEST_PDFS at a folder of PDFs)",
            dir.display()
        );
        assert!(dir.is_dir(), "{missing}");
        let walked = walk(std::slice::from_ref(&dir), &WalkOptions::default());
        let mut all = BTreeMap::new();
        for (path, format) in &walked.files {
            if *format != Format::Pdf {
                continue;
            }
            let loaded =
                load_file(path, &LoadOptions::default()).unwrap_or_else(|error| panic!("{error}"));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            all.insert(name, loaded);
        }
        assert!(!all.is_empty(), "{missing}");
        all
    })
}

fn page_text(loaded: &Loaded, page: u32) -> &str {
    let e = &loaded.extracted;
    let section = e
        .sections
        .iter()
        .find(|s| s.page == Some(page))
        .unwrap_or_else(|| panic!("{}: no page {page}", loaded.path.display()));
    &e.text[section.range.clone()]
}

#[test]
fn every_real_pdf_loads_with_pages_numbered_from_one() {
    let all = loaded();
    let mut total_pages = 0;
    let mut total_chars = 0;
    let mut unreadable = Vec::new();
    for (name, loaded) in all {
        let e = &loaded.extracted;
        assert_eq!(e.check(), Ok(()), "{name}");
        let pages: Vec<_> = e.sections.iter().map(|s| s.page).collect();
        let want: Vec<_> = (1..=u32::try_from(pages.len()).expect("pages"))
            .map(Some)
            .collect();
        assert_eq!(
            pages, want,
            "{name}: pages are numbered 1..n, one section each"
        );
        assert!(e.sections.iter().all(|s| s.heading_path.is_empty()));
        let chars = e.text.chars().count();
        assert!(
            chars > 1000 * pages.len(),
            "{name}: only {chars} characters on {} pages",
            pages.len()
        );
        total_pages += pages.len();
        total_chars += chars;
        unreadable.extend(
            loaded
                .unreadable_pages
                .iter()
                .map(|u| format!("{name} {u}")),
        );
    }
    assert!(
        total_pages >= 250,
        "{total_pages} pages in {} files",
        all.len()
    );
    assert!(total_chars > 500_000, "{total_chars} characters");
    // pdf-extract 0.12.1 panics on a few pages here (a character missing from a font's map);
    // those pages are lost, not their documents.
    assert!(
        unreadable.len() * 20 < total_pages,
        "too many unreadable pages: {unreadable:#?}"
    );
}

#[test]
fn known_phrases_are_on_their_pages() {
    let all = loaded();
    let get = |name: &str| {
        all.get(name)
            .unwrap_or_else(|| panic!("{name} is missing: run scripts/fetch-test-pdfs.sh"))
    };
    let cases = [
        (
            "glpk.pdf",
            1,
            "GNU Linear Programming Kit\n\nReference Manual",
        ),
        ("glpk.pdf", 10, "1.3.1 Brief example"),
        (
            "glpk.pdf",
            39,
            "int glp_simplex(glp_prob *P, const glp_smcp *parm);",
        ),
        ("gmpl.pdf", 1, "Modeling Language GNU MathProg"),
        (
            "gmpl_es.pdf",
            12,
            "Con propósitos de documentación, la descripción del modelo",
        ),
        ("gmpl_es.pdf", 13, "Capítulo 3\n\nExpresiones"),
        (
            "gmpl_pt-BR.pdf",
            13,
            "Uma expressão é uma regra para calcular um valor.",
        ),
        ("graphs.pdf", 1, "Graph and Network Routines"),
        ("cnfsat.pdf", 1, "(x1 ∨ x2) & (¬x2 ∨ x3 ∨ ¬x4) & (¬x1 ∨ x4)"),
    ];
    for (name, page, phrase) in cases {
        let text = page_text(get(name), page);
        assert!(
            text.contains(phrase),
            "{name} page {page} lacks {phrase:?}:\n{text}"
        );
    }
    // Ligatures are spelled out ("ﬁnd" would never match "find").
    let cnf = page_text(get("cnfsat.pdf"), 1);
    assert!(cnf.contains("this problem is to find such values"), "{cnf}");
    assert!(!all.values().any(|l| l.extracted.text.contains('\u{FB01}')));
}
