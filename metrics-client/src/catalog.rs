//! [`CatalogBuilder`]: what the server holds: metric names, tag keys, the values of a tag key.

use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use metrics_types::{NameList, NameSummary, TagKeys, TagValues};
use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::{error::api_error, filter::Filter, Client, Error, Result};

/// A question to the server's catalog, from [`Client::names`], [`Client::tag_keys`] or
/// [`Client::tag_values`]; `.await` it for the answer.
///
/// The catalog is kept by the server as metrics arrive, so it answers at once however many
/// metrics are stored. Names, tags and selectors narrow it as they narrow a query (time ranges
/// do not apply).
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// let keys = client.tag_keys().name("cpu").await?;                 // ["host", "region"]
/// let hosts = client.tag_values("host").name("cpu").await?;         // ["web-1", "web-2"]
/// let eu_hosts = client.tag_values("host").tag("region", "eu").await?;
/// for name in client.names().await? {
///     println!("{}: {} metrics, tags {:?}", name.name, name.count, name.tags);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a catalog question does nothing until it is awaited"]
pub struct CatalogBuilder<T> {
    client: Client,
    url: Url,
    filter: Filter,
    answer: fn(&[u8]) -> serde_json::Result<T>,
}

impl<T: Send + 'static> CatalogBuilder<T> {
    /// Only metrics with this name; call it again for any of several names.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let keys = client.tag_keys().name("cpu").name("mem").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.filter.name(name);
        self
    }

    /// Only metrics whose extra key `key` reads `value`, as [`QueryBuilder::tag`](crate::QueryBuilder::tag).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let eu_hosts = client.tag_values("host").tag("region", "eu").await?;
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
    /// let names = client.names().matching(r#"{host=~"web-.*"}"#).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn matching(mut self, selector: impl Into<String>) -> Self {
        self.filter.matching(selector);
        self
    }

    /// Asks (the same as `.await` on the builder).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let keys = client.tag_keys().send().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(self) -> Result<T> {
        let response = self.request().send().await?;
        if !response.status().is_success() {
            return Err(api_error(response).await.error);
        }
        let bytes = response.bytes().await?;
        (self.answer)(&bytes)
            .map_err(|err| Error::Decode(format!("GET {}: {err}", self.url.path())))
    }

    fn request(&self) -> reqwest::RequestBuilder {
        self.client
            .request_url(reqwest::Method::GET, self.url.clone())
            .query(&self.filter.params())
    }
}

impl<T: Send + 'static> IntoFuture for CatalogBuilder<T> {
    type Output = Result<T>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

fn json<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(bytes)
}

impl Client {
    /// The metric names the server holds, sorted, each with its count, time span and tag keys
    /// (`GET /v1/names`): see [`CatalogBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// for name in client.names().await? {
    ///     println!("{} ({} metrics, {} to {}), tags {:?}", name.name, name.count, name.first_ts, name.last_ts, name.tags);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn names(&self) -> CatalogBuilder<Vec<NameSummary>> {
        CatalogBuilder {
            client: self.clone(),
            url: self.url("v1/names"),
            filter: Filter::default(),
            answer: |bytes| json::<NameList>(bytes).map(|list| list.names),
        }
    }

    /// The tag keys (extra keys) of the stored metrics, sorted (`GET /v1/tags`): see
    /// [`CatalogBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let cpu_keys = client.tag_keys().name("cpu").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tag_keys(&self) -> CatalogBuilder<Vec<String>> {
        CatalogBuilder {
            client: self.clone(),
            url: self.url("v1/tags"),
            filter: Filter::default(),
            answer: |bytes| json::<TagKeys>(bytes).map(|tags| tags.keys),
        }
    }

    /// The texts tag key `key` takes among the stored metrics, sorted
    /// (`GET /v1/tags/{key}/values`): a string as its content, a number or boolean as its JSON
    /// text (`80`, `true`), what [`QueryBuilder::tag`](crate::QueryBuilder::tag) matches. See
    /// [`CatalogBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let hosts = client.tag_values("host").name("cpu").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tag_values(&self, key: &str) -> CatalogBuilder<Vec<String>> {
        let mut url = self.url("v1/tags");
        // A base URL always has a path; the key is one segment, escaped as such.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(key).push("values");
        }
        CatalogBuilder {
            client: self.clone(),
            url,
            filter: Filter::default(),
            answer: |bytes| json::<TagValues>(bytes).map(|tags| tags.values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built<T: Send + 'static>(builder: &CatalogBuilder<T>) -> (String, Vec<(String, String)>) {
        let request = builder.request().build().unwrap();
        let pairs = request.url().query_pairs().into_owned().collect();
        (request.url().path().to_owned(), pairs)
    }

    #[test]
    fn each_question_has_its_route_and_the_filters() {
        let client = Client::new("http://127.0.0.1:5000/api/").unwrap();
        assert_eq!(built(&client.names()).0, "/api/v1/names");
        let (path, query) = built(&client.tag_keys().name("cpu").tag("dc", "eu"));
        assert_eq!(path, "/api/v1/tags");
        assert_eq!(
            query,
            [
                ("name".to_owned(), "cpu".to_owned()),
                ("tag.dc".to_owned(), "eu".to_owned())
            ]
        );
        let (path, query) = built(&client.tag_values("a/b c?").matching("{x=\"1\"}"));
        assert_eq!(path, "/api/v1/tags/a%2Fb%20c%3F/values");
        assert_eq!(query, [("match".to_owned(), "{x=\"1\"}".to_owned())]);
    }

    #[test]
    fn the_answers_are_read_from_their_envelopes() {
        let client = Client::new("http://127.0.0.1:5000").unwrap();
        let keys = (client.tag_keys().answer)(br#"{"keys":["host","region"]}"#).unwrap();
        assert_eq!(keys, ["host", "region"]);
        let values =
            (client.tag_values("host").answer)(br#"{"key":"host","values":["80","web-1"]}"#)
                .unwrap();
        assert_eq!(values, ["80", "web-1"]);
        let names = (client.names().answer)(
            br#"{"names":[{"name":"cpu","count":2,"first_ts":"a","last_ts":"b","tags":["host"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            (names[0].name.as_str(), names[0].tags.as_slice()),
            ("cpu", &["host".to_owned()][..])
        );
        assert!((client.tag_keys().answer)(b"[]").is_err());
    }
}
