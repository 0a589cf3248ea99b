//! Chunks: the stored unit of layout version 2. The spans of one trace are kept in chunks of up to
//! [`MAX_CHUNK_SPANS`] spans (and about [`MAX_CHUNK_BYTES`] bytes), ordered by span id, each compressed with zstd
//! as one frame, with the store's dictionary when it has one (docs/store.md).
//!
//! A chunk's value (its key is the trace id and the id of its first span):
//!
//! ```text
//! u8      chunk format version (1)
//! varint  dictionary id, 0 for none
//! varint  payload length before compression
//! ...     one zstd frame of the payload
//! ```
//!
//! The payload is, per span in span id order: `u64` span id (little endian), `varint` length, the span's bytes
//! in the [`crate::codec`] form.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{self, CCtx, DCtx};

use crate::codec::{DecodeError, put_varint};

/// The chunk format written in front of every chunk.
pub(crate) const CHUNK_FORMAT: u8 = 1;
/// At most this many spans in a chunk; a larger one is split.
pub(crate) const MAX_CHUNK_SPANS: usize = 128;
/// A chunk whose payload grows beyond this is split (unless it holds one span).
pub(crate) const MAX_CHUNK_BYTES: usize = 32 * 1024;
/// The zstd level of chunks.
pub(crate) const COMPRESSION_LEVEL: i32 = 3;
/// A payload larger than this is refused on decoding: no writer makes one (a chunk of one huge span aside, which
/// is bounded by the codec's own sizes), so it is corruption, and must not make the reader allocate it.
const MAX_PAYLOAD_BYTES: u64 = 1 << 30;

/// The decoder dictionaries of a store, by id.
pub(crate) type Decoders = HashMap<u32, Arc<DecoderDictionary<'static>>>;

/// Compresses chunks, with one dictionary or none.
pub(crate) struct ChunkWriter<'d> {
    context: CCtx<'static>,
    dictionary: Option<(u32, &'d EncoderDictionary<'static>)>,
    payload: Vec<u8>,
}

impl<'d> ChunkWriter<'d> {
    pub(crate) fn new(dictionary: Option<(u32, &'d EncoderDictionary<'static>)>) -> Self {
        Self {
            context: CCtx::create(),
            dictionary,
            payload: Vec::new(),
        }
    }

    /// The stored value of a chunk holding `spans` (sorted by span id).
    pub(crate) fn encode<'s>(
        &mut self,
        spans: impl IntoIterator<Item = (u64, &'s [u8])>,
    ) -> Result<Vec<u8>, String> {
        self.payload.clear();
        for (id, bytes) in spans {
            self.payload.extend_from_slice(&id.to_le_bytes());
            put_varint(&mut self.payload, bytes.len() as u64);
            self.payload.extend_from_slice(bytes);
        }
        let mut out = Vec::with_capacity(16 + zstd_safe::compress_bound(self.payload.len()));
        out.push(CHUNK_FORMAT);
        put_varint(&mut out, u64::from(self.dictionary.map_or(0, |(id, _)| id)));
        put_varint(&mut out, self.payload.len() as u64);
        let header = out.len();
        let mut frame = Vec::with_capacity(zstd_safe::compress_bound(self.payload.len()));
        let result = match self.dictionary {
            Some((_, dictionary)) => {
                self.context
                    .compress_using_cdict(&mut frame, &self.payload, dictionary.as_cdict())
            }
            None => self
                .context
                .compress(&mut frame, &self.payload, COMPRESSION_LEVEL),
        };
        result.map_err(|code| zstd_safe::get_error_name(code).to_owned())?;
        out.truncate(header);
        out.extend_from_slice(&frame);
        Ok(out)
    }
}

thread_local! {
    /// The reader of this thread, kept between reads: a zstd context is costly to make, and most reads are of
    /// one or a few traces.
    static THREAD_READER: RefCell<Option<ChunkReader>> = const { RefCell::new(None) };
}

/// A payload buffer larger than this is not kept for the next read.
const KEPT_PAYLOAD_BYTES: usize = 1 << 20;

/// Runs `work` with this thread's [`ChunkReader`].
pub(crate) fn with_thread_reader<T>(work: impl FnOnce(&mut ChunkReader) -> T) -> T {
    // Taken out of the cell while in use, so a nested call makes its own instead of failing.
    let mut reader = THREAD_READER
        .with(|cell| cell.borrow_mut().take())
        .unwrap_or_else(ChunkReader::new);
    let out = work(&mut reader);
    if reader.payload.capacity() > KEPT_PAYLOAD_BYTES {
        reader.payload = Vec::new();
    }
    THREAD_READER.with(|cell| *cell.borrow_mut() = Some(reader));
    out
}

/// Decompresses chunks; reuses its buffers from one chunk to the next.
pub(crate) struct ChunkReader {
    context: DCtx<'static>,
    payload: Vec<u8>,
}

impl ChunkReader {
    pub(crate) fn new() -> Self {
        Self {
            context: DCtx::create(),
            payload: Vec::new(),
        }
    }

    /// Decompresses the chunk `value`; its spans are then read with [`ChunkReader::spans`].
    pub(crate) fn load(&mut self, value: &[u8], decoders: &Decoders) -> Result<(), DecodeError> {
        let mut cursor = value;
        let format = take_byte(&mut cursor)?;
        if format != CHUNK_FORMAT {
            return Err(DecodeError::UnknownChunkFormat { found: format });
        }
        let dictionary_id =
            u32::try_from(take_varint(&mut cursor, "dictionary id")?).map_err(|_| {
                DecodeError::Invalid {
                    field: "dictionary id",
                }
            })?;
        let length = take_varint(&mut cursor, "payload length")?;
        if length > MAX_PAYLOAD_BYTES {
            return Err(DecodeError::Invalid {
                field: "payload length",
            });
        }
        let length = usize::try_from(length).map_err(|_| DecodeError::Invalid {
            field: "payload length",
        })?;
        self.payload.clear();
        self.payload.reserve(length);
        let result = if dictionary_id == 0 {
            self.context.decompress(&mut self.payload, cursor)
        } else {
            let dictionary = decoders
                .get(&dictionary_id)
                .ok_or(DecodeError::UnknownDictionary { id: dictionary_id })?;
            self.context
                .decompress_using_ddict(&mut self.payload, cursor, dictionary.as_ddict())
        };
        let written =
            result.map_err(|code| DecodeError::Decompress(zstd_safe::get_error_name(code)))?;
        if written != length {
            return Err(DecodeError::Invalid {
                field: "payload length",
            });
        }
        Ok(())
    }

    /// The spans of the chunk last loaded: (span id, encoded span), in span id order.
    pub(crate) fn spans(&self) -> ChunkSpans<'_> {
        ChunkSpans {
            rest: &self.payload,
        }
    }
}

/// The spans of a loaded chunk.
pub(crate) struct ChunkSpans<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ChunkSpans<'a> {
    type Item = Result<(u64, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let entry = (|| {
            let id_bytes = self.rest.get(..8).ok_or(DecodeError::Truncated {
                field: "chunk span id",
            })?;
            let mut id = [0u8; 8];
            id.copy_from_slice(id_bytes);
            self.rest = &self.rest[8..];
            let len = take_varint(&mut self.rest, "chunk span length")?;
            let len = usize::try_from(len).map_err(|_| DecodeError::Invalid {
                field: "chunk span length",
            })?;
            let bytes = self.rest.get(..len).ok_or(DecodeError::Truncated {
                field: "chunk span",
            })?;
            self.rest = &self.rest[len..];
            Ok((u64::from_le_bytes(id), bytes))
        })();
        if entry.is_err() {
            // One error ends the chunk.
            self.rest = &[];
        }
        Some(entry)
    }
}

fn take_byte(cursor: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&first, rest) = cursor.split_first().ok_or(DecodeError::Truncated {
        field: "chunk format",
    })?;
    *cursor = rest;
    Ok(first)
}

fn take_varint(cursor: &mut &[u8], field: &'static str) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = cursor
            .split_first()
            .ok_or(DecodeError::Truncated { field })?;
        *cursor = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::Invalid { field })
}

/// Splits `count` spans of `bytes` payload bytes into the fewest chunks within the limits, of about equal
/// numbers of spans: the lengths of the pieces.
pub(crate) fn piece_lengths(count: usize, bytes: usize) -> Vec<usize> {
    let pieces = count
        .div_ceil(MAX_CHUNK_SPANS)
        .max(bytes.div_ceil(MAX_CHUNK_BYTES))
        .clamp(1, count.max(1));
    let base = count / pieces;
    let extra = count % pieces;
    (0..pieces).map(|i| base + usize::from(i < extra)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn chunks_round_trip_with_and_without_a_dictionary() {
        let spans: Vec<(u64, Vec<u8>)> = (1..=50u64)
            .map(|i| (i * 7, format!("span number {i} of the chunk").into_bytes()))
            .collect();
        let samples: Vec<Vec<u8>> = (0..2_000)
            .map(|i| {
                format!("span number {i} of the chunk, cluster prod, pods default").into_bytes()
            })
            .collect();
        let trained = zstd::dict::from_samples(&samples, 4096).unwrap();
        let encoder = EncoderDictionary::copy(&trained, COMPRESSION_LEVEL);
        let mut decoders = Decoders::new();
        decoders.insert(3, Arc::new(DecoderDictionary::copy(&trained)));
        for dictionary in [None, Some((3, &encoder))] {
            let mut writer = ChunkWriter::new(dictionary);
            let value = writer
                .encode(spans.iter().map(|(id, bytes)| (*id, bytes.as_slice())))
                .unwrap();
            let mut reader = ChunkReader::new();
            reader.load(&value, &decoders).unwrap();
            let back: Vec<(u64, Vec<u8>)> = reader
                .spans()
                .map(|entry| entry.map(|(id, bytes)| (id, bytes.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(back, spans);
            // Every truncation is an error, never a panic.
            for len in 0..value.len() {
                let mut reader = ChunkReader::new();
                let loaded = reader.load(&value[..len], &decoders);
                assert!(
                    loaded.is_err() || reader.spans().any(|entry| entry.is_err()),
                    "prefix {len}"
                );
            }
        }
        let mut writer = ChunkWriter::new(Some((3, &encoder)));
        let value = writer.encode([(1, &b"x"[..])]).unwrap();
        let mut reader = ChunkReader::new();
        assert_eq!(
            reader.load(&value, &Decoders::new()),
            Err(DecodeError::UnknownDictionary { id: 3 })
        );
    }

    #[test]
    fn pieces_respect_both_limits() {
        assert_eq!(piece_lengths(1, 10), vec![1]);
        assert_eq!(piece_lengths(128, 10), vec![128]);
        assert_eq!(piece_lengths(129, 10), vec![65, 64]);
        assert_eq!(piece_lengths(10, 3 * MAX_CHUNK_BYTES), vec![4, 3, 3]);
        assert_eq!(piece_lengths(1, 10 * MAX_CHUNK_BYTES), vec![1]);
    }
}
