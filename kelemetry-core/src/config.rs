//! Reading configuration files (feature `config`): the serde helpers for durations and sizes that every
//! component's configuration type uses, so that a file reads them the same way everywhere.
//!
//! - [`duration`]: `250ms`, `5s`, `2m`, `1h`, `1h 30m` (parsed by `humantime`); a bare number is refused, because
//!   its unit would be a guess.
//! - [`size`]: a number of bytes, or `512KiB`, `16MiB`, `1GiB` (powers of 1024) and `100KB`, `16MB`, `2GB`
//!   (powers of 1000) (parsed by `bytesize`).
//!
//! Both say what was expected when a value is wrong (`unknown unit "furlongs" in "3 furlongs"`), and serde
//! formats (such as `serde_yaml_ng`) add where it was.
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct Settings {
//!     #[serde(with = "kelemetry_core::config::duration")]
//!     read_timeout: Duration,
//!     #[serde(with = "kelemetry_core::config::size")]
//!     body_limit: usize,
//! }
//!
//! let settings: Settings = serde_json::from_str(r#"{"readTimeout": "250ms", "bodyLimit": "16MiB"}"#)?;
//! assert_eq!(settings.read_timeout, Duration::from_millis(250));
//! assert_eq!(settings.body_limit, 16 << 20);
//!
//! let wrong = serde_json::from_str::<Settings>(r#"{"readTimeout": 5, "bodyLimit": 1}"#);
//! assert!(wrong.is_err_and(|err| err.to_string().contains(r#""5" has no unit"#)));
//! # Ok::<(), serde_json::Error>(())
//! ```

/// Durations written with a unit: `#[serde(with = "kelemetry_core::config::duration")]` on a
/// [`Duration`](std::time::Duration) field.
pub mod duration {
    use std::fmt;
    use std::time::Duration;

    use humantime_serde::re::humantime;
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    const EXPECTED: &str = "a duration like 250ms, 5s, 2m or 1h";

    /// Reads a duration written with a unit (`250ms`, `5s`, `2m`, `1h`, `1h 30m`).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }

    /// Writes a duration the way [`deserialize`] reads it (`1m 30s`).
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*duration))
    }

    /// Parses `text`, or says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        humantime::parse_duration(text).map_err(|err| match err {
            humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => no_unit(text),
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit {unit:?} in {text:?}: use ms, s, m or h")
            }
            other => format!("{text:?} is not {EXPECTED} ({other})"),
        })
    }

    fn no_unit(number: &str) -> String {
        format!("\"{number}\" has no unit: write it like 250ms, 5s, 2m or 1h")
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(E::custom(no_unit(&n.to_string())))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(E::custom(no_unit(&n.to_string())))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(no_unit(&n.to_string())))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            parse(text).map_err(E::custom)
        }
    }
}

/// Sizes in bytes, with or without a unit: `#[serde(with = "kelemetry_core::config::size")]` on a `usize` field.
pub mod size {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    const EXPECTED: &str = "a size like 512KiB, 16MiB or 1GiB, or a number of bytes";

    /// Reads a number of bytes, or a size with a unit (`512KiB`, `16MiB`, `1GiB`, `100KB`, `2GB`).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }

    /// Writes a size as its number of bytes.
    pub fn serialize<S: Serializer>(size: &usize, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*size as u64)
    }

    /// Parses `text`, or says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<usize, String> {
        let text = text.trim();
        match text.parse::<bytesize::ByteSize>() {
            Ok(size) => {
                usize::try_from(size.as_u64()).map_err(|_| format!("{text:?} is too large"))
            }
            Err(_) => {
                let unit = text.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
                if unit.len() == text.len() {
                    Err(format!("{text:?} is not {EXPECTED}"))
                } else {
                    Err(format!(
                        "unknown unit {:?} in {text:?}: use KiB, MiB, GiB (or KB, MB, GB)",
                        unit.trim()
                    ))
                }
            }
        }
    }

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
            usize::try_from(n).map_err(|_| E::custom(format!("{n} bytes is too large")))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
            u64::try_from(n)
                .map_err(|_| E::custom("a size cannot be negative"))
                .and_then(|n| self.visit_u64(n))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<usize, E> {
            parse(text).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{duration, size};

    #[test]
    fn durations_in_every_form_the_example_uses() {
        for (text, expected) in [
            ("250ms", Duration::from_millis(250)),
            ("200ms", Duration::from_millis(200)),
            ("5s", Duration::from_secs(5)),
            ("2m", Duration::from_secs(120)),
            ("30m", Duration::from_secs(1800)),
            ("1h", Duration::from_secs(3600)),
            ("1h 30m", Duration::from_secs(5400)),
        ] {
            assert_eq!(duration::parse(text), Ok(expected), "{text}");
        }
        assert!(duration::parse("5").is_err_and(|err| err.contains("\"5\" has no unit")));
        assert!(duration::parse("5 fortnights").is_err_and(|err| err.contains("unknown unit")));
        assert!(duration::parse("soon").is_err());
    }

    #[test]
    fn sizes_in_every_form_the_example_uses() {
        for (text, expected) in [
            ("512", 512),
            ("512KiB", 512 << 10),
            ("16MiB", 16 << 20),
            ("1GiB", 1 << 30),
            ("100KB", 100_000),
            ("2GB", 2_000_000_000),
            ("64 MiB", 64 << 20),
        ] {
            assert_eq!(size::parse(text), Ok(expected), "{text}");
        }
        let err = size::parse("12 parsecs").unwrap_err();
        assert!(
            err.starts_with("unknown unit \"parsecs\" in \"12 parsecs\""),
            "{err}"
        );
        assert!(size::parse("lots").is_err_and(|err| err.contains("is not a size")));
    }
}
