//! The display-mode codec: [`BaseMode`], [`Modifier`], [`DisplayMode`], their names and the ids carried in the
//! trace ids the read side hands out.

use std::fmt;
use std::str::FromStr;

use crate::selector::LinkSelector;

/// The shape of the tree.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BaseMode {
    /// Every object a span, activities as child spans, link classes as virtual spans.
    Tree,
    /// The root object and every activity of the view as its children.
    Timeline,
    /// One span per object, hierarchy = relations, activities as logs on the object span (the default).
    Tracing,
    /// `tracing`, with the logs of each source but Kubernetes Events moved into a child span per source.
    Grouped,
}

impl BaseMode {
    /// Every base, the default (`tracing`) first.
    pub const ALL: [Self; 4] = [Self::Tracing, Self::Grouped, Self::Tree, Self::Timeline];

    /// The base's part of a display-mode id.
    pub fn id(self) -> u32 {
        match self {
            Self::Tree => 0x0000_0000,
            Self::Timeline => 0x1000_0000,
            Self::Tracing => 0x2000_0000,
            Self::Grouped => 0x3000_0000,
        }
    }

    /// The name shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tree => "tree",
            Self::Timeline => "timeline",
            Self::Tracing => "tracing",
            Self::Grouped => "grouped",
        }
    }

    /// Whether activities collapse into logs on their object span.
    pub(crate) fn collapses(self) -> bool {
        matches!(self, Self::Tracing | Self::Grouped)
    }
}

/// Which related objects a view includes besides the queried one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Modifier {
    /// Ancestors and descendants.
    FullTree,
    /// Owners, upwards.
    Ancestors,
    /// Owned objects, downwards.
    OwnedObjects,
}

impl Modifier {
    /// Every modifier.
    pub const ALL: [Self; 3] = [Self::FullTree, Self::Ancestors, Self::OwnedObjects];

    /// The modifier's bit in a display-mode id.
    pub fn id(self) -> u32 {
        match self {
            Self::FullTree => 0x0100_0000,
            Self::Ancestors => 0x0200_0000,
            Self::OwnedObjects => 0x0400_0000,
        }
    }

    /// The name shown to people, in brackets after the base.
    pub fn name(self) -> &'static str {
        match self {
            Self::FullTree => "full tree",
            Self::Ancestors => "ancestors",
            Self::OwnedObjects => "owned objects",
        }
    }
}

/// A display mode: a base and at most one relation modifier (the original's modifiers of class `owner-ref` are
/// mutually exclusive). Its id follows the original's numbering.
///
/// ```
/// use kelemetry_query::display::{BaseMode, DisplayMode, Modifier};
/// let mode = DisplayMode { base: BaseMode::Tracing, modifier: Some(Modifier::FullTree) };
/// assert_eq!(mode.id(), 0x2100_0000);
/// assert_eq!(mode.to_string(), "tracing [full tree]");
/// assert_eq!(DisplayMode::from_id(0x2100_0000), Some(mode));
/// assert_eq!(DisplayMode::from_name("* tracing [full tree]"), Some(mode));
/// assert!(format!("{:032x}", mode.trace_id(7)).starts_with("ff21000000e1e3e7"));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct DisplayMode {
    /// The base.
    pub base: BaseMode,
    /// The relation modifier.
    pub modifier: Option<Modifier>,
}

const TRACE_ID_MASK: u64 = 0xFF00_0000_00E1_E3E7;

impl DisplayMode {
    /// `tracing` alone.
    pub const TRACING: Self = Self {
        base: BaseMode::Tracing,
        modifier: None,
    };

    /// The default mode (`tracing`).
    pub const DEFAULT: Self = Self::TRACING;

    /// `tracing [full tree]`: every related object, nested by relation.
    pub const FULL_TREE: Self = Self::TRACING.with_modifier(Modifier::FullTree);

    /// This mode's base with `modifier`.
    pub const fn with_modifier(self, modifier: Modifier) -> Self {
        Self {
            base: self.base,
            modifier: Some(modifier),
        }
    }

    /// Every mode, the default first: each base alone, then each base with each modifier.
    pub fn all() -> Vec<Self> {
        let mut modes: Vec<Self> = BaseMode::ALL
            .iter()
            .map(|&base| Self {
                base,
                modifier: None,
            })
            .collect();
        for base in BaseMode::ALL {
            for modifier in Modifier::ALL {
                modes.push(Self {
                    base,
                    modifier: Some(modifier),
                });
            }
        }
        modes
    }

    /// The mode called `name` (as [`Display`](fmt::Display) writes it; a leading `"* "` is ignored); the same as
    /// [`str::parse`] without the error.
    pub fn from_name(name: &str) -> Option<Self> {
        name.parse().ok()
    }

    /// The 32-bit id: base `00000000` tree, `10000000` timeline, `20000000` tracing, `30000000` grouped; modifier
    /// `01000000` full tree, `02000000` ancestors, `04000000` owned objects.
    pub fn id(&self) -> u32 {
        self.base.id() | self.modifier.map_or(0, Modifier::id)
    }

    /// The mode with this id, if it is one this build knows.
    pub fn from_id(id: u32) -> Option<Self> {
        let base = BaseMode::ALL
            .into_iter()
            .find(|base| base.id() == id & 0xF000_0000)?;
        let rest = id & 0x0FFF_FFFF;
        let modifier = if rest == 0 {
            None
        } else {
            Some(Modifier::ALL.into_iter().find(|m| m.id() == rest)?)
        };
        Some(Self { base, modifier })
    }

    /// A trace id carrying this mode: high half `0xFF00000000E1E3E7 | id << 24`, low half `low`.
    pub fn trace_id(&self, low: u64) -> u128 {
        let high = TRACE_ID_MASK | (u64::from(self.id()) << 24);
        (u128::from(high) << 64) | u128::from(low)
    }

    /// The mode and the low half of a trace id handed out by [`DisplayMode::trace_id`].
    pub fn from_trace_id(trace_id: u128) -> Option<(Self, u64)> {
        let high = (trace_id >> 64) as u64;
        if high & !(0xFFFF_FFFF << 24) != TRACE_ID_MASK {
            return None;
        }
        let id = ((high >> 24) & 0xFFFF_FFFF) as u32;
        Some((Self::from_id(id)?, trace_id as u64))
    }

    /// The links this mode follows.
    pub fn selector(&self) -> LinkSelector {
        match self.modifier {
            None => LinkSelector::none(),
            Some(Modifier::FullTree) => LinkSelector::full_tree(),
            Some(Modifier::Ancestors) => LinkSelector::ancestors(),
            Some(Modifier::OwnedObjects) => LinkSelector::owned_objects(),
        }
    }
}

impl Default for DisplayMode {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for DisplayMode {
    /// The name shown as Jaeger's service: the base, then the modifier in brackets (`tracing [full tree]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.name())?;
        match self.modifier {
            None => Ok(()),
            Some(modifier) => write!(f, " [{}]", modifier.name()),
        }
    }
}

impl fmt::Display for BaseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Modifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A text that names no display mode, base or modifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {what}; the {what}s are: {known}")]
pub struct ParseModeError {
    text: String,
    what: &'static str,
    known: String,
}

impl ParseModeError {
    fn new<T: fmt::Display>(
        text: &str,
        what: &'static str,
        known: impl IntoIterator<Item = T>,
    ) -> Self {
        let known: Vec<String> = known.into_iter().map(|t| t.to_string()).collect();
        Self {
            text: text.to_owned(),
            what,
            known: known.join(", "),
        }
    }

    /// The text that was parsed.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl FromStr for BaseMode {
    type Err = ParseModeError;

    /// `tree`, `timeline`, `tracing` or `grouped`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|base| base.name() == text.trim())
            .ok_or_else(|| ParseModeError::new(text, "display base", Self::ALL))
    }
}

impl FromStr for Modifier {
    type Err = ParseModeError;

    /// `full tree`, `ancestors` or `owned objects`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|modifier| modifier.name() == text.trim())
            .ok_or_else(|| ParseModeError::new(text, "display modifier", Self::ALL))
    }
}

impl FromStr for DisplayMode {
    type Err = ParseModeError;

    /// The text [`Display`](fmt::Display) writes (`tracing`, `tree [ancestors]`); a leading `"* "` (how the
    /// Jaeger UI marks the default) is ignored.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = text.trim();
        let name = name.strip_prefix("* ").unwrap_or(name);
        Self::all()
            .into_iter()
            .find(|mode| mode.to_string() == name)
            .ok_or_else(|| ParseModeError::new(text, "display mode", Self::all()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_ids_round_trip_through_trace_ids() {
        for mode in DisplayMode::all() {
            let id = mode.trace_id(0xdead_beef);
            assert_eq!(DisplayMode::from_trace_id(id), Some((mode, 0xdead_beef)));
            assert_eq!(DisplayMode::from_name(&mode.to_string()), Some(mode));
        }
        assert_eq!(DisplayMode::all().len(), 16);
        assert_eq!(DisplayMode::all()[0], DisplayMode::DEFAULT);
        assert_eq!(DisplayMode::from_trace_id(1), None);
        assert_eq!(DisplayMode::from_id(0x2800_0000), None);
        assert_eq!(DisplayMode::from_id(0x4000_0000), None);
        assert_eq!(
            DisplayMode::from_id(0x2300_0000),
            None,
            "modifiers are exclusive"
        );
        let grouped_owned = DisplayMode::from_id(0x3400_0000);
        assert_eq!(
            grouped_owned.map(|m| m.to_string()).as_deref(),
            Some("grouped [owned objects]")
        );
        assert_eq!(DisplayMode::from_name("tree").map(|m| m.id()), Some(0));
        assert_eq!(DisplayMode::from_name("tracing [everything]"), None);
    }

    #[test]
    fn modes_parse_from_their_names() {
        for mode in DisplayMode::all() {
            assert_eq!(mode.to_string().parse::<DisplayMode>(), Ok(mode));
        }
        for base in BaseMode::ALL {
            assert_eq!(base.to_string().parse::<BaseMode>(), Ok(base));
        }
        for modifier in Modifier::ALL {
            assert_eq!(modifier.to_string().parse::<Modifier>(), Ok(modifier));
        }
        assert_eq!(
            "* grouped [ancestors]"
                .parse::<DisplayMode>()
                .map(|m| m.id()),
            Ok(0x3200_0000)
        );
        let err = "tracing [everything]".parse::<DisplayMode>().unwrap_err();
        assert_eq!(err.text(), "tracing [everything]");
        assert!(err.to_string().contains("tracing [full tree]"), "{err}");
        assert!(
            "sideways"
                .parse::<BaseMode>()
                .unwrap_err()
                .to_string()
                .contains("timeline")
        );
    }
}
