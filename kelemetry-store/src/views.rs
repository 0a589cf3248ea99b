//! [`ViewStore`]: the views the read side handed out trace ids for, so that a trace id resolves back into the
//! question it answered.
//!
//! A trace id of the read side carries a display mode and a 64-bit "view id"
//! (docs/behaviour/display-modes.md#mode-digits-in-trace-ids). Object trace ids are deterministic, so the view id
//! is a hash of the question (the objects asked about and the time range), and this store remembers, per view id,
//! that question. It is bounded (the original's trace cache grows forever; docs/behaviour/query-api.md#view-ids):
//! entries older than [`ViewLimits::max_age`] are gone, and beyond
//! [`ViewLimits::max_entries`] the oldest go first. Storing a view again refreshes its age.
//!
//! It lives in its own file, [`VIEWS_FILE_NAME`], beside the span file, so that a serving process can hold the
//! span store read-only (while another process writes it) and still write its views.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::ObjectKey;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::StoreError;
use crate::store::SpanStore;

/// The name of the views file inside the store directory.
pub const VIEWS_FILE_NAME: &str = "views.redb";

/// view id → (stored at, Unix seconds; encoded view).
const VIEWS: TableDefinition<'_, u64, (i64, &[u8])> = TableDefinition::new("views");
/// (stored at, view id): the age index that eviction walks, oldest first.
const VIEW_AGES: TableDefinition<'_, (i64, u64), ()> = TableDefinition::new("view_ages");

/// How many views a [`ViewStore`] keeps, and for how long.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ViewLimits {
    /// At most this many views; storing one more evicts the oldest.
    pub max_entries: u64,
    /// A view not stored again for this long is forgotten.
    pub max_age: SignedDuration,
}

impl Default for ViewLimits {
    /// 100,000 views, 30 days.
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_age: SignedDuration::from_hours(24 * 30),
        }
    }
}

/// The question a view answered: the objects asked about (the first is the one the tree grows from) and the time
/// range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredView {
    /// The objects asked about; never empty in a stored view.
    pub objects: Vec<ObjectKey>,
    /// Start of the range.
    pub from: Timestamp,
    /// End of the range.
    pub to: Timestamp,
}

impl StoredView {
    /// Text form: the range as Unix nanoseconds on the first two lines, then one canonical key a line.
    fn encode(&self) -> Vec<u8> {
        let mut text = format!("{}\n{}", self.from.as_nanosecond(), self.to.as_nanosecond());
        for key in &self.objects {
            text.push('\n');
            text.push_str(&key.to_string());
        }
        text.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut lines = text.split('\n');
        let mut time = |what: &str| -> Result<Timestamp, String> {
            let line = lines.next().ok_or_else(|| format!("no {what} line"))?;
            let nanos: i128 = line
                .parse()
                .map_err(|e| format!("{what} {line:?} is not a number: {e}"))?;
            Timestamp::from_nanosecond(nanos).map_err(|e| format!("{what} {line:?}: {e}"))
        };
        let from = time("start")?;
        let to = time("end")?;
        let objects = lines
            .map(|line| {
                line.parse::<ObjectKey>()
                    .map_err(|e| format!("object {line:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if objects.is_empty() {
            return Err("no object".into());
        }
        Ok(Self { objects, from, to })
    }
}

/// The bounded, persistent map from view ids to the questions they answered. The methods block on disk I/O.
pub struct ViewStore {
    path: PathBuf,
    db: Database,
    limits: ViewLimits,
}

impl std::fmt::Debug for ViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStore")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ViewStore {
    /// Opens (creating if missing) the views file in the store directory `dir`.
    pub fn open(dir: impl AsRef<Path>, limits: ViewLimits) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(VIEWS_FILE_NAME);
        let mut builder = Database::builder();
        builder.set_cache_size(16 * 1024 * 1024);
        let db = builder.create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let store = Self { path, db, limits };
        let txn = store
            .db
            .begin_write()
            .map_err(|e| store.storage("begin a write", e))?;
        txn.open_table(VIEWS)
            .map_err(|e| store.storage("create the views table", e))?;
        txn.open_table(VIEW_AGES)
            .map_err(|e| store.storage("create the view ages table", e))?;
        txn.commit().map_err(|e| store.storage("commit", e))?;
        Ok(store)
    }

    /// The views file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits it keeps.
    pub fn limits(&self) -> ViewLimits {
        self.limits
    }

    fn storage(&self, operation: &'static str, error: impl Into<redb::Error>) -> StoreError {
        StoreError::Storage {
            path: self.path.clone(),
            operation,
            source: Box::new(error.into()),
        }
    }

    /// Remembers `view` under `id` as of `now`, then forgets what is too old or beyond the size bound.
    pub fn put(&self, id: u64, view: &StoredView, now: Timestamp) -> Result<(), StoreError> {
        let stored_at = now.as_second();
        let bytes = view.encode();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.storage("begin a write", e))?;
        {
            let mut views = txn
                .open_table(VIEWS)
                .map_err(|e| self.storage("open the views table", e))?;
            let mut ages = txn
                .open_table(VIEW_AGES)
                .map_err(|e| self.storage("open the view ages table", e))?;
            let previous = views
                .insert(id, (stored_at, bytes.as_slice()))
                .map_err(|e| self.storage("write a view", e))?
                .map(|old| old.value().0);
            if let Some(old) = previous {
                ages.remove((old, id))
                    .map_err(|e| self.storage("update a view's age", e))?;
            }
            ages.insert((stored_at, id), ())
                .map_err(|e| self.storage("record a view's age", e))?;
            let oldest_kept = now
                .checked_sub(self.limits.max_age)
                .map_or(i64::MIN, |t| t.as_second());
            loop {
                let too_many = views.len().map_err(|e| self.storage("count views", e))?
                    > self.limits.max_entries;
                let first = ages
                    .first()
                    .map_err(|e| self.storage("read the oldest view", e))?
                    .map(|(key, _)| key.value());
                let Some((at, victim)) = first else { break };
                if !too_many && at >= oldest_kept {
                    break;
                }
                ages.remove((at, victim))
                    .map_err(|e| self.storage("evict a view", e))?;
                views
                    .remove(victim)
                    .map_err(|e| self.storage("evict a view", e))?;
            }
        }
        txn.commit().map_err(|e| self.storage("commit", e))
    }

    /// The view stored under `id`, unless it is unknown or older than the age bound as of `now`.
    pub fn get(&self, id: u64, now: Timestamp) -> Result<Option<StoredView>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.storage("begin a read", e))?;
        let views = txn
            .open_table(VIEWS)
            .map_err(|e| self.storage("open the views table", e))?;
        let Some(entry) = views.get(id).map_err(|e| self.storage("read a view", e))? else {
            return Ok(None);
        };
        let (stored_at, bytes) = entry.value();
        let oldest_kept = now
            .checked_sub(self.limits.max_age)
            .map_or(i64::MIN, |t| t.as_second());
        if stored_at < oldest_kept {
            return Ok(None);
        }
        StoredView::decode(bytes)
            .map(Some)
            .map_err(|reason| StoreError::CorruptView {
                path: self.path.clone(),
                id,
                reason,
            })
    }

    /// How many views are stored.
    pub fn len(&self) -> Result<u64, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.storage("begin a read", e))?;
        let views = txn
            .open_table(VIEWS)
            .map_err(|e| self.storage("open the views table", e))?;
        views.len().map_err(|e| self.storage("count views", e))
    }

    /// Whether no view is stored.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

impl SpanStore {
    /// The [`ViewStore`] beside this span store (the file [`VIEWS_FILE_NAME`] in the same directory), opened for
    /// writing even when this store is read-only.
    pub fn views(&self, limits: ViewLimits) -> Result<ViewStore, StoreError> {
        let dir = self.path().parent().unwrap_or_else(|| Path::new("."));
        ViewStore::open(dir, limits)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn view(name: &str) -> StoredView {
        StoredView {
            objects: vec![
                ObjectKey::new("c", "apps", "deployments", "default", name),
                ObjectKey::new("c", "", "nodes", "", "n1"),
            ],
            from: "2024-01-01T10:00:00.123456789Z".parse().unwrap(),
            to: Timestamp::MAX,
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn views_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2024-01-01T12:00:00Z");
        {
            let store = ViewStore::open(dir.path(), ViewLimits::default()).unwrap();
            store.put(7, &view("web"), now).unwrap();
            assert_eq!(store.get(7, now).unwrap(), Some(view("web")));
            assert_eq!(store.get(8, now).unwrap(), None);
        }
        let store = ViewStore::open(dir.path(), ViewLimits::default()).unwrap();
        assert_eq!(store.get(7, now).unwrap(), Some(view("web")));
        assert_eq!(store.len().unwrap(), 1);
    }

    #[test]
    fn the_oldest_views_go_beyond_the_size_bound() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ViewLimits {
            max_entries: 3,
            ..ViewLimits::default()
        };
        let store = ViewStore::open(dir.path(), limits).unwrap();
        let base = at("2024-01-01T12:00:00Z");
        for id in 1..=5u64 {
            let now = base + SignedDuration::from_secs(i64::try_from(id).unwrap());
            store.put(id, &view(&format!("d{id}")), now).unwrap();
        }
        let now = base + SignedDuration::from_secs(10);
        assert_eq!(store.len().unwrap(), 3);
        assert_eq!(store.get(1, now).unwrap(), None);
        assert_eq!(store.get(2, now).unwrap(), None);
        assert_eq!(store.get(5, now).unwrap(), Some(view("d5")));
        // Storing a view again refreshes it: 3 is now the newest, 4 the oldest.
        store.put(3, &view("d3"), now).unwrap();
        store.put(6, &view("d6"), now).unwrap();
        assert_eq!(store.get(4, now).unwrap(), None);
        assert!(store.get(3, now).unwrap().is_some());
        assert_eq!(store.len().unwrap(), 3);
    }

    #[test]
    fn views_expire() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ViewLimits {
            max_entries: 100,
            max_age: SignedDuration::from_hours(1),
        };
        let store = ViewStore::open(dir.path(), limits).unwrap();
        let now = at("2024-01-01T12:00:00Z");
        store.put(1, &view("old"), now).unwrap();
        let later = now + SignedDuration::from_mins(61);
        assert_eq!(store.get(1, later).unwrap(), None, "expired on read");
        store.put(2, &view("new"), later).unwrap();
        assert_eq!(
            store.len().unwrap(),
            1,
            "expired entries are removed on write"
        );
    }

    #[test]
    fn a_span_store_opens_its_views_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let spans = SpanStore::create(dir.path()).unwrap();
        let views = spans.views(ViewLimits::default()).unwrap();
        assert_eq!(views.path(), dir.path().join(VIEWS_FILE_NAME));
        assert!(views.is_empty().unwrap());
    }

    #[test]
    fn corrupt_views_are_reported() {
        assert!(StoredView::decode(b"1\n2").is_err());
        assert!(StoredView::decode(b"x\n2\nc/g/r/n/x").is_err());
        assert!(StoredView::decode(b"1\n2\nc/g/r").is_err());
        assert!(StoredView::decode(b"1\n2\nc/g/r/n/x").is_ok());
    }
}
