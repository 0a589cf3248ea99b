//! Which links the assembly follows (docs/behaviour/assembly.md#link-selectors): a path-dependent selector.

/// Which way a step along a link goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a child to its parent.
    Up,
    /// From a parent to a child.
    Down,
}

/// Decides which links to follow from the queried object. `admit` is asked for each step, with the state of the
/// path so far, and answers with the state after the step, or `None` to refuse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSelector {
    /// At most this many steps up.
    pub max_up: u32,
    /// At most this many steps down.
    pub max_down: u32,
    /// When set, only links of these classes are followed.
    pub classes: Option<Vec<String>>,
    /// When `false`, a path keeps the direction of its first step (ancestors and descendants, no siblings or
    /// cousins).
    pub include_siblings: bool,
}

/// Where a path stands: steps taken each way and the direction it started in.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathState {
    up: u32,
    down: u32,
    first: Option<Direction>,
}

impl LinkSelector {
    /// Follows nothing: the queried object alone.
    pub fn none() -> Self {
        Self {
            max_up: 0,
            max_down: 0,
            classes: None,
            include_siblings: false,
        }
    }

    /// `full tree`: ancestors and descendants, up to three steps each way, no siblings.
    pub fn full_tree() -> Self {
        Self {
            max_up: 3,
            max_down: 3,
            classes: None,
            include_siblings: false,
        }
    }

    /// `ancestors`: owners only (class `children`), up to three steps up.
    pub fn ancestors() -> Self {
        Self {
            max_up: 3,
            max_down: 0,
            classes: Some(vec!["children".into()]),
            include_siblings: false,
        }
    }

    /// `owned objects`: owned objects only (class `children`), up to three steps down.
    pub fn owned_objects() -> Self {
        Self {
            max_up: 0,
            max_down: 3,
            classes: Some(vec!["children".into()]),
            include_siblings: false,
        }
    }

    /// The state after taking a step `direction` along a link of `class` from a path in `state`, or `None`.
    pub fn admit(&self, state: PathState, direction: Direction, class: &str) -> Option<PathState> {
        if let Some(classes) = &self.classes
            && !classes.iter().any(|c| c == class)
        {
            return None;
        }
        if !self.include_siblings && state.first.is_some_and(|first| first != direction) {
            return None;
        }
        let mut next = state;
        next.first.get_or_insert(direction);
        match direction {
            Direction::Up if state.up < self.max_up => next.up += 1,
            Direction::Down if state.down < self.max_down => next.down += 1,
            _ => return None,
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_tree_is_monotonic_and_bounded() {
        let s = LinkSelector::full_tree();
        let up = s
            .admit(PathState::default(), Direction::Up, "children")
            .unwrap();
        assert!(
            s.admit(up, Direction::Down, "children").is_none(),
            "no siblings"
        );
        let up3 = s
            .admit(s.admit(up, Direction::Up, "").unwrap(), Direction::Up, "")
            .unwrap();
        assert!(
            s.admit(up3, Direction::Up, "").is_none(),
            "at most three up"
        );
    }

    #[test]
    fn ancestors_follow_owner_links_upwards_only() {
        let s = LinkSelector::ancestors();
        assert!(
            s.admit(PathState::default(), Direction::Up, "children")
                .is_some()
        );
        assert!(
            s.admit(PathState::default(), Direction::Down, "children")
                .is_none()
        );
        assert!(
            s.admit(PathState::default(), Direction::Up, "node")
                .is_none()
        );
        assert!(
            LinkSelector::none()
                .admit(PathState::default(), Direction::Up, "")
                .is_none()
        );
    }
}
