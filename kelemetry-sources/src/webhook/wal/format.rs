//! The bytes of a write-ahead log segment: a header, then framed entries.
//!
//! ```text
//! segment: "KLWAL\0\0\x01" (8 bytes: name, format version 1), then entries one after another
//! entry:   magic "KWE1" | payload length (u32 LE) | CRC-32 of length and payload (u32 LE) | payload
//! payload: kind (u8, 1 = an audit request body) | cluster length (u32 LE) | cluster (UTF-8) | body
//! ```
//!
//! [`scan`] reads a segment back: every entry whose frame and checksum hold, and every stretch that does not
//! ([`Damage`]). After a stretch that does not hold, it looks for the next magic followed by a valid frame, so one
//! damaged entry in the middle does not hide the entries after it; a stretch with no valid entry after it is the
//! torn tail of a write that a crash interrupted.

use std::ops::Range;

/// The first bytes of every segment.
pub(super) const SEGMENT_HEADER: &[u8; 8] = b"KLWAL\0\0\x01";
/// The first bytes of every entry.
const ENTRY_MAGIC: &[u8; 4] = b"KWE1";
/// Magic, length and checksum.
const FRAME_HEAD: usize = 12;
/// The kind of entry holding an audit request body.
const KIND_AUDIT_BODY: u8 = 1;
/// Kind and cluster length.
const PAYLOAD_HEAD: usize = 5;

/// One entry read back: the cluster a batch was posted for and its request body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// The cluster of the batch (from the request path, or the default cluster).
    pub(crate) cluster: &'a str,
    /// The request body, as it arrived.
    pub(crate) body: &'a [u8],
}

/// The bytes of one entry, ready to append to a segment.
pub(super) fn encode(cluster: &str, body: &[u8]) -> Vec<u8> {
    let payload_len = PAYLOAD_HEAD + cluster.len() + body.len();
    let mut frame = Vec::with_capacity(FRAME_HEAD + payload_len);
    frame.extend_from_slice(ENTRY_MAGIC);
    // Bodies are bounded by the webhook's body limit (a `usize` well under 4 GiB in practice); a payload that
    // does not fit a u32 is refused by the caller before it gets here.
    let length = u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes();
    frame.extend_from_slice(&length);
    frame.extend_from_slice(&[0; 4]);
    frame.push(KIND_AUDIT_BODY);
    let cluster_len = u32::try_from(cluster.len()).unwrap_or(u32::MAX);
    frame.extend_from_slice(&cluster_len.to_le_bytes());
    frame.extend_from_slice(cluster.as_bytes());
    frame.extend_from_slice(body);
    let checksum = checksum(&length, &frame[FRAME_HEAD..]);
    frame[8..FRAME_HEAD].copy_from_slice(&checksum.to_le_bytes());
    frame
}

/// The largest payload an entry can hold.
pub(super) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// The size of the entry [`encode`] makes for `cluster` and a body of `body_len` bytes.
pub(super) fn encoded_len(cluster: &str, body_len: usize) -> usize {
    FRAME_HEAD + PAYLOAD_HEAD + cluster.len() + body_len
}

fn checksum(length: &[u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(length);
    hasher.update(payload);
    hasher.finalize()
}

/// A stretch of a segment that is not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Where it starts, in bytes from the start of the segment.
    pub(crate) offset: u64,
    /// How long it is.
    pub(crate) bytes: u64,
    /// Whether it runs to the end of the segment (a torn tail, cut off when found).
    pub(crate) tail: bool,
}

/// What a segment holds.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The payloads of the valid entries, in order.
    pub(crate) entries: Vec<Range<usize>>,
    /// The stretches that are not valid entries, in order.
    pub(crate) damage: Vec<Damage>,
    /// Where the segment's valid content ends: its length without a torn tail.
    pub(crate) valid_len: usize,
}

/// Reads the entries of a whole segment; see the module documentation.
pub(crate) fn scan(segment: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = if segment.starts_with(SEGMENT_HEADER) {
        SEGMENT_HEADER.len()
    } else {
        0
    };
    let mut damaged_from = (at == 0 && !segment.is_empty()).then_some(0);
    while at < segment.len() {
        if let Some(payload) = frame_at(segment, at) {
            if let Some(from) = damaged_from.take().filter(|&from| from < at) {
                scan.damage.push(Damage {
                    offset: from as u64,
                    bytes: (at - from) as u64,
                    tail: false,
                });
            }
            at = payload.end;
            scan.entries.push(payload);
            continue;
        }
        damaged_from.get_or_insert(at);
        at = next_magic(segment, at + 1).unwrap_or(segment.len());
    }
    scan.valid_len = segment.len();
    if let Some(from) = damaged_from {
        scan.damage.push(Damage {
            offset: from as u64,
            bytes: (segment.len() - from) as u64,
            tail: true,
        });
        scan.valid_len = from;
    }
    scan
}

/// The payload range of a valid entry starting at `at`, if there is one.
fn frame_at(segment: &[u8], at: usize) -> Option<Range<usize>> {
    let head = segment.get(at..at.checked_add(FRAME_HEAD)?)?;
    if &head[..4] != ENTRY_MAGIC {
        return None;
    }
    let length: [u8; 4] = head[4..8].try_into().ok()?;
    let expected = u32::from_le_bytes(head[8..12].try_into().ok()?);
    let start = at + FRAME_HEAD;
    let end = start.checked_add(usize::try_from(u32::from_le_bytes(length)).ok()?)?;
    let payload = segment.get(start..end)?;
    if checksum(&length, payload) != expected || decode(payload).is_none() {
        return None;
    }
    Some(start..end)
}

/// Where the next entry magic starts, at `from` or after.
fn next_magic(segment: &[u8], from: usize) -> Option<usize> {
    let rest = segment.get(from..)?;
    rest.windows(ENTRY_MAGIC.len())
        .position(|window| window == ENTRY_MAGIC)
        .map(|found| from + found)
}

/// The entry in a payload whose checksum held; `None` for a kind this version does not know, or a cluster that
/// is not UTF-8 or runs past the payload.
pub(crate) fn decode(payload: &[u8]) -> Option<Entry<'_>> {
    let (&kind, rest) = payload.split_first()?;
    if kind != KIND_AUDIT_BODY {
        return None;
    }
    let cluster_len = usize::try_from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    let rest = &rest[4..];
    let cluster = std::str::from_utf8(rest.get(..cluster_len)?).ok()?;
    Some(Entry {
        cluster,
        body: &rest[cluster_len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut bytes = SEGMENT_HEADER.to_vec();
        for (cluster, body) in entries {
            bytes.extend(encode(cluster, body));
        }
        bytes
    }

    fn entries<'a>(segment: &'a [u8], scan: &Scan) -> Vec<Entry<'a>> {
        scan.entries
            .iter()
            .map(|range| decode(&segment[range.clone()]).unwrap())
            .collect()
    }

    #[test]
    fn entries_read_back_in_order() {
        let bytes = segment(&[("prod", b"{\"a\":1}"), ("", b""), ("dev", b"{}")]);
        let scan = scan(&bytes);
        assert_eq!(
            entries(&bytes, &scan),
            [
                Entry {
                    cluster: "prod",
                    body: b"{\"a\":1}"
                },
                Entry {
                    cluster: "",
                    body: b""
                },
                Entry {
                    cluster: "dev",
                    body: b"{}"
                },
            ]
        );
        assert!(scan.damage.is_empty());
        assert_eq!(scan.valid_len, bytes.len());
        assert_eq!(encoded_len("prod", 7), encode("prod", b"{\"a\":1}").len());
    }

    #[test]
    fn a_torn_tail_is_found_at_every_cut() {
        let whole = segment(&[("c", b"first"), ("c", b"second entry")]);
        let second_at = SEGMENT_HEADER.len() + encoded_len("c", 5);
        for cut in second_at + 1..whole.len() {
            let bytes = &whole[..cut];
            let scan = scan(bytes);
            assert_eq!(entries(bytes, &scan).len(), 1, "cut at {cut}");
            assert_eq!(
                scan.damage,
                [Damage {
                    offset: second_at as u64,
                    bytes: (cut - second_at) as u64,
                    tail: true
                }],
                "cut at {cut}"
            );
            assert_eq!(scan.valid_len, second_at);
        }
        // Cut exactly between entries: nothing is damaged.
        let found = scan(&whole[..second_at]);
        assert!(found.damage.is_empty());
        assert_eq!(found.entries.len(), 1);
    }

    #[test]
    fn a_checksum_mismatch_skips_only_that_entry() {
        let mut bytes = segment(&[("c", b"first"), ("c", b"second"), ("c", b"third")]);
        let second_at = SEGMENT_HEADER.len() + encoded_len("c", 5);
        // Flip one bit of the second body.
        let flipped = second_at + encoded_len("c", 6) - 1;
        bytes[flipped] ^= 0x01;
        let scan = scan(&bytes);
        let bodies: Vec<&[u8]> = entries(&bytes, &scan).iter().map(|e| e.body).collect();
        assert_eq!(bodies, [&b"first"[..], &b"third"[..]]);
        assert_eq!(
            scan.damage,
            [Damage {
                offset: second_at as u64,
                bytes: encoded_len("c", 6) as u64,
                tail: false
            }]
        );
        assert_eq!(scan.valid_len, bytes.len());
    }

    #[test]
    fn zeros_and_garbage_are_never_entries() {
        let mut bytes = segment(&[("c", b"kept")]);
        let valid = bytes.len();
        // What a crash can leave: a file extended with zeros, or stale bytes holding a magic.
        bytes.extend([0u8; 64]);
        bytes.extend(b"KWE1\x05\0\0\0garbage");
        let scan = scan(&bytes);
        assert_eq!(scan.entries.len(), 1);
        assert_eq!(
            scan.damage,
            [Damage {
                offset: valid as u64,
                bytes: (bytes.len() - valid) as u64,
                tail: true
            }]
        );
        assert_eq!(scan.valid_len, valid);
    }

    #[test]
    fn a_bad_header_is_damage_but_later_entries_are_kept() {
        let mut bytes = segment(&[("c", b"kept")]);
        bytes[0] = b'X';
        let found = scan(&bytes);
        assert_eq!(found.entries.len(), 1);
        assert_eq!(
            found.damage,
            [Damage {
                offset: 0,
                bytes: SEGMENT_HEADER.len() as u64,
                tail: false
            }]
        );
        // Only a part of a header: the whole file is a torn tail.
        let found = scan(&SEGMENT_HEADER[..5]);
        assert_eq!((found.entries.len(), found.valid_len), (0, 0));
        assert!(found.damage[0].tail);
        // An empty file holds nothing and is not damaged.
        let found = scan(&[]);
        assert!(found.damage.is_empty() && found.entries.is_empty());
    }
}
