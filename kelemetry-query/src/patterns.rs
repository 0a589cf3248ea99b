//! [`FieldPatterns`]: regular expressions over named fields, each matching a whole value, as the extension
//! providers' `when` and the declared diagnose rules' `match` write them.

use std::collections::BTreeMap;

use regex::Regex;

/// Patterns by field name; a value matches when the whole of it does (`^(?:pattern)$`).
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldPatterns(Vec<(String, Regex)>);

impl FieldPatterns {
    /// Compiles `patterns`; an error names the field whose pattern does not parse.
    pub(crate) fn compile(
        patterns: &BTreeMap<String, String>,
    ) -> Result<Self, (String, regex::Error)> {
        patterns
            .iter()
            .map(|(field, pattern)| {
                Regex::new(&format!("^(?:{pattern})$"))
                    .map(|regex| (field.clone(), regex))
                    .map_err(|err| (field.clone(), err))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether every field `value_of` gives is present and matches.
    pub(crate) fn matches<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0
            .iter()
            .all(|(field, pattern)| value_of(field).is_some_and(|value| pattern.is_match(value)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn whole_values_must_match_and_missing_fields_do_not() {
        let patterns = FieldPatterns::compile(&BTreeMap::from([
            ("source".to_owned(), "audit".to_owned()),
            ("code".to_owned(), "4..".to_owned()),
        ]))
        .unwrap();
        let fields = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        };
        assert!(patterns.matches(fields(&[("source", "audit"), ("code", "403")])));
        assert!(!patterns.matches(fields(&[("source", "audited"), ("code", "403")])));
        assert!(!patterns.matches(fields(&[("source", "audit")])));
        let (field, _) =
            FieldPatterns::compile(&BTreeMap::from([("title".to_owned(), "(".to_owned())]))
                .unwrap_err();
        assert_eq!(field, "title");
    }
}
