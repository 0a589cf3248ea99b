//! Splitting a JSON text into its top-level documents, line by line, without parsing them.
//!
//! It handles one document per line (JSON lines), documents pretty-printed over many lines, and several
//! documents on one line (`{...}{...}`). It tracks only nesting and strings, so it finds where a document ends in
//! one pass; the document is then parsed by whoever asked.
//!
//! Recovery from damage, so that one bad record does not swallow the rest of a file:
//! - a line that starts a document and ends inside it is a truncated JSON line, unless the line holds only the
//!   opening `{` or `[` (how pretty printers start a document);
//! - inside a pretty-printed document, a line starting with `{` or `[` at column 0 starts a new document (pretty
//!   printers indent nested values), so the unfinished one is reported truncated;
//! - a JSON string cannot hold a raw line break, so a line that ends inside a string ends the document as
//!   truncated;
//! - text outside any document is reported and the rest of its line skipped.

use crate::audit_intake::{RecordRejection, RejectReason};

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonPiece {
    /// A complete top-level document, starting on `line`.
    Document {
        /// 1-based line where the document starts.
        line: u64,
        /// Its text.
        text: Vec<u8>,
    },
    /// Text outside any document.
    Garbage {
        /// The line.
        line: u64,
        /// The start of the text (at most 120 characters).
        text: String,
    },
    /// A document that ended before it was complete.
    Truncated {
        /// The line where it started.
        line: u64,
    },
    /// A document larger than the limit; its text was dropped.
    Oversized {
        /// The line where it started.
        line: u64,
        /// Its size in bytes.
        size: u64,
    },
}

impl JsonPiece {
    /// The document and the line where it starts; for any other piece, that line and why it cannot be used
    /// (a document over `limit` bytes is too large).
    pub(crate) fn into_document(
        self,
        limit: usize,
    ) -> Result<(u64, Vec<u8>), (u64, RecordRejection)> {
        match self {
            Self::Document { line, text } => Ok((line, text)),
            Self::Garbage { line, text } => Err((
                line,
                RecordRejection::new(RejectReason::InvalidJson, format!("not JSON: {text:?}")),
            )),
            Self::Truncated { line } => Err((
                line,
                RecordRejection::new(
                    RejectReason::TruncatedJson,
                    "the document ends before it is complete",
                ),
            )),
            Self::Oversized { line, size } => Err((line, RecordRejection::too_large(size, limit))),
        }
    }
}

/// Line-fed splitter of top-level JSON documents.
#[derive(Debug)]
pub(crate) struct JsonSplitter {
    limit: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    text: Vec<u8>,
    size: u64,
    start_line: u64,
}

const GARBAGE_SHOWN: usize = 120;

impl JsonSplitter {
    /// A splitter that keeps at most `limit` bytes of one document.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            depth: 0,
            in_string: false,
            escaped: false,
            text: Vec::new(),
            size: 0,
            start_line: 0,
        }
    }

    /// Whether no document is in progress (the next non-space byte starts a new one).
    pub(crate) fn is_between_documents(&self) -> bool {
        self.depth == 0
    }

    fn reset(&mut self) {
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
        self.text.clear();
        self.size = 0;
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.size <= self.limit as u64 {
            self.text.extend_from_slice(bytes);
        } else {
            self.text = Vec::new();
        }
    }

    fn finish_document(&mut self, out: &mut Vec<JsonPiece>) {
        let line = self.start_line;
        if self.size > self.limit as u64 {
            out.push(JsonPiece::Oversized {
                line,
                size: self.size,
            });
        } else {
            out.push(JsonPiece::Document {
                line,
                text: std::mem::take(&mut self.text),
            });
        }
        self.reset();
    }

    /// Feeds one line (without its line end) numbered `number`.
    pub(crate) fn feed_line(&mut self, number: u64, line: &[u8], out: &mut Vec<JsonPiece>) {
        if self.depth > 0 && matches!(line.first(), Some(b'{' | b'[')) {
            out.push(JsonPiece::Truncated {
                line: self.start_line,
            });
            self.reset();
        }
        let mut started_here = false;
        let mut position = 0;
        while position < line.len() {
            if self.depth == 0 {
                let byte = line[position];
                if byte.is_ascii_whitespace() {
                    position += 1;
                    continue;
                }
                if byte == b'{' || byte == b'[' {
                    self.start_line = number;
                    started_here = true;
                } else {
                    let rest = String::from_utf8_lossy(&line[position..]);
                    out.push(JsonPiece::Garbage {
                        line: number,
                        text: rest.chars().take(GARBAGE_SHOWN).collect(),
                    });
                    return;
                }
            }
            // Inside a document: scan to its end or to the end of the line.
            let begin = position;
            let mut complete = false;
            while position < line.len() {
                let byte = line[position];
                position += 1;
                if self.in_string {
                    if self.escaped {
                        self.escaped = false;
                    } else if byte == b'\\' {
                        self.escaped = true;
                    } else if byte == b'"' {
                        self.in_string = false;
                    }
                    continue;
                }
                match byte {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            complete = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            self.keep(&line[begin..position]);
            if complete {
                self.finish_document(out);
                started_here = false;
            }
        }
        if self.depth > 0 {
            let only_opener =
                started_here && matches!(String::from_utf8_lossy(&self.text).trim(), "{" | "[");
            if self.in_string || (started_here && !only_opener) {
                out.push(JsonPiece::Truncated {
                    line: self.start_line,
                });
                self.reset();
            } else {
                self.keep(b"\n");
            }
        }
    }

    /// Ends the input: an unfinished document is reported truncated.
    pub(crate) fn finish(&mut self, out: &mut Vec<JsonPiece>) {
        if self.depth > 0 {
            out.push(JsonPiece::Truncated {
                line: self.start_line,
            });
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str, limit: usize) -> Vec<JsonPiece> {
        let mut splitter = JsonSplitter::new(limit);
        let mut out = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            splitter.feed_line(index as u64 + 1, line.as_bytes(), &mut out);
        }
        splitter.finish(&mut out);
        out
    }

    fn document(line: u64, text: &str) -> JsonPiece {
        JsonPiece::Document {
            line,
            text: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn json_lines() {
        let pieces = split("{\"a\":1}\n\n  {\"b\":\"}{\\\"\"}  \n[1,2]", 1000);
        assert_eq!(
            pieces,
            vec![
                document(1, "{\"a\":1}"),
                document(3, "{\"b\":\"}{\\\"\"}"),
                document(4, "[1,2]"),
            ]
        );
    }

    #[test]
    fn pretty_documents_and_several_per_line() {
        let pieces = split(
            "{\n  \"a\": {\n    \"b\": [1]\n  }\n}\n{\n}{\"c\":2}{\"d\":3}",
            1000,
        );
        assert_eq!(
            pieces,
            vec![
                document(1, "{\n  \"a\": {\n    \"b\": [1]\n  }\n}"),
                document(6, "{\n}"),
                document(7, "{\"c\":2}"),
                document(7, "{\"d\":3}"),
            ]
        );
    }

    #[test]
    fn damage_is_contained() {
        let text = "{\"a\":1\n{\"ok\":1}\nnot json\n{\n  \"x\": 1,\n{\"ok\":2}\n{\"s\":\"open\n{\"ok\":3}\n{\n  \"y\": [";
        assert_eq!(
            split(text, 1000),
            vec![
                JsonPiece::Truncated { line: 1 },
                document(2, "{\"ok\":1}"),
                JsonPiece::Garbage {
                    line: 3,
                    text: "not json".to_owned()
                },
                JsonPiece::Truncated { line: 4 },
                document(6, "{\"ok\":2}"),
                JsonPiece::Truncated { line: 7 },
                document(8, "{\"ok\":3}"),
                JsonPiece::Truncated { line: 9 },
            ]
        );
    }

    #[test]
    fn oversized_documents_are_dropped_but_skipped_whole() {
        let pieces = split(
            "{\"big\":\"0123456789\"}\n{\n \"big\": \"0123456789\"\n}\n{}",
            12,
        );
        assert_eq!(
            pieces,
            vec![
                JsonPiece::Oversized { line: 1, size: 20 },
                JsonPiece::Oversized { line: 2, size: 24 },
                document(5, "{}"),
            ]
        );
    }
}
