//! Server-sent events, as the OpenAI-compatible APIs stream them: `data:` lines, events ended by a
//! blank line, `:` comments ignored. Bytes may arrive split anywhere, including inside a UTF-8
//! character.

/// One event's fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub(crate) struct Decoder {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    after_cr: bool,
}

impl Decoder {
    /// Feeds bytes; returns the events they complete, and an error for a line that is not
    /// UTF-8 (the events before it still count).
    pub fn feed(&mut self, bytes: &[u8]) -> (Vec<Event>, Option<String>) {
        let mut events = Vec::new();
        for &byte in bytes {
            // Lines end with LF, CRLF or a lone CR; the LF of a CRLF split across two reads is
            // remembered through `after_cr`.
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            if byte == b'\n' && after_cr {
                continue;
            }
            if byte == b'\n' || byte == b'\r' {
                let line = std::mem::take(&mut self.line);
                match self.line_done(&line) {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => {}
                    Err(problem) => return (events, Some(problem)),
                }
            } else {
                self.line.push(byte);
            }
        }
        (events, None)
    }

    /// The end of the body. A line cut short means the connection was: an error. An event whose
    /// lines are complete but that no blank line closed is delivered.
    pub fn finish(&mut self) -> Result<Option<Event>, String> {
        if !self.line.is_empty() {
            return Err(format!(
                "the body ended in the middle of a line ({} bytes)",
                self.line.len()
            ));
        }
        Ok(self.dispatch())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<Event>, String> {
        let line = std::str::from_utf8(line)
            .map_err(|e| format!("a stream line is not valid UTF-8 ({e})"))?;
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take();
        self.data.take().map(|data| Event { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    trait FeedOk {
        fn ok(self) -> Vec<Event>;
    }

    impl FeedOk for (Vec<Event>, Option<String>) {
        fn ok(self) -> Vec<Event> {
            assert_eq!(self.1, None, "no framing error");
            self.0
        }
    }

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn events_end_at_blank_lines_whatever_the_line_endings() {
        let mut decoder = Decoder::default();
        let events = decoder
            .feed(b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n")
            .ok();
        assert_eq!(data(&events), ["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
    }

    #[test]
    fn bytes_split_anywhere_reassemble_including_inside_a_character() {
        let body =
            "data: {\"text\":\"สวัสดี 😀\"}\n\nevent: error\ndata: line one\ndata: line two\n\n";
        let bytes = body.as_bytes();
        for split in 0..bytes.len() {
            let mut decoder = Decoder::default();
            let mut events = decoder.feed(&bytes[..split]).ok();
            events.extend(decoder.feed(&bytes[split..]).ok());
            assert_eq!(
                data(&events),
                ["{\"text\":\"สวัสดี 😀\"}", "line one\nline two"],
                "split at {split}"
            );
            assert_eq!(events[1].event.as_deref(), Some("error"));
        }
    }

    #[test]
    fn a_complete_last_event_without_a_blank_line_is_delivered_at_the_end() {
        let mut decoder = Decoder::default();
        assert!(decoder.feed(b"data: tail\n").ok().is_empty());
        assert_eq!(
            decoder.finish().expect("valid").map(|e| e.data),
            Some("tail".to_string())
        );
        assert_eq!(decoder.finish().expect("valid"), None);
    }

    #[test]
    fn a_body_cut_mid_line_is_an_error() {
        let mut decoder = Decoder::default();
        let cut = b"data: {\"choices\":[{\"delta\":{\"content\":\"Par";
        assert!(decoder.feed(cut).ok().is_empty());
        assert!(decoder.finish().is_err());
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_too() {
        let mut decoder = Decoder::default();
        let events = decoder.feed(b"data: one\r\rdata: two\r").ok();
        assert_eq!(data(&events), ["one"]);
        let rest = decoder.feed(b"\n\n").ok();
        assert_eq!(data(&rest), ["two"], "CR LF across reads is one line end");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut decoder = Decoder::default();
        let (events, problem) = decoder.feed(b"data: one\n\ndata: \xff\xfe\n\n");
        assert_eq!(data(&events), ["one"], "events before the bad line survive");
        assert!(problem.is_some());
    }
}
