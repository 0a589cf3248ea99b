//! Reading a file line by line with a bound on what one line may hold in memory.

use std::path::Path;

use kelemetry_core::SourceError;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// Opens the file at `path` for reading in 64 KiB chunks; also returns its name as rejections and errors give
/// it.
pub(crate) async fn open_buffered(
    path: &Path,
) -> Result<(BufReader<tokio::fs::File>, String), SourceError> {
    let origin = path.display().to_string();
    match tokio::fs::File::open(path).await {
        Ok(file) => Ok((BufReader::with_capacity(64 * 1024, file), origin)),
        Err(error) => Err(SourceError::io(origin, error)),
    }
}

/// One line read by [`LineReader::next_line`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineInfo {
    /// 1-based line number.
    pub number: u64,
    /// Bytes consumed from the input, with the line end.
    pub bytes: u64,
    /// The line was longer than the limit; only its beginning was kept.
    pub overflow: bool,
}

/// Reads lines (ending in `\n`, an optional `\r` before it removed) keeping at most `limit` bytes of each.
pub(crate) struct LineReader<R> {
    reader: R,
    number: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self { reader, number: 0 }
    }

    /// The next line into `line` (cleared first), or `None` at the end of the input.
    pub(crate) async fn next_line(
        &mut self,
        line: &mut Vec<u8>,
        limit: usize,
    ) -> std::io::Result<Option<LineInfo>> {
        line.clear();
        let mut bytes = 0u64;
        let mut overflow = false;
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                if bytes == 0 {
                    return Ok(None);
                }
                break;
            }
            let (content, used, done) = match memchr::memchr(b'\n', chunk) {
                Some(end) => (&chunk[..end], end + 1, true),
                None => (chunk, chunk.len(), false),
            };
            let room = limit.saturating_sub(line.len());
            if content.len() > room {
                overflow = true;
            }
            line.extend_from_slice(&content[..content.len().min(room)]);
            bytes += used as u64;
            self.reader.consume(used);
            if done {
                break;
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.number += 1;
        Ok(Some(LineInfo {
            number: self.number,
            bytes,
            overflow,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_numbered_and_bounded() {
        let input: &[u8] = b"one\r\n\n0123456789abcdef\nlast";
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(4, input));
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(info) = reader.next_line(&mut line, 10).await.expect("reads") {
            seen.push((info, String::from_utf8_lossy(&line).into_owned()));
        }
        let expect = |number, bytes, overflow, text: &str| {
            (
                LineInfo {
                    number,
                    bytes,
                    overflow,
                },
                text.to_owned(),
            )
        };
        assert_eq!(
            seen,
            vec![
                expect(1, 5, false, "one"),
                expect(2, 1, false, ""),
                expect(3, 17, true, "0123456789"),
                expect(4, 4, false, "last"),
            ]
        );
    }
}
