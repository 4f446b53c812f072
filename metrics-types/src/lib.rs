//! Wire types shared by the metrics server and its client.
//!
//! This crate is the contract of the `v1` HTTP API and nothing else: it has no I/O and depends on
//! no other crate of the workspace, so the client never pulls in the server. It holds
//!
//! - [`Timestamp`]: the ISO-8601 timestamps the API accepts (`2016-01-01`,
//!   `2016-01-01 12:00:00.000`, `2016-01-01T12:00:00+02:00`, ...), compared on the instant, and
//!   the time forms of query parameters ([`Timestamp::parse_param`]: Unix epochs with explicit
//!   units, `now-15m`);
//! - [`MetricValue`] and [`validate_name`]: what a metric may hold;
//! - [`PostMetricsResponse`], [`NameList`], [`TagKeys`], [`TagValues`], [`DeleteResponse`] and [`ErrorBody`] with its [`ErrorCode`]s: what the
//!   server answers;
//! - [`AggregateAnswer`] and [`AggregateSeries`]: the columnar answer of an aggregate query;
//! - [`StreamFrame`] and [`Limits`]: the resumable stream's frames and the published limits.
//!
//! With the `openapi` feature the response types also derive their poem-openapi schemas, which is
//! how their docs end up in the server's OpenAPI spec.
//!
//! # Example
//!
//! ```
//! use metrics_types::{validate_name, Timestamp};
//!
//! let a: Timestamp = "2016-03-01T10:00:00+02:00".parse().unwrap();
//! let b: Timestamp = "2016-03-01 08:00:00Z".parse().unwrap();
//! assert_eq!(a.timestamp_micros(), b.timestamp_micros());
//! assert!(validate_name("cpu.load").is_ok());
//! assert!(validate_name("").is_err());
//! ```

mod aggregate;
mod error;
mod metric;
mod names;
#[cfg(feature = "remote-write")]
pub mod remote_write;
mod stream;
mod time_param;
mod timestamp;

pub use aggregate::{AggregateAnswer, AggregateSeries};
pub use error::{ErrorBody, ErrorCode};
pub use metric::{validate_name, MetricValue, NameError, PostMetricsResponse, MAX_NAME_BYTES};
pub use names::{DeleteResponse, NameList, NameSummary, TagKeys, TagValues};
pub use stream::{Limits, StreamFrame};
pub use time_param::{EpochUnit, TimeParamError, TIME_FORMS};
pub use timestamp::{Timestamp, TimestampError};
