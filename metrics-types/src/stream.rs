//! What the resumable stream (`GET /v1/stream`) sends, and the limits the server publishes.

use serde::{Deserialize, Serialize};

/// One text frame of `GET /v1/stream`.
///
/// `id` is the cursor: the stored id of the metric, which only grows. A client that reconnects
/// with `since=<id of the last frame it handled>` gets every later metric exactly once. A frame
/// without a `metric` is a checkpoint: it moves the cursor without delivering anything (the
/// server sends one first when a stream starts "from now", so that even a client that has seen no
/// metric yet can resume without a gap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct StreamFrame {
    /// The cursor: the stored id of `metric`, or the position a checkpoint stands for.
    pub id: i64,
    /// The metric as posted (`name`, `value`, `ts` and any other keys); absent on a checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<serde_json::Value>,
}

/// The server's per-request limits (`GET /v1/limits`), so that clients split batches under them
/// instead of guessing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Limits {
    /// The largest `POST /v1/metrics` body accepted, in bytes; a larger one gets 413.
    pub max_body_bytes: u64,
    /// How long, in seconds, the server remembers an `Idempotency-Key`: a retry within this window
    /// is answered with the original result and stores nothing.
    pub idempotency_window_secs: u64,
}
