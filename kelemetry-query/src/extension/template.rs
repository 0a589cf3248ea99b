//! [`Template`]: a string with `{field}` placeholders filled from an [`ExtensionTarget`](super::ExtensionTarget)'s
//! fields, as extension providers write their tag values and URLs.
//!
//! `{{` and `}}` stand for literal braces. A placeholder whose field the target lacks makes the whole template
//! unfilled ([`Template::fill`] returns `None`): the provider does not ask about that target, so a template naming
//! `{auditId}` only ever asks about audit activities.

use std::collections::BTreeMap;
use std::fmt;

/// A template that does not parse: an unclosed or empty placeholder, or a stray `}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template {template:?}: {problem} at byte {at}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub problem: &'static str,
    /// Where.
    pub at: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
}

/// A parsed template.
///
/// ```
/// use std::collections::BTreeMap;
/// use kelemetry_query::extension::Template;
///
/// let template: Template = "{namespace}/{name} {{literal}}".parse().unwrap();
/// let fields = BTreeMap::from([("namespace".to_owned(), "default".to_owned()), ("name".to_owned(), "web".to_owned())]);
/// assert_eq!(template.fill(&fields, |s| s.to_owned()).as_deref(), Some("default/web {literal}"));
/// assert_eq!(template.fields().collect::<Vec<_>>(), ["namespace", "name"]);
/// assert!(template.fill(&BTreeMap::new(), |s| s.to_owned()).is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// The names of the fields it uses, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Field(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The template filled from `fields`, each value passed through `encode` (URL-encoding for URLs, identity for
    /// tag values); `None` when a field is missing.
    pub fn fill(
        &self,
        fields: &BTreeMap<String, String>,
        encode: impl Fn(&str) -> String,
    ) -> Option<String> {
        let mut out = String::with_capacity(self.source.len());
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(name) => out.push_str(&encode(fields.get(name)?)),
            }
        }
        Some(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        let error = |problem, at| TemplateError {
            template: source.to_owned(),
            problem,
            at,
        };
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, next)| next) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|&(_, next)| next) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err(error("a `}` without its `{` (write `}}` for a brace)", at)),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((inner, '{')) => {
                                return Err(error("a `{` inside a placeholder", inner));
                            }
                            Some((_, c)) => name.push(c),
                            None => return Err(error("an unclosed placeholder", at)),
                        }
                    }
                    let name = name.trim();
                    if name.is_empty() {
                        return Err(error("an empty placeholder", at));
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(name.to_owned()));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self {
            source: source.to_owned(),
            pieces,
        })
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        source.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled_and_encoded() {
        let template: Template = "http://x/t?pod={namespace}/{ name }&a={auditId}"
            .parse()
            .unwrap();
        let filled = template.fill(
            &fields(&[("namespace", "a b"), ("name", "p"), ("auditId", "1")]),
            |s| s.replace(' ', "%20"),
        );
        assert_eq!(filled.as_deref(), Some("http://x/t?pod=a%20b/p&a=1"));
        assert!(
            template
                .fill(&fields(&[("namespace", "a"), ("name", "p")]), str::to_owned)
                .is_none()
        );
    }

    #[test]
    fn broken_templates_say_where() {
        for (source, problem, at) in [
            ("a{b", "an unclosed placeholder", 1),
            ("a}b", "a `}` without its `{` (write `}}` for a brace)", 1),
            ("{}", "an empty placeholder", 0),
            ("{a{b}", "a `{` inside a placeholder", 2),
        ] {
            let err = source.parse::<Template>().unwrap_err();
            assert_eq!((err.problem, err.at), (problem, at), "{source}");
            assert!(err.to_string().contains(source));
        }
        let literal: Template = "{{x}}".parse().unwrap();
        assert_eq!(
            literal.fill(&BTreeMap::new(), str::to_owned).unwrap(),
            "{x}"
        );
        assert_eq!(literal.to_string(), "{{x}}");
    }
}
