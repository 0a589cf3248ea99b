//! [`ConnectionTable`]: the bookkeeping that keeps one client from starving the others of a server's connections.
//!
//! A server (the audit webhook, `kelemetry serve`) asks the table to [`admit`](ConnectionTable::admit) each
//! connection it accepts. The table holds at most `max_connections` in all and `per_peer` per client address. A
//! connection over either limit makes room by closing the connection that has been idle the longest (no request in
//! flight: a client that connected and sent nothing, or a keep-alive connection between requests), of the same
//! client for the per-client limit, of anyone for the total; when every connection has a request in flight, the
//! new one is refused and closed at once. Nothing waits in a queue.
//!
//! Each admitted connection holds a [`ConnectionSlot`]: the server marks its requests with
//! [`ConnectionSlot::begin_request`], asks [`ConnectionSlot::idle_deadline`] when an idle connection must be closed
//! (the first request within one timeout, the next ones within another), and closes the connection when
//! [`ConnectionSlot::closed`] is cancelled (the table made room with it, or the server is closing all of them).
//! Dropping the slot gives its place back. The table has no sockets and no timers of its own.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use kelemetry_core::connections::{Admission, ConnectionTable};
//!
//! let table = ConnectionTable::new(2, 1);
//! let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
//! let Admission::Open(first) = table.admit(peer) else { panic!() };
//! let request = first.begin_request();
//! // The client's only place is taken by a connection with a request in flight: refused.
//! assert!(matches!(table.admit(peer), Admission::Refused(_)));
//! drop(request);
//! // Now it is idle: the newcomer takes its place and the idle one is told to close.
//! let Admission::OpenAfterClosing(_second, _) = table.admit(peer) else { panic!() };
//! assert!(first.closed().is_cancelled());
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which limit a new connection met.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Over {
    /// The connections of one client address.
    Peer,
    /// The connections of all clients.
    Total,
}

/// What [`ConnectionTable::admit`] decided.
#[derive(Debug)]
pub enum Admission {
    /// Admitted within the limits.
    Open(ConnectionSlot),
    /// Admitted in the place of the connection idle the longest, which was told to close; the limit it met.
    OpenAfterClosing(ConnectionSlot, Over),
    /// Refused: over the limit, and every connection concerned has a request in flight. Close it now.
    Refused(Over),
}

/// The open connections of one server; see the module documentation.
#[derive(Debug)]
pub struct ConnectionTable {
    max_connections: usize,
    per_peer: usize,
    open: Mutex<Open>,
    emptied: Notify,
}

#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    slots: HashMap<u64, Arc<SlotState>>,
    per_peer: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct SlotState {
    peer: IpAddr,
    activity: Mutex<Activity>,
    closed: CancellationToken,
}

#[derive(Debug)]
struct Activity {
    in_flight: usize,
    idle_since: Instant,
    requests: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConnectionTable {
    /// A table of at most `max_connections` connections, `per_peer` of them from one client address (both at
    /// least 1).
    pub fn new(max_connections: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections: max_connections.max(1),
            per_peer: per_peer.max(1),
            open: Mutex::new(Open::default()),
            emptied: Notify::new(),
        })
    }

    /// Admits a connection from `peer`, making room as the module documentation says.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Admission {
        let mut open = lock(&self.open);
        let mut made_room = None;
        if open.per_peer.get(&peer).copied().unwrap_or(0) >= self.per_peer {
            if !open.close_longest_idle(Some(peer)) {
                return Admission::Refused(Over::Peer);
            }
            made_room = Some(Over::Peer);
        }
        if open.slots.len() >= self.max_connections {
            if !open.close_longest_idle(None) {
                return Admission::Refused(Over::Total);
            }
            made_room = made_room.or(Some(Over::Total));
        }
        let id = open.next_id;
        open.next_id += 1;
        let state = Arc::new(SlotState {
            peer,
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
                requests: 0,
            }),
            closed: CancellationToken::new(),
        });
        open.slots.insert(id, Arc::clone(&state));
        *open.per_peer.entry(peer).or_default() += 1;
        let slot = ConnectionSlot {
            id,
            state,
            table: Arc::clone(self),
        };
        match made_room {
            None => Admission::Open(slot),
            Some(over) => Admission::OpenAfterClosing(slot, over),
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        lock(&self.open).slots.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells every open connection to close ([`ConnectionSlot::closed`]).
    pub fn close_all(&self) {
        for state in lock(&self.open).slots.values() {
            state.closed.cancel();
        }
    }

    /// Waits until no connection is open.
    pub async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn release(&self, id: u64) {
        let mut open = lock(&self.open);
        open.remove(id);
        if open.slots.is_empty() {
            self.emptied.notify_waiters();
        }
    }
}

impl Open {
    /// Tells the connection idle the longest (of `peer`, or of anyone) to close and gives its place back; false
    /// when none is idle.
    fn close_longest_idle(&mut self, peer: Option<IpAddr>) -> bool {
        loop {
            let longest = self
                .slots
                .iter()
                .filter(|(_, state)| peer.is_none_or(|peer| state.peer == peer))
                .filter_map(|(id, state)| {
                    let activity = lock(&state.activity);
                    (activity.in_flight == 0).then_some((activity.idle_since, *id))
                })
                .min();
            let Some((_, id)) = longest else {
                return false;
            };
            let Some(state) = self.slots.get(&id) else {
                return false;
            };
            // Told to close under its activity lock, so that a request cannot begin in between.
            let still_idle = {
                let activity = lock(&state.activity);
                let idle = activity.in_flight == 0;
                if idle {
                    state.closed.cancel();
                }
                idle
            };
            if still_idle {
                self.remove(id);
                return true;
            }
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<SlotState>> {
        let state = self.slots.remove(&id)?;
        if let Some(count) = self.per_peer.get_mut(&state.peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&state.peer);
            }
        }
        Some(state)
    }
}

/// One admitted connection's place in its [`ConnectionTable`]; dropping it gives the place back.
#[derive(Debug)]
pub struct ConnectionSlot {
    id: u64,
    state: Arc<SlotState>,
    table: Arc<ConnectionTable>,
}

impl ConnectionSlot {
    /// The client's address.
    pub fn peer(&self) -> IpAddr {
        self.state.peer
    }

    /// Cancelled when the connection must close now: the table gave its place to a newcomer, or
    /// [`ConnectionTable::close_all`] was called.
    pub fn closed(&self) -> &CancellationToken {
        &self.state.closed
    }

    /// Marks a request in flight until the guard is dropped; `None` when the connection was told to close
    /// already (answer the request with a refusal and close).
    pub fn begin_request(&self) -> Option<RequestGuard> {
        let mut activity = lock(&self.state.activity);
        if self.state.closed.is_cancelled() {
            return None;
        }
        activity.in_flight += 1;
        Some(RequestGuard {
            state: Arc::clone(&self.state),
        })
    }

    /// When the connection, idle now, must be closed: `first_request` after it opened when it has had no request
    /// yet, `between_requests` after its last request ended otherwise. `None` while a request is in flight.
    pub fn idle_deadline(
        &self,
        first_request: Duration,
        between_requests: Duration,
    ) -> Option<Instant> {
        let activity = lock(&self.state.activity);
        if activity.in_flight > 0 {
            return None;
        }
        let allowed = if activity.requests == 0 {
            first_request
        } else {
            between_requests
        };
        Some(activity.idle_since + allowed)
    }

    /// Requests the connection has finished.
    pub fn requests(&self) -> u64 {
        lock(&self.state.activity).requests
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.table.release(self.id);
    }
}

/// A request in flight on a connection ([`ConnectionSlot::begin_request`]); dropping it ends the request.
#[derive(Debug)]
pub struct RequestGuard {
    state: Arc<SlotState>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut activity = lock(&self.state.activity);
        activity.in_flight = activity.in_flight.saturating_sub(1);
        activity.requests += 1;
        activity.idle_since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    fn opened(admission: Admission) -> ConnectionSlot {
        match admission {
            Admission::Open(slot) => slot,
            other => panic!("expected Open, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_connection_makes_room() {
        let table = ConnectionTable::new(3, 2);
        let a1 = opened(table.admit(ip(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let a2 = opened(table.admit(ip(1)));
        let b1 = opened(table.admit(ip(2)));
        // Per peer: a1 has been idle the longest of peer 1.
        let Admission::OpenAfterClosing(a3, Over::Peer) = table.admit(ip(1)) else {
            panic!("expected room made for peer 1");
        };
        assert!(a1.closed().is_cancelled());
        assert!(!a2.closed().is_cancelled());
        assert_eq!(table.len(), 3);
        // In all: b1 and a2 are idle since the same instant, a3 later; a request keeps a2 open.
        let _busy = a2.begin_request();
        tokio::time::advance(Duration::from_secs(1)).await;
        let Admission::OpenAfterClosing(_c1, Over::Total) = table.admit(ip(3)) else {
            panic!("expected room made in all");
        };
        assert!(b1.closed().is_cancelled());
        assert!(!a3.closed().is_cancelled());
        drop(a1);
        assert_eq!(table.len(), 3, "a place given away is not given back twice");
    }

    #[test]
    fn busy_connections_are_never_closed_for_newcomers() {
        let table = ConnectionTable::new(2, 2);
        let a = opened(table.admit(ip(1)));
        let b = opened(table.admit(ip(2)));
        let (_ra, _rb) = (a.begin_request(), b.begin_request());
        assert!(matches!(
            table.admit(ip(3)),
            Admission::Refused(Over::Total)
        ));
        assert!(matches!(
            table.admit(ip(1)),
            Admission::Refused(Over::Total)
        ));
        assert!(!a.closed().is_cancelled() && !b.closed().is_cancelled());
        drop(b);
        assert!(matches!(table.admit(ip(3)), Admission::Open(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_requests() {
        let table = ConnectionTable::new(1, 1);
        let slot = opened(table.admit(ip(1)));
        let opened_at = Instant::now();
        let (first, next) = (Duration::from_secs(10), Duration::from_secs(60));
        assert_eq!(slot.idle_deadline(first, next), Some(opened_at + first));
        let request = slot.begin_request();
        assert_eq!(slot.idle_deadline(first, next), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(request);
        assert_eq!(slot.requests(), 1);
        assert_eq!(
            slot.idle_deadline(first, next),
            Some(opened_at + Duration::from_secs(3) + next)
        );
        table.close_all();
        assert!(slot.begin_request().is_none());
    }

    #[tokio::test]
    async fn emptied_waits_for_the_last_slot() {
        let table = ConnectionTable::new(4, 4);
        let slot = opened(table.admit(ip(1)));
        let waiting = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.emptied().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(slot);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("emptied returns once the last slot is dropped")
            .expect("the waiting task ends");
        assert!(table.is_empty());
    }
}
