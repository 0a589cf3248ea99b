//! Reading a file line by line with a bound on what one line may hold in memory.

use std::future::Future;
use std::io::{self, Read};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use kelemetry_core::SourceError;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, ReadBuf};
use tokio::task::JoinHandle;

/// Bytes read from a file at once: one trip to a blocking thread per this many bytes.
const CHUNK_BYTES: usize = 256 * 1024;

/// Opens the file at `path` for reading in chunks of [`CHUNK_BYTES`]; also returns its name as rejections and
/// errors give it.
pub(crate) async fn open_buffered(path: &Path) -> Result<(FileChunks, String), SourceError> {
    let origin = path.display().to_string();
    match tokio::fs::File::open(path).await {
        Ok(file) => Ok((FileChunks::new(file.into_std().await, CHUNK_BYTES), origin)),
        Err(error) => Err(SourceError::io(origin, error)),
    }
}

/// What a read on a blocking thread hands back: the file, the buffer, and how many bytes it read into it.
type ChunkRead = (std::fs::File, Vec<u8>, io::Result<usize>);

/// A file read on tokio's blocking threads in large chunks, straight into the buffer that [`AsyncBufRead`] lends
/// out. (`tokio::fs::File` reads into a buffer of its own and copies from there into the caller's: a second copy
/// of every byte, and one blocking trip per caller's buffer.)
pub(crate) struct FileChunks {
    state: ChunkState,
    /// What of the buffer is read: `buffer[consumed..filled]` is not consumed yet.
    consumed: usize,
    filled: usize,
}

/// Where the file and its buffer are.
enum ChunkState {
    /// Here: no read is under way.
    Idle(std::fs::File, Vec<u8>),
    /// With a read under way on a blocking thread.
    Reading(JoinHandle<ChunkRead>),
    /// Gone with a blocking thread that did not finish its read (it panicked, or the runtime shut down).
    Lost,
}

impl FileChunks {
    /// Reads `file` in chunks of `chunk` bytes (at least one).
    pub(crate) fn new(file: std::fs::File, chunk: usize) -> Self {
        Self {
            state: ChunkState::Idle(file, vec![0; chunk.max(1)]),
            consumed: 0,
            filled: 0,
        }
    }
}

/// Reads once into `buffer`, again if interrupted by a signal.
fn read_chunk(file: &mut std::fs::File, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buffer) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            read => return read,
        }
    }
}

impl AsyncBufRead for FileChunks {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.consumed >= this.filled {
            // All read is consumed: start reading the next chunk, unless a read is under way (or lost) already.
            this.state = match std::mem::replace(&mut this.state, ChunkState::Lost) {
                ChunkState::Idle(mut file, mut buffer) => {
                    ChunkState::Reading(tokio::task::spawn_blocking(move || {
                        let read = read_chunk(&mut file, &mut buffer);
                        (file, buffer, read)
                    }))
                }
                other => other,
            };
        }
        if let ChunkState::Reading(reading) = &mut this.state {
            let joined = ready!(Pin::new(reading).poll(cx));
            this.consumed = 0;
            this.filled = 0;
            let (file, buffer, read) = match joined {
                Ok(parts) => parts,
                Err(join) => {
                    this.state = ChunkState::Lost;
                    return Poll::Ready(Err(io::Error::other(join)));
                }
            };
            this.state = ChunkState::Idle(file, buffer);
            this.filled = read?;
        }
        match &this.state {
            ChunkState::Idle(_, buffer) => Poll::Ready(Ok(&buffer[this.consumed..this.filled])),
            // A read under way was waited for above, so only a lost one comes here.
            ChunkState::Reading(_) | ChunkState::Lost => Poll::Ready(Err(io::Error::other(
                "an earlier read of this file was lost",
            ))),
        }
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        this.consumed = (this.consumed + amount).min(this.filled);
    }
}

impl AsyncRead for FileChunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let taken = available.len().min(out.remaining());
        out.put_slice(&available[..taken]);
        self.consume(taken);
        Poll::Ready(Ok(()))
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

    /// Every line of a file read in chunks smaller than its lines, and the end of the file.
    #[tokio::test]
    async fn lines_span_chunks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lines");
        let lines: Vec<String> = (0..50)
            .map(|n| format!("line {n} {}", "x".repeat(n)))
            .collect();
        std::fs::write(&path, lines.join("\n")).expect("writes");
        let file = std::fs::File::open(&path).expect("opens");
        let mut reader = LineReader::new(FileChunks::new(file, 7));
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(info) = reader.next_line(&mut line, 1000).await.expect("reads") {
            assert!(!info.overflow);
            seen.push(String::from_utf8(line.clone()).expect("utf-8"));
        }
        assert_eq!(seen, lines);
        assert!(
            reader
                .next_line(&mut line, 1000)
                .await
                .expect("reads")
                .is_none()
        );
    }

    /// A failed read is an error (a folder opens as a file but cannot be read), and stays one.
    #[tokio::test]
    async fn a_failed_read_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (chunks, origin) = open_buffered(dir.path()).await.expect("a folder opens");
        assert_eq!(origin, dir.path().display().to_string());
        let mut reader = LineReader::new(chunks);
        let mut line = Vec::new();
        assert!(reader.next_line(&mut line, 1000).await.is_err());
        assert!(reader.next_line(&mut line, 1000).await.is_err());
    }

    #[tokio::test]
    async fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.log");
        let Err(error) = open_buffered(&missing).await else {
            panic!("a missing file opened");
        };
        assert!(error.to_string().contains("missing.log"), "{error}");
    }

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
