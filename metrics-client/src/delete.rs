//! [`DeleteBuilder`]: removes stored metrics selected like a query; answers how many went.

use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use metrics_types::Timestamp;
use reqwest::RequestBuilder;

use crate::{error::api_error, filter::Filter, Client, Error, Result};

/// A delete of stored metrics, built from [`Client::delete`]; `.await` it (or
/// [`send`](Self::send)) for the number of metrics deleted.
///
/// It takes the same filters as a query. A delete with no filter at all is refused by the
/// server (an [`Error::Api`] naming `all`) unless [`all`](Self::all) says that everything is
/// meant. Deleted metrics never come back from a query, a replay or a resumed subscription.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// use metrics_client::Timestamp;
///
/// let deleted = client
///     .delete()
///     .name("cpu")
///     .tag("host", "web-1")
///     .end(Timestamp::parse("2016-01-01")?)
///     .await?;
/// println!("{deleted} metrics deleted");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a delete does nothing until it is awaited or sent"]
pub struct DeleteBuilder {
    client: Client,
    filter: Filter,
    all: bool,
}

impl DeleteBuilder {
    pub(crate) fn new(client: Client) -> Self {
        DeleteBuilder {
            client,
            filter: Filter::default(),
            all: false,
        }
    }

    /// Only metrics with this name; call it again for any of several names.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let deleted = client.delete().name("debug.trace").name("debug.span").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.filter.name(name);
        self
    }

    /// Only metrics with `ts` at or after `start` (inclusive). Takes chrono date-times too.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let last_hour = chrono::Utc::now() - chrono::Duration::hours(1);
    /// let deleted = client.delete().name("load-test").start(last_hour).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(mut self, start: impl Into<Timestamp>) -> Self {
        self.filter.start = Some(start.into());
        self
    }

    /// Only metrics with `ts` at or before `end` (inclusive).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let a_month_ago = chrono::Utc::now() - chrono::Duration::days(30);
    /// let deleted = client.delete().end(a_month_ago).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn end(mut self, end: impl Into<Timestamp>) -> Self {
        self.filter.end = Some(end.into());
        self
    }

    /// Only metrics whose extra key `key` reads `value`, as [`QueryBuilder::tag`](crate::QueryBuilder::tag).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let deleted = client.delete().tag("host", "decommissioned-3").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tag(mut self, key: impl Into<String>, value: impl Display) -> Self {
        self.filter.tag(key, value);
        self
    }

    /// Only metrics matching a selector, as [`QueryBuilder::matching`](crate::QueryBuilder::matching).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let deleted = client.delete().matching(r#"{env=~"test|staging"}"#).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn matching(mut self, selector: impl Into<String>) -> Self {
        self.filter.matching(selector);
        self
    }

    /// Says that deleting every metric is meant (`all=true`): without it, a delete with no
    /// filter is refused. With filters too, only they count.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let everything = client.delete().all().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn all(mut self) -> Self {
        self.all = true;
        self
    }

    /// Deletes and returns how many metrics were deleted (the same as `.await` on the builder).
    /// `Ok` means the delete is committed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let deleted = client.delete().name("cpu").send().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(self) -> Result<u64> {
        let response = self.request().send().await?;
        if !response.status().is_success() {
            return Err(api_error(response).await.error);
        }
        let bytes = response.bytes().await?;
        serde_json::from_slice::<metrics_types::DeleteResponse>(&bytes)
            .map(|answer| answer.deleted)
            .map_err(|err| Error::Decode(format!("DELETE /v1/metrics answer: {err}")))
    }

    fn request(&self) -> RequestBuilder {
        let mut params = self.filter.params();
        if self.all {
            params.push(("all".to_owned(), "true".to_owned()));
        }
        self.client
            .request(reqwest::Method::DELETE, "v1/metrics")
            .query(&params)
    }
}

impl IntoFuture for DeleteBuilder {
    type Output = Result<u64>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(builder: &DeleteBuilder) -> Vec<(String, String)> {
        let request = builder.request().build().unwrap();
        assert_eq!(request.method(), reqwest::Method::DELETE);
        assert_eq!(request.url().path(), "/v1/metrics");
        request.url().query_pairs().into_owned().collect()
    }

    #[test]
    fn a_delete_sends_the_filters_and_all() {
        let client = Client::new("http://127.0.0.1:5000").unwrap();
        assert!(query_of(&client.delete()).is_empty());
        assert_eq!(
            query_of(&client.delete().all()),
            [("all".to_owned(), "true".to_owned())]
        );
        let delete = client
            .delete()
            .name("cpu")
            .end(Timestamp::parse("2016-01-01").unwrap())
            .tag("host", "web-1")
            .matching(r#"{dc!="eu"}"#);
        let got: Vec<(String, String)> = query_of(&delete);
        let want: Vec<(String, String)> = [
            ("name", "cpu"),
            ("ets", "2016-01-01T00:00:00+00:00"),
            ("tag.host", "web-1"),
            ("match", r#"{dc!="eu"}"#),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(got, want);
    }
}
