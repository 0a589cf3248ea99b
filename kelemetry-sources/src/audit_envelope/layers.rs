//! The encodings envelopes wrap their data in: gzip (bounded) and base64.

use std::io::Read;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use flate2::read::MultiGzDecoder;

use crate::audit_intake::RejectReason;

/// The first bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Standard base64, with or without padding (Pub/Sub and Kinesis pad; some tools strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Whether `bytes` start like gzip data.
pub(super) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Why gzip data could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum GunzipError {
    /// The data decompresses to more than the limit.
    #[error("gzip data decompresses to more than {limit} bytes (the limit)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The data is damaged or cut.
    #[error("damaged gzip data: {0}")]
    Damaged(#[source] std::io::Error),
}

impl GunzipError {
    /// The rejection reason of the error.
    pub(super) fn reason(&self) -> RejectReason {
        match self {
            Self::TooLarge { .. } => RejectReason::DocumentTooLarge,
            Self::Damaged(_) => RejectReason::InvalidEnvelope,
        }
    }
}

/// Decompresses gzip data (one member or several back to back) into at most `limit` bytes: a gzip bomb is
/// stopped after `limit + 1` bytes of output.
pub(super) fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(bytes)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(GunzipError::Damaged)?;
    if out.len() > limit {
        return Err(GunzipError::TooLarge { limit });
    }
    Ok(out)
}

/// The bytes `text` encodes when it is base64 (standard alphabet, padding optional, line breaks allowed); `None`
/// when it is not.
pub(super) fn base64(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() < 4 {
        return None;
    }
    let is_base64 = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=');
    if text.iter().all(is_base64) {
        return BASE64.decode(text).ok();
    }
    if !text
        .iter()
        .all(|byte| is_base64(byte) || matches!(byte, b'\n' | b'\r'))
    {
        return None;
    }
    let joined: Vec<u8> = text
        .iter()
        .copied()
        .filter(|byte| !matches!(byte, b'\n' | b'\r'))
        .collect();
    BASE64.decode(joined).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_members_back_to_back_are_one_text() {
        let mut data = gzip(b"{\"a\":1}");
        data.extend(gzip(b"{\"b\":2}"));
        assert!(is_gzip(&data));
        assert_eq!(gunzip(&data, 100).unwrap(), b"{\"a\":1}{\"b\":2}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "{} bytes", bomb.len());
        let error = gunzip(&bomb, 1024 * 1024).unwrap_err();
        assert_eq!(
            error.to_string(),
            "gzip data decompresses to more than 1048576 bytes (the limit)"
        );
        assert_eq!(error.reason(), RejectReason::DocumentTooLarge);
        // Exactly at the limit is fine.
        assert_eq!(gunzip(&gzip(b"12345"), 5).unwrap(), b"12345");
    }

    #[test]
    fn damaged_gzip_is_an_error() {
        let mut data = gzip(b"{\"a\":1}");
        data.truncate(data.len() - 6);
        let error = gunzip(&data, 100).unwrap_err();
        assert!(
            error.to_string().starts_with("damaged gzip data: "),
            "{error}"
        );
    }

    #[test]
    fn base64_with_and_without_padding_and_line_breaks() {
        assert_eq!(base64(b"eyJhIjoxfQ==").unwrap(), b"{\"a\":1}");
        assert_eq!(base64(b"eyJhIjoxfQ").unwrap(), b"{\"a\":1}");
        assert_eq!(base64(b"eyJhIjox\nfQ==").unwrap(), b"{\"a\":1}");
        assert_eq!(base64(b"not base64!"), None);
        assert_eq!(base64(b"{\"a\":1}"), None);
        assert_eq!(base64(b"abc"), None);
    }
}
