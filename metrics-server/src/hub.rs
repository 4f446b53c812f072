//! Fan-out of committed metrics to live subscribers (the WebSockets).
//!
//! The ingest writer publishes every metric right after its transaction commits, in commit
//! order. Subscribers read from one bounded ring ([`tokio::sync::broadcast`]): publishing never
//! waits for a subscriber, and memory never holds more than `capacity` metrics however slow a
//! subscriber is. A subscriber that falls more than `capacity` metrics behind is told so
//! ([`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged)) and the socket
//! layer decides what to do (on `/v1/ws`: close the socket with code 1013, see `api::ws`).

use std::sync::Arc;

use tokio::sync::broadcast;

/// A metric as committed: what subscribers receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Its id in the store: storage order, and the cursor a resumable stream hands out.
    pub id: i64,
    /// Its name, for subscribers that filter by name.
    pub name: String,
    /// Its instant, in microseconds since the epoch, for subscribers that filter by range.
    pub ts_micros: i64,
    /// Its tags, for subscribers that filter by tag.
    pub tags: crate::selection::Tags,
    /// The object as posted (compact JSON).
    pub doc: String,
}

/// The publishing side of the live stream; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    /// One ring for all subscribers; each keeps its own read position.
    tx: broadcast::Sender<Arc<Committed>>,
}

impl Hub {
    /// A hub whose subscribers may fall `capacity` metrics behind before they lag.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Hub { tx }
    }

    /// Hands committed metrics to every current subscriber, in order. Never blocks.
    pub fn publish(&self, metrics: impl IntoIterator<Item = Committed>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for metric in metrics {
            // An error only means that every subscriber left meanwhile.
            let _ = self.tx.send(Arc::new(metric));
        }
    }

    /// How many subscribers there are now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A new subscriber that receives every metric published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    fn metric(id: i64) -> Committed {
        Committed {
            id,
            name: "m".into(),
            ts_micros: 0,
            tags: Default::default(),
            doc: format!("{{\"id\":{id}}}"),
        }
    }

    #[tokio::test]
    async fn subscribers_get_metrics_in_order() {
        let hub = Hub::new(16);
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        hub.publish((1..=3).map(metric));
        for rx in [&mut a, &mut b] {
            for id in 1..=3 {
                assert_eq!(rx.recv().await.unwrap().id, id);
            }
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking_the_publisher() {
        let hub = Hub::new(4);
        let mut slow = hub.subscribe();
        hub.publish((1..=10).map(metric));
        assert_eq!(slow.recv().await.unwrap_err(), RecvError::Lagged(6));
        assert_eq!(slow.recv().await.unwrap().id, 7);
    }
}
