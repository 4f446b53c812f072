//! [`Error`]: the one error type of the client.

use std::time::Duration;

/// Everything that can go wrong talking to the metrics server.
///
/// Match on [`Error::Api`] to react to what the server said (its `code` is stable); the other
/// variants say where the request failed on the way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error: its status and its JSON error body.
    #[error("the server answered {status} {code}: {message}")]
    Api {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The stable, machine-readable code, e.g. `invalid_field` (see `metrics_types::ErrorCode`).
        code: String,
        /// What went wrong, for people.
        message: String,
    },
    /// The server could not be reached, or the connection broke before the answer was complete.
    #[error("could not reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server's answer was not what the API promises (not JSON, a truncated array, ...).
    #[error("could not decode the server's answer: {0}")]
    Decode(String),
    /// The live stream failed in a way reconnecting cannot fix (e.g. the server refused the
    /// subscription's parameters), or the WebSocket could not be opened.
    #[error("subscription failed: {0}")]
    Subscription(String),
    /// A metric was refused before anything was sent: bad name, non-finite number, a reserved
    /// key among the extra keys, or larger on its own than the server's body limit.
    #[error("invalid metric: {0}")]
    InvalidMetric(String),
    /// A query was refused before anything was sent because it cannot be said on the wire: a
    /// zero step or one with a fraction of a second, a non-finite fill, a percentile outside
    /// 0..=100, a raw query's option (`limit`, ...) on an aggregation.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The server URL is not an `http://` or `https://` URL.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The recorder's buffer is full (see [`Recorder`](crate::Recorder)): the metric was not
    /// taken; the caller decides whether to drop it, retry or slow down.
    #[error("the recorder's buffer of {capacity} metrics is full")]
    RecorderFull {
        /// The buffer's capacity.
        capacity: usize,
    },
    /// The recorder's background task is gone: it panicked, or the tokio runtime it ran on shut
    /// down. Nothing more can be recorded or sent.
    #[error("the recorder's background task stopped (it panicked or its runtime shut down); {unconfirmed} recorded metrics were neither confirmed stored nor handed back")]
    RecorderStopped {
        /// How many metrics `record` took that were neither confirmed stored nor handed back as
        /// [`Undelivered`](crate::Undelivered): count them as lost (a batch that was in flight
        /// when the task died may have been stored).
        unconfirmed: u64,
    },
    /// The recorder's `retry_for` ran out before these metrics could be delivered: an attempt
    /// was still unanswered at the deadline, or the batch came due after the deadline of a
    /// flush and was not sent at all. Sending them again later may succeed.
    #[error("not delivered within the recorder's retry_for of {retry_for:?}")]
    RetryExpired {
        /// The recorder's `retry_for`.
        retry_for: Duration,
    },
    /// [`facade::FacadeBuilder::install`](crate::facade::FacadeBuilder::install): the process
    /// already has a global `metrics` recorder (there can be only one).
    #[cfg(feature = "facade")]
    #[error("a global `metrics` recorder is installed already")]
    FacadeInstalled,
    /// A string is not a timestamp: from [`Timestamp::parse`](crate::Timestamp::parse), so
    /// that `?` works on it in a function returning [`Result`].
    #[error(transparent)]
    Timestamp(#[from] metrics_types::TimestampError),
}

/// A `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying the same request again later may succeed: transport failures, 5xx and 429.
    /// Other 4xx mean the request itself is wrong and are never retried.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) {
    /// if let Err(err) = client.record("cpu", 0.5, chrono::Utc::now()).await {
    ///     if err.is_retryable() {
    ///         // keep the metric and try again later
    ///     }
    /// }
    /// # }
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => {
                status.is_server_error() || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            Error::Transport(err) => !err.is_builder() && !err.is_redirect(),
            Error::RetryExpired { .. } => true,
            _ => false,
        }
    }
}

/// An error with the server's `Retry-After`, when it sent one.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(error: reqwest::Error) -> Self {
        Error::from(error).into()
    }
}

/// Turns a non-2xx response into [`Error::Api`], reading the server's JSON error body.
pub(crate) async fn api_error(response: reqwest::Response) -> Failure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let error = match serde_json::from_str::<metrics_types::ErrorBody>(&text) {
        Ok(body) => Error::Api {
            status,
            code: body.code,
            message: body.message,
        },
        // Not our server's error shape (a proxy, say): keep what there is.
        Err(_) => Error::Api {
            status,
            code: "unknown".to_owned(),
            message: text.chars().take(512).collect(),
        },
    };
    Failure { error, retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> Error {
        Error::Api {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            code: "x".into(),
            message: "y".into(),
        }
    }

    #[test]
    fn only_what_may_pass_is_retryable() {
        for status in [500, 502, 503, 504, 429] {
            assert!(api(status).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 415, 422] {
            assert!(!api(status).is_retryable(), "{status}");
        }
        assert!(!Error::InvalidMetric("nan".into()).is_retryable());
        assert!(!Error::Decode("truncated".into()).is_retryable());
        assert!(!Error::InvalidQuery("step 0s".into()).is_retryable());
        assert!(Error::RetryExpired {
            retry_for: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(!Error::RecorderStopped { unconfirmed: 3 }.is_retryable());
    }

    fn parse_day(text: &str) -> Result<metrics_types::Timestamp> {
        Ok(metrics_types::Timestamp::parse(text)?)
    }

    #[test]
    fn a_bad_timestamp_converts_with_question_mark_and_keeps_its_message() {
        assert!(parse_day("2016-01-01").is_ok());
        let err = parse_day("2016-13-01").unwrap_err();
        assert!(matches!(err, Error::Timestamp(_)), "{err:?}");
        assert!(err.to_string().contains("2016-13-01"), "{err}");
        assert!(!err.is_retryable());
    }

    fn response(status: u16, retry_after: Option<&str>, body: &str) -> reqwest::Response {
        // tungstenite re-exports the `http` crate reqwest converts from.
        let mut builder = tokio_tungstenite::tungstenite::http::Response::builder().status(status);
        if let Some(secs) = retry_after {
            builder = builder.header("retry-after", secs);
        }
        reqwest::Response::from(builder.body(body.to_owned()).unwrap())
    }

    #[tokio::test]
    async fn reads_the_servers_error_body_and_retry_after() {
        let failure = api_error(response(
            503,
            Some("3"),
            r#"{"code":"unavailable","message":"retry later"}"#,
        ))
        .await;
        assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
        match failure.error {
            Error::Api {
                status,
                code,
                message,
            } => {
                assert_eq!((status.as_u16(), code.as_str()), (503, "unavailable"));
                assert_eq!(message, "retry later");
            }
            other => panic!("expected Api, got {other:?}"),
        }
        // Not our error shape (a proxy's page): kept as the message, code `unknown`.
        let failure = api_error(response(502, None, "<html>bad gateway</html>")).await;
        assert_eq!(failure.retry_after, None);
        assert!(matches!(
            failure.error,
            Error::Api { ref code, ref message, .. } if code == "unknown" && message.contains("bad gateway")
        ));
    }
}
