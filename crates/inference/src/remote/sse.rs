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
}

impl Decoder {
    /// Feeds bytes; returns the events they complete. An error means a line was not UTF-8.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                let line = std::mem::take(&mut self.line);
                if let Some(event) = self.line_done(&line)? {
                    events.push(event);
                }
            } else {
                self.line.push(byte);
            }
        }
        Ok(events)
    }

    /// The end of the body: an event still open (no blank line after it) is complete now.
    pub fn finish(&mut self) -> Result<Option<Event>, String> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty()
            && let Some(event) = self.line_done(&line)?
        {
            return Ok(Some(event));
        }
        Ok(self.dispatch())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<Event>, String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
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

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn events_end_at_blank_lines_whatever_the_line_endings() {
        let mut decoder = Decoder::default();
        let events = decoder
            .feed(b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n")
            .expect("valid");
        assert_eq!(data(&events), ["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
    }

    #[test]
    fn bytes_split_anywhere_reassemble_including_inside_a_character() {
        let body =
            "data: {\"text\":\"สวัสดี 😀\"}\n\nevent: error\ndata: line one\ndata: line two\n\n";
        let bytes = body.as_bytes();
        for split in 0..bytes.len() {
            let mut decoder = Decoder::default();
            let mut events = decoder.feed(&bytes[..split]).expect("valid");
            events.extend(decoder.feed(&bytes[split..]).expect("valid"));
            assert_eq!(
                data(&events),
                ["{\"text\":\"สวัสดี 😀\"}", "line one\nline two"],
                "split at {split}"
            );
            assert_eq!(events[1].event.as_deref(), Some("error"));
        }
    }

    #[test]
    fn an_unterminated_last_event_is_delivered_at_the_end() {
        let mut decoder = Decoder::default();
        assert!(decoder.feed(b"data: tail").expect("valid").is_empty());
        assert_eq!(
            decoder.finish().expect("valid").map(|e| e.data),
            Some("tail".to_string())
        );
        assert_eq!(decoder.finish().expect("valid"), None);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut decoder = Decoder::default();
        assert!(decoder.feed(b"data: \xff\xfe\n\n").is_err());
    }
}
