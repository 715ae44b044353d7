//! Plain text: UTF-8 only, checked for binary content; and the decoding the other text formats
//! share.

use crate::text::Extracted;

use super::LoadProblem;

/// How far to look for a NUL byte, the sign of a binary file (as git and ripgrep do).
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn extract(bytes: &[u8]) -> Result<Extracted, LoadProblem> {
    let text = normalize_newlines(decode_utf8(bytes)?);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(LoadProblem::Empty);
    }
    Ok(Extracted::plain(trimmed.to_owned()))
}

/// A binary file is one with a NUL byte near its start.
pub(crate) fn check_not_binary(bytes: &[u8]) -> Result<(), LoadProblem> {
    let head = bytes.get(..BINARY_SNIFF_BYTES).unwrap_or(bytes);
    match head.iter().position(|&b| b == 0) {
        Some(offset) => Err(LoadProblem::Binary { offset }),
        None => Ok(()),
    }
}

/// The text of a UTF-8 file, without its byte-order mark. Offsets in errors count from the start
/// of the file, BOM included.
pub(crate) fn decode_utf8(bytes: &[u8]) -> Result<&str, LoadProblem> {
    check_not_binary(bytes)?;
    let (skip, body) = match bytes.strip_prefix(UTF8_BOM) {
        Some(body) => (UTF8_BOM.len(), body),
        None => (0, bytes),
    };
    std::str::from_utf8(body).map_err(|e| LoadProblem::InvalidUtf8 {
        offset: skip + e.valid_up_to(),
    })
}

/// `\r\n` and lone `\r` become `\n`.
pub(crate) fn normalize_newlines(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utf8_and_strips_the_bom() {
        let e = extract("\u{feff}Ünïcödé 日本語\r\nline two\r\n".as_bytes()).expect("text");
        assert_eq!(e.text, "Ünïcödé 日本語\nline two");
        assert_eq!(e.title, None);
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn nul_bytes_mean_binary() {
        assert_eq!(
            extract(b"PK\x03\x04\x00\x00rest"),
            Err(LoadProblem::Binary { offset: 4 })
        );
        // Only the start is sniffed, as git does.
        let mut late = vec![b'a'; BINARY_SNIFF_BYTES + 10];
        late.push(0);
        assert!(extract(&late).is_ok());
    }

    #[test]
    fn invalid_utf8_gives_the_offset_counting_the_bom() {
        assert_eq!(
            extract(b"caf\xe9 au lait"),
            Err(LoadProblem::InvalidUtf8 { offset: 3 })
        );
        assert_eq!(
            extract(b"\xEF\xBB\xBFab\xff"),
            Err(LoadProblem::InvalidUtf8 { offset: 5 })
        );
    }

    #[test]
    fn empty_or_blank_is_an_error() {
        assert_eq!(extract(b""), Err(LoadProblem::Empty));
        assert_eq!(extract(b" \n\t\r\n "), Err(LoadProblem::Empty));
        assert_eq!(extract(UTF8_BOM), Err(LoadProblem::Empty));
    }
}
