//! Splitting a multi-document YAML stream into its documents, line by line.
//!
//! Documents are separated by a line `---` (optionally followed by content, `--- {a: 1}`) and may end with a
//! line `...`. Comment lines before a document's content are kept with it; one of the form
//! `# {"time": "<RFC 3339>", ...}` (as kspan's recordings write) gives the time the document was recorded.
//!
//! Limitation: a `---` at column 0 inside a top-level block scalar is taken as a separator (YAML requires block
//! scalar content of a mapping to be indented, so only a bare top-level scalar document can hit this).

use jiff::Timestamp;

/// A document of the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct YamlDocument {
    /// 1-based line of the first non-blank line of the document (its leading comment, if any).
    pub line: u64,
    /// 1-based line that `text` starts at, to turn the parser's positions into file lines.
    pub first_text_line: u64,
    /// The text of the document.
    pub text: String,
    /// The time from a leading `# {"time": ...}` comment.
    pub recorded_time: Option<Timestamp>,
}

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum YamlPiece {
    /// A document with content.
    Document(YamlDocument),
    /// A document larger than the limit; its text was dropped.
    Oversized {
        /// The line where it starts.
        line: u64,
        /// Its size in bytes.
        size: u64,
    },
}

/// Line-fed splitter of YAML documents.
#[derive(Debug)]
pub(crate) struct YamlSplitter {
    limit: usize,
    text: String,
    size: u64,
    first_text_line: Option<u64>,
    start_line: Option<u64>,
    has_content: bool,
    recorded_time: Option<Timestamp>,
}

/// The time of a kspan-style comment `# {"time": "...", ...}`.
fn comment_time(comment: &str) -> Option<Timestamp> {
    let json = comment.trim_start_matches('#').trim();
    if !json.starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get("time")?.as_str()?.parse().ok()
}

impl YamlSplitter {
    /// A splitter that keeps at most `limit` bytes of one document.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            text: String::new(),
            size: 0,
            first_text_line: None,
            start_line: None,
            has_content: false,
            recorded_time: None,
        }
    }

    fn flush(&mut self, out: &mut Vec<YamlPiece>) {
        if self.has_content {
            let line = self.start_line.unwrap_or(0);
            if self.size > self.limit as u64 {
                out.push(YamlPiece::Oversized {
                    line,
                    size: self.size,
                });
            } else {
                out.push(YamlPiece::Document(YamlDocument {
                    line,
                    first_text_line: self.first_text_line.unwrap_or(line),
                    text: std::mem::take(&mut self.text),
                    recorded_time: self.recorded_time,
                }));
            }
        }
        self.text.clear();
        self.size = 0;
        self.first_text_line = None;
        self.start_line = None;
        self.has_content = false;
        self.recorded_time = None;
    }

    fn append(&mut self, number: u64, line: &str) {
        if self.first_text_line.is_none() {
            self.first_text_line = Some(number);
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() && self.start_line.is_none() {
            self.start_line = Some(number);
        }
        if trimmed.starts_with('#') {
            if !self.has_content && self.recorded_time.is_none() {
                self.recorded_time = comment_time(trimmed);
            }
        } else if !trimmed.is_empty() {
            self.has_content = true;
        }
        self.size += line.len() as u64 + 1;
        if self.size <= self.limit as u64 {
            self.text.push_str(line);
            self.text.push('\n');
        } else {
            self.text = String::new();
        }
    }

    /// Feeds one line (without its line end) numbered `number`.
    pub(crate) fn feed_line(&mut self, number: u64, line: &str, out: &mut Vec<YamlPiece>) {
        if line == "..." || line.trim_end() == "..." {
            self.flush(out);
        } else if let Some(rest) = line.strip_prefix("---")
            && (rest.is_empty() || rest.starts_with([' ', '\t']))
        {
            self.flush(out);
            if !rest.trim().is_empty() {
                self.append(number, rest);
            }
        } else {
            self.append(number, line);
        }
    }

    /// Feeds a line numbered `number` of `bytes` bytes that was too long to keep: its document is too large.
    pub(crate) fn feed_oversized_line(&mut self, number: u64, bytes: u64) {
        if self.start_line.is_none() {
            self.start_line = Some(number);
        }
        if self.first_text_line.is_none() {
            self.first_text_line = Some(number);
        }
        self.has_content = true;
        self.size = self.size.saturating_add(bytes).max(self.limit as u64 + 1);
        self.text = String::new();
    }

    /// Ends the input.
    pub(crate) fn finish(&mut self, out: &mut Vec<YamlPiece>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, limit: usize) -> Vec<YamlPiece> {
        let mut splitter = YamlSplitter::new(limit);
        let mut out = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            splitter.feed_line(index as u64 + 1, line, &mut out);
        }
        splitter.finish(&mut out);
        out
    }

    #[test]
    fn documents_with_recorded_times() {
        let text = "---\n# {\"time\":\"2021-05-19T09:42:58.640117041Z\",\"style\":\"event\"}\na: 1\n---\n\n# plain\nb: 2\n...\n# only a comment\n--- {c: 3}\n";
        let pieces = split(text, 1000);
        assert_eq!(
            pieces,
            vec![
                YamlPiece::Document(YamlDocument {
                    line: 2,
                    first_text_line: 2,
                    text: "# {\"time\":\"2021-05-19T09:42:58.640117041Z\",\"style\":\"event\"}\na: 1\n"
                        .to_owned(),
                    recorded_time: "2021-05-19T09:42:58.640117041Z".parse().ok(),
                }),
                YamlPiece::Document(YamlDocument {
                    line: 6,
                    first_text_line: 5,
                    text: "\n# plain\nb: 2\n".to_owned(),
                    recorded_time: None,
                }),
                YamlPiece::Document(YamlDocument {
                    line: 10,
                    first_text_line: 10,
                    text: " {c: 3}\n\n".to_owned(),
                    recorded_time: None,
                }),
            ]
        );
    }

    #[test]
    fn an_oversized_line_makes_its_document_too_large() {
        let mut splitter = YamlSplitter::new(10);
        let mut out = Vec::new();
        splitter.feed_line(1, "a: 1", &mut out);
        splitter.feed_oversized_line(2, 50);
        splitter.feed_line(3, "b: 2", &mut out);
        splitter.feed_line(4, "---", &mut out);
        splitter.feed_line(5, "c: 3", &mut out);
        splitter.finish(&mut out);
        assert_eq!(out[0], YamlPiece::Oversized { line: 1, size: 60 });
        assert!(matches!(&out[1], YamlPiece::Document(doc) if doc.text == "c: 3\n"));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn oversized_documents_are_dropped() {
        let pieces = split("a: 0123456789\n---\nb: 1", 10);
        assert_eq!(pieces[0], YamlPiece::Oversized { line: 1, size: 14 });
        assert!(matches!(&pieces[1], YamlPiece::Document(doc) if doc.text == "b: 1\n"));
    }
}
