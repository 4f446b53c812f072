//! [`AggregateQuery`]: the server's aggregation (`GET /v1/metrics?step=..`) as typed series.
//!
//! [`QueryBuilder::step`](crate::QueryBuilder::step) turns a query into an aggregate one: the
//! same filters, plus the functions ([`Agg`]), the `by` keys, the grid's offset and the [`Fill`]
//! of empty buckets. Its answer is one [`Series`] per name and values of the `by` keys, each
//! with the buckets' starts and one column of values per function.

use std::collections::BTreeMap;
use std::fmt::{self, Display};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use metrics_types::{AggregateAnswer, AggregateSeries, Timestamp};
use reqwest::{header, RequestBuilder};

use crate::{error::api_error, filter::Filter, Client, Error, Result};

/// The width of the buckets of an aggregation: whole seconds, at least one.
///
/// Build it with [`Step::seconds`], [`Step::minutes`], [`Step::hours`], [`Step::days`] or
/// [`Step::weeks`], from a [`std::time::Duration`], or parse the server's form (`"10s"`, `"5m"`,
/// `"1h"`, `"1d"`, `"1w"`, `"90"`). A zero step or one with a fraction of a second is refused
/// when the query is sent, with [`Error::InvalidQuery`], before any request.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use metrics_client::Step;
///
/// assert_eq!(Step::minutes(5), Step::from(Duration::from_secs(300)));
/// assert_eq!("5m".parse::<Step>().unwrap(), Step::minutes(5));
/// assert_eq!(Step::seconds(90).to_string(), "90s");
/// assert_eq!(Step::days(1).as_duration(), Duration::from_secs(86_400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Step(Duration);

impl Step {
    /// `n` seconds.
    pub const fn seconds(n: u64) -> Step {
        Step(Duration::from_secs(n))
    }

    /// `n` minutes.
    pub const fn minutes(n: u64) -> Step {
        Step::seconds(n.saturating_mul(60))
    }

    /// `n` hours.
    pub const fn hours(n: u64) -> Step {
        Step::seconds(n.saturating_mul(3600))
    }

    /// `n` days of 86,400 seconds (buckets are UTC days unless shifted by an offset).
    pub const fn days(n: u64) -> Step {
        Step::seconds(n.saturating_mul(86_400))
    }

    /// `n` weeks of 7 days. Weeks counted from the Unix epoch start on Thursdays; shift them with
    /// an [`offset`](AggregateQuery::offset) of 4 days to start them on Mondays.
    pub const fn weeks(n: u64) -> Step {
        Step::seconds(n.saturating_mul(604_800))
    }

    /// The step as a duration.
    pub const fn as_duration(&self) -> Duration {
        self.0
    }

    /// The whole seconds of a valid step, or why it is not one.
    fn whole_seconds(&self) -> Result<u64> {
        if self.0.subsec_nanos() != 0 || self.0.is_zero() {
            return Err(Error::InvalidQuery(format!(
                "step {:?}: a step is a positive whole number of seconds",
                self.0
            )));
        }
        Ok(self.0.as_secs())
    }
}

impl From<Duration> for Step {
    fn from(duration: Duration) -> Step {
        Step(duration)
    }
}

impl Display for Step {
    /// The server's form: the largest unit that divides it (`5m`, `90s`, `1d`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.whole_seconds() {
            Ok(secs) => f.write_str(&seconds_text(secs)),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

impl FromStr for Step {
    type Err = Error;

    /// Whole seconds (`60`) or a number with a unit `s`, `m`, `h`, `d` or `w` (`10s`, `5m`).
    fn from_str(text: &str) -> Result<Step> {
        let invalid = || {
            Error::InvalidQuery(format!(
                "step {text:?}: expected whole seconds (`60`) or a number with a unit s, m, h, d \
                 or w (`10s`, `5m`, `1h`, `1d`)"
            ))
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().map_err(|_| invalid())?;
        let step = match unit {
            "" | "s" => Step::seconds(n),
            "m" => Step::minutes(n),
            "h" => Step::hours(n),
            "d" => Step::days(n),
            "w" => Step::weeks(n),
            _ => return Err(invalid()),
        };
        step.whole_seconds().map_err(|_| invalid())?;
        Ok(step)
    }
}

/// `secs` in the largest unit that divides it: `5m`, `90s`, `2w`.
fn seconds_text(secs: u64) -> String {
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// An aggregate function, computed per bucket.
///
/// `Count` counts every metric of a bucket; every other function reads only the metrics whose
/// value is a number (strings and booleans are skipped and counted in
/// [`Series::non_numeric`]). Its [`Display`] is its name on the wire and in the answer (`avg`,
/// `p99`, `p99.9`); [`FromStr`] reads the same names.
///
/// # Examples
///
/// ```
/// use metrics_client::Agg;
///
/// assert_eq!(Agg::P99.to_string(), "p99");
/// assert_eq!(Agg::percentile(99.9).unwrap().to_string(), "p99.9");
/// assert_eq!("stddev".parse::<Agg>().unwrap(), Agg::Stddev);
/// assert!(Agg::percentile(101.0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Agg {
    /// How many metrics, numeric or not (0 in a filled bucket).
    Count,
    /// The sum of the numbers.
    Sum,
    /// Their mean.
    Avg,
    /// The smallest number.
    Min,
    /// The largest number.
    Max,
    /// The number with the earliest `ts` (ties: the first stored).
    First,
    /// The number with the latest `ts` (ties: the last stored).
    Last,
    /// The population standard deviation (divides by `n`).
    Stddev,
    /// A percentile, by linear interpolation between the closest ranks (as PostgreSQL's
    /// `percentile_cont` and NumPy's default). Build it with [`Agg::percentile`] or use
    /// [`Agg::P50`], [`Agg::P90`], [`Agg::P95`], [`Agg::P99`], [`Agg::P999`].
    Percentile(Percentile),
}

/// A percentile from 0 to 100 in steps of 0.0001, for [`Agg::Percentile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Percentile {
    /// In ten-thousandths of a percent: 990,000 is p99.
    ten_thousandths: u32,
}

impl Percentile {
    /// The percentile, from 0 to 100 (`99.9`).
    pub fn value(&self) -> f64 {
        f64::from(self.ten_thousandths) / 10_000.0
    }
}

impl Agg {
    /// The median.
    pub const P50: Agg = Agg::Percentile(Percentile {
        ten_thousandths: 500_000,
    });
    /// The 90th percentile.
    pub const P90: Agg = Agg::Percentile(Percentile {
        ten_thousandths: 900_000,
    });
    /// The 95th percentile.
    pub const P95: Agg = Agg::Percentile(Percentile {
        ten_thousandths: 950_000,
    });
    /// The 99th percentile.
    pub const P99: Agg = Agg::Percentile(Percentile {
        ten_thousandths: 990_000,
    });
    /// The 99.9th percentile.
    pub const P999: Agg = Agg::Percentile(Percentile {
        ten_thousandths: 999_000,
    });

    /// The `p`th percentile: `p` from 0 to 100 with at most four decimals (`99.99`); anything
    /// else is [`Error::InvalidQuery`].
    ///
    /// # Examples
    ///
    /// ```
    /// use metrics_client::Agg;
    ///
    /// assert_eq!(Agg::percentile(99.0).unwrap(), Agg::P99);
    /// assert!(Agg::percentile(f64::NAN).is_err());
    /// assert!(Agg::percentile(12.345_67).is_err());
    /// ```
    pub fn percentile(p: f64) -> Result<Agg> {
        let scaled = p * 10_000.0;
        let rounded = scaled.round();
        if !(0.0..=1_000_000.0).contains(&rounded) || (scaled - rounded).abs() > 1e-6 {
            return Err(Error::InvalidQuery(format!(
                "percentile {p}: expected a number from 0 to 100 with at most four decimals"
            )));
        }
        Ok(Agg::Percentile(Percentile {
            // In range: checked above.
            ten_thousandths: rounded as u32,
        }))
    }
}

impl Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::First => "first",
            Agg::Last => "last",
            Agg::Stddev => "stddev",
            Agg::Percentile(p) => {
                let whole = p.ten_thousandths / 10_000;
                let fraction = p.ten_thousandths % 10_000;
                return if fraction == 0 {
                    write!(f, "p{whole}")
                } else {
                    let digits = format!("{fraction:04}");
                    write!(f, "p{whole}.{}", digits.trim_end_matches('0'))
                };
            }
        })
    }
}

impl FromStr for Agg {
    type Err = Error;

    /// `count`, `sum`, `avg`, `min`, `max`, `first`, `last`, `stddev`, or `p` and a percentage
    /// (`p50`, `p99.9`).
    fn from_str(text: &str) -> Result<Agg> {
        Ok(match text {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "first" => Agg::First,
            "last" => Agg::Last,
            "stddev" => Agg::Stddev,
            _ => {
                let invalid = || {
                    Error::InvalidQuery(format!(
                        "{text:?} is not an aggregate function; expected count, sum, avg, min, \
                         max, first, last, stddev or a percentile pNN (p50, p99.9)"
                    ))
                };
                let digits = text.strip_prefix('p').ok_or_else(invalid)?;
                let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
                let plain = |s: &str, most: usize| {
                    !s.is_empty() && s.len() <= most && s.bytes().all(|b| b.is_ascii_digit())
                };
                if !plain(whole, 3) || (digits.contains('.') && !plain(fraction, 4)) {
                    return Err(invalid());
                }
                let whole: u32 = whole.parse().map_err(|_| invalid())?;
                let fraction: u32 = format!("{fraction:0<4}").parse().map_err(|_| invalid())?;
                let ten_thousandths = whole * 10_000 + fraction;
                if ten_thousandths > 1_000_000 {
                    return Err(invalid());
                }
                Agg::Percentile(Percentile { ten_thousandths })
            }
        })
    }
}

/// What an empty bucket (no metric at all) inside the answer's span becomes.
///
/// `count` is 0 in a filled bucket whatever the fill.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Fill {
    /// Left out: `ts` skips it (the default; `fill=none`).
    #[default]
    None,
    /// Kept, every value `None` (`fill=null`): a gap in a chart.
    Null,
    /// Kept, each value the previous bucket's (`fill=prev`).
    Previous,
    /// Kept, each value on the straight line between the buckets around it (`fill=linear`).
    Linear,
    /// Kept, every value this number (`fill=0`). It must be finite.
    Value(f64),
}

impl Fill {
    /// The `fill` parameter, or why there is none.
    fn wire(&self) -> Result<String> {
        Ok(match self {
            Fill::None => "none".to_owned(),
            Fill::Null => "null".to_owned(),
            Fill::Previous => "prev".to_owned(),
            Fill::Linear => "linear".to_owned(),
            Fill::Value(v) if v.is_finite() => v.to_string(),
            Fill::Value(v) => {
                return Err(Error::InvalidQuery(format!(
                    "fill {v}: a fill value must be a finite number"
                )))
            }
        })
    }
}

/// One series of an aggregation: a name and values of the `by` keys, the buckets' starts, and
/// one column of values per function, each as long as [`ts`](Self::ts).
///
/// # Examples
///
/// ```
/// use metrics_client::{Agg, Series};
///
/// let wire: metrics_client::AggregateSeries = serde_json::from_str(
///     r#"{"name":"cpu","tags":{"host":"web-1"},"non_numeric":0,
///         "ts":[60,120],"avg":[0.5,null],"p99":[0.9,0.7]}"#,
/// ).unwrap();
/// let series = Series::try_from(wire).unwrap();
/// assert_eq!(series.tags["host"], "web-1");
/// assert_eq!(series.values(Agg::Avg), Some(&[Some(0.5), None][..]));
/// assert_eq!(series.points(Agg::P99).collect::<Vec<_>>(), [(60, Some(0.9)), (120, Some(0.7))]);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Series {
    /// The metrics' name.
    pub name: String,
    /// The values of the `by` keys, as text (a key its metrics lack is left out).
    pub tags: BTreeMap<String, String>,
    /// How many of the series' metrics have a value that is not a number: counted by
    /// [`Agg::Count`], left out of every other function.
    pub non_numeric: u64,
    /// The buckets' starts, in Unix seconds, ascending.
    pub ts: Vec<i64>,
    /// One column per function asked: `None` where a bucket has no number (or is filled with
    /// [`Fill::Null`]).
    pub columns: BTreeMap<Agg, Vec<Option<f64>>>,
}

impl Series {
    /// The column of `agg`, one value per bucket; `None` if it was not asked for.
    pub fn values(&self, agg: Agg) -> Option<&[Option<f64>]> {
        self.columns.get(&agg).map(Vec::as_slice)
    }

    /// `(bucket start in Unix seconds, value)` of `agg`, in time order; nothing if it was not
    /// asked for.
    pub fn points(&self, agg: Agg) -> impl Iterator<Item = (i64, Option<f64>)> + '_ {
        let values = self.values(agg).unwrap_or_default();
        self.ts.iter().copied().zip(values.iter().copied())
    }

    /// The buckets' starts as date-times.
    pub fn starts(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.ts
            .iter()
            .map(|&secs| DateTime::from_timestamp(secs, 0).unwrap_or_default())
    }
}

impl TryFrom<AggregateSeries> for Series {
    type Error = Error;

    /// Types the wire's columns; an unknown function or a column whose length is not that of
    /// `ts` is [`Error::Decode`].
    fn try_from(wire: AggregateSeries) -> Result<Series> {
        let mut columns = BTreeMap::new();
        for (label, column) in wire.columns {
            let agg: Agg = label.parse().map_err(|_| {
                Error::Decode(format!("an aggregate series with a column {label:?}"))
            })?;
            if column.len() != wire.ts.len() {
                return Err(Error::Decode(format!(
                    "the {label} column of {} has {} values for {} buckets",
                    wire.name,
                    column.len(),
                    wire.ts.len()
                )));
            }
            columns.insert(agg, column);
        }
        Ok(Series {
            name: wire.name,
            tags: wire.tags,
            non_numeric: wire.non_numeric,
            ts: wire.ts,
            columns,
        })
    }
}

/// An aggregate query, from [`QueryBuilder::step`](crate::QueryBuilder::step): per bucket of
/// the [`Step`]'s width, the [`Agg`] functions of the metrics the filters select, one [`Series`]
/// per name and values of the [`by`](Self::by) keys.
///
/// Buckets are `[origin + k·step, origin + (k+1)·step)`, labelled by their start; `origin` is
/// the Unix epoch shifted by the [`offset`](Self::offset). `.await` (or [`send`](Self::send))
/// returns the series ordered by name, then by the values of the `by` keys. Without
/// [`agg`](Self::agg), the function is [`Agg::Avg`].
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// use metrics_client::{Agg, Fill, Step};
///
/// let per_host = client
///     .query()
///     .name("latency")
///     .start(chrono::Utc::now() - chrono::Duration::days(1))
///     .step(Step::minutes(5))
///     .agg([Agg::Avg, Agg::P99])
///     .by(["host"])
///     .fill(Fill::Null)
///     .await?;
/// for series in &per_host {
///     println!("{} {:?}: {:?}", series.name, series.tags, series.values(Agg::P99));
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is awaited or sent"]
pub struct AggregateQuery {
    client: Client,
    filter: Filter,
    step: Step,
    functions: Vec<Agg>,
    by: Vec<String>,
    offset: Option<TimeDelta>,
    fill: Fill,
    /// An option of the raw query set before `.step()` (`limit`, ...), refused at send.
    raw_only: Option<&'static str>,
}

impl AggregateQuery {
    pub(crate) fn new(
        client: Client,
        filter: Filter,
        step: Step,
        raw_only: Option<&'static str>,
    ) -> Self {
        AggregateQuery {
            client,
            filter,
            step,
            functions: Vec::new(),
            by: Vec::new(),
            offset: None,
            fill: Fill::None,
            raw_only,
        }
    }

    /// Only metrics with this name; call it again for any of several names (as
    /// [`QueryBuilder::name`](crate::QueryBuilder::name)). Each name is a series of its own.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.filter.name(name);
        self
    }

    /// Only metrics with `ts` at or after `start` (as
    /// [`QueryBuilder::start`](crate::QueryBuilder::start)). With a [`Fill`], the buckets run
    /// from that of `start` (else of the first metric selected) to that of `end` (else of the
    /// last).
    pub fn start(mut self, start: impl Into<Timestamp>) -> Self {
        self.filter.start = Some(start.into());
        self
    }

    /// Only metrics with `ts` at or before `end` (as
    /// [`QueryBuilder::end`](crate::QueryBuilder::end)).
    pub fn end(mut self, end: impl Into<Timestamp>) -> Self {
        self.filter.end = Some(end.into());
        self
    }

    /// Only metrics whose extra key `key` reads `value` (as
    /// [`QueryBuilder::tag`](crate::QueryBuilder::tag)).
    pub fn tag(mut self, key: impl Into<String>, value: impl Display) -> Self {
        self.filter.tag(key, value);
        self
    }

    /// Only metrics matching a Prometheus-style selector (as
    /// [`QueryBuilder::matching`](crate::QueryBuilder::matching)).
    pub fn matching(mut self, selector: impl Into<String>) -> Self {
        self.filter.matching(selector);
        self
    }

    /// Another bucket width.
    pub fn step(mut self, step: impl Into<Step>) -> Self {
        self.step = step.into();
        self
    }

    /// The functions to compute per bucket, one column each; called again, it adds to them.
    /// A function named twice is computed once. Without any, [`Agg::Avg`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::{Agg, Step};
    ///
    /// let p = Agg::percentile(99.9)?;
    /// let series = client.query().name("latency").step(Step::hours(1))
    ///     .agg([Agg::Count, Agg::Max, p]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn agg(mut self, functions: impl IntoIterator<Item = Agg>) -> Self {
        for function in functions {
            if !self.functions.contains(&function) {
                self.functions.push(function);
            }
        }
        self
    }

    /// Splits the series by the values of these tag keys (as well as by name); called again, it
    /// adds to them. A metric without one of the keys goes to the series without it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::{Agg, Step};
    ///
    /// let per_route_and_host = client.query().name("latency").step(Step::minutes(1))
    ///     .agg([Agg::P99]).by(["route", "host"]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn by<K: Into<String>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        for key in keys {
            let key = key.into();
            if !self.by.contains(&key) {
                self.by.push(key);
            }
        }
        self
    }

    /// Shifts the grid: buckets start at `offset + k·step` from the Unix epoch. Whole seconds,
    /// positive or negative; `Duration::hours(-2)` with a step of a day makes days that start
    /// at midnight UTC+2.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::{Agg, Step};
    ///
    /// let paris_days = client.query().name("sales").step(Step::days(1))
    ///     .offset(chrono::Duration::hours(-1)).agg([Agg::Sum]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn offset(mut self, offset: TimeDelta) -> Self {
        self.offset = Some(offset);
        self
    }

    /// What empty buckets become (default [`Fill::None`]: left out).
    pub fn fill(mut self, fill: Fill) -> Self {
        self.fill = fill;
        self
    }

    /// Runs the aggregation (the same as `.await` on the builder).
    ///
    /// A query the server cannot answer (more than 11,000 buckets per series, an unknown key
    /// ...) is [`Error::Api`] with the server's message (it suggests a step that fits); one that
    /// cannot be said on the wire (a zero step, a fraction of a second, a non-finite fill, a
    /// raw query's option) is [`Error::InvalidQuery`], before any request.
    pub async fn send(self) -> Result<Vec<Series>> {
        let response = self.request()?.send().await?;
        if !response.status().is_success() {
            return Err(api_error(response).await.error);
        }
        let bytes = response.bytes().await?;
        let answer: AggregateAnswer = serde_json::from_slice(&bytes)
            .map_err(|err| Error::Decode(format!("an aggregate answer: {err}")))?;
        let asked = self.functions();
        answer
            .series
            .into_iter()
            .map(|wire| {
                let series = Series::try_from(wire)?;
                match asked.iter().find(|agg| !series.columns.contains_key(agg)) {
                    Some(missing) => Err(Error::Decode(format!(
                        "the series {} has no {missing} column",
                        series.name
                    ))),
                    None => Ok(series),
                }
            })
            .collect()
    }

    /// The functions sent: those asked, or `avg`.
    fn functions(&self) -> Vec<Agg> {
        if self.functions.is_empty() {
            vec![Agg::Avg]
        } else {
            self.functions.clone()
        }
    }

    /// The query parameters, or why the query cannot be sent.
    fn params(&self) -> Result<Vec<(String, String)>> {
        if let Some(option) = self.raw_only {
            return Err(Error::InvalidQuery(format!(
                "`.{option}()` applies to raw queries, not to aggregations (after `.step()`); \
                 narrow the answer with start/end or a larger step"
            )));
        }
        let mut params = self.filter.params();
        let step = self.step.whole_seconds()?;
        params.push(("step".to_owned(), seconds_text(step)));
        let functions: Vec<String> = self.functions().iter().map(Agg::to_string).collect();
        params.push(("agg".to_owned(), functions.join(",")));
        if !self.by.is_empty() {
            params.push(("by".to_owned(), self.by.join(",")));
        }
        if let Some(offset) = self.offset {
            if offset.subsec_nanos() != 0 {
                return Err(Error::InvalidQuery(format!(
                    "offset {offset}: an offset is a whole number of seconds"
                )));
            }
            let secs = offset.num_seconds();
            let text = seconds_text(secs.unsigned_abs());
            let text = if secs < 0 { format!("-{text}") } else { text };
            params.push(("offset".to_owned(), text));
        }
        if self.fill != Fill::None {
            params.push(("fill".to_owned(), self.fill.wire()?));
        }
        Ok(params)
    }

    /// `GET /v1/metrics` with this aggregation's parameters.
    fn request(&self) -> Result<RequestBuilder> {
        Ok(self
            .client
            .request(reqwest::Method::GET, "v1/metrics")
            .header(header::ACCEPT, "application/json")
            .query(&self.params()?))
    }
}

impl IntoFuture for AggregateQuery {
    type Output = Result<Vec<Series>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(query: &AggregateQuery) -> Vec<(String, String)> {
        let request = query.request().unwrap().build().unwrap();
        assert_eq!(request.url().path(), "/base/v1/metrics");
        assert_eq!(request.headers()[header::ACCEPT], "application/json");
        request.url().query_pairs().into_owned().collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn client() -> Client {
        Client::new("http://127.0.0.1:5000/base").unwrap()
    }

    #[test]
    fn an_aggregation_sends_its_filters_and_parameters_as_the_contract_names_them() {
        let query = client()
            .query()
            .name("cpu")
            .start(Timestamp::parse("2016-01-01").unwrap())
            .tag("host", "web-1")
            .step(Step::minutes(5))
            .end(Timestamp::parse("2016-01-02").unwrap())
            .matching(r#"{region=~"eu-.*"}"#)
            .agg([Agg::Avg, Agg::Max, Agg::percentile(99.9).unwrap()])
            .agg([Agg::Max, Agg::Count])
            .by(["host", "region"])
            .by(["host"])
            .offset(TimeDelta::hours(-1))
            .fill(Fill::Value(-2.5));
        assert_eq!(
            query_of(&query),
            pairs(&[
                ("name", "cpu"),
                ("sts", "2016-01-01T00:00:00+00:00"),
                ("ets", "2016-01-02T00:00:00+00:00"),
                ("tag.host", "web-1"),
                ("match", r#"{region=~"eu-.*"}"#),
                ("step", "5m"),
                ("agg", "avg,max,p99.9,count"),
                ("by", "host,region"),
                ("offset", "-1h"),
                ("fill", "-2.5"),
            ])
        );
        // The defaults: avg, no by, no offset, fill=none left to the server.
        let plain = client().query().step(Duration::from_secs(90));
        assert_eq!(query_of(&plain), pairs(&[("step", "90s"), ("agg", "avg")]));
        for (fill, text) in [
            (Fill::Null, "null"),
            (Fill::Previous, "prev"),
            (Fill::Linear, "linear"),
            (Fill::Value(0.0), "0"),
        ] {
            let got = query_of(&client().query().step(Step::days(1)).fill(fill));
            assert_eq!(got[2], ("fill".to_owned(), text.to_owned()), "{fill:?}");
        }
        let shifted = client()
            .query()
            .step(Step::weeks(1))
            .offset(TimeDelta::seconds(4 * 86_400 + 30));
        assert_eq!(query_of(&shifted)[2], ("offset".into(), "345630s".into()));
    }

    fn refused(query: AggregateQuery, says: &str) {
        match query.request() {
            Err(Error::InvalidQuery(message)) => {
                assert!(message.contains(says), "{message:?} should say {says}")
            }
            other => panic!("expected InvalidQuery, got {other:?}"),
        }
    }

    #[test]
    fn what_cannot_be_said_on_the_wire_is_refused_before_sending() {
        let q = || client().query();
        refused(q().step(Step::seconds(0)), "step");
        refused(q().step(Duration::from_millis(1500)), "step");
        refused(
            q().step(Step::minutes(1))
                .offset(TimeDelta::milliseconds(10)),
            "offset",
        );
        refused(
            q().step(Step::minutes(1)).fill(Fill::Value(f64::NAN)),
            "fill",
        );
        refused(
            q().step(Step::minutes(1)).fill(Fill::Value(f64::INFINITY)),
            "fill",
        );
        refused(q().limit(10).step(Step::minutes(1)), "`.limit()`");
        refused(q().descending().step(Step::minutes(1)), "`.descending()`");
        refused(q().cursor("abc").step(Step::minutes(1)), "`.cursor()`");
    }

    #[test]
    fn functions_read_and_write_the_servers_names() {
        for text in [
            "count", "sum", "avg", "min", "max", "first", "last", "stddev", "p0", "p50", "p99",
            "p99.9", "p99.99", "p99.9999", "p100", "p12.05",
        ] {
            let agg: Agg = text.parse().unwrap();
            assert_eq!(agg.to_string(), text);
        }
        assert_eq!("p99.90".parse::<Agg>().unwrap(), Agg::P999);
        assert_eq!(Agg::percentile(50.0).unwrap(), Agg::P50);
        assert_eq!(Agg::percentile(0.0001).unwrap().to_string(), "p0.0001");
        let Agg::Percentile(p) = Agg::P95 else {
            panic!("P95 is a percentile")
        };
        assert_eq!(p.value(), 95.0);
        for text in [
            "median",
            "p",
            "p100.1",
            "p101",
            "p1000",
            "p9.",
            "p.5",
            "p99.99999",
            "p-1",
            "P99",
            "avg ",
            "",
        ] {
            assert!(
                matches!(text.parse::<Agg>(), Err(Error::InvalidQuery(_))),
                "{text:?}"
            );
        }
        for p in [-1.0, 100.5, f64::NAN, f64::INFINITY, 1.23456] {
            assert!(Agg::percentile(p).is_err(), "{p}");
        }
    }

    #[test]
    fn steps_read_and_write_the_servers_forms() {
        for (text, secs, shown) in [
            ("60", 60, "1m"),
            ("10s", 10, "10s"),
            ("90s", 90, "90s"),
            ("5m", 300, "5m"),
            ("1h", 3600, "1h"),
            ("36h", 129_600, "36h"),
            ("1d", 86_400, "1d"),
            ("14d", 1_209_600, "2w"),
        ] {
            let step: Step = text.parse().unwrap();
            assert_eq!(step, Step::seconds(secs), "{text}");
            assert_eq!(step.to_string(), shown);
        }
        for text in ["", "0", "0m", "1.5m", "1y", "m", "-1m", " 1m"] {
            assert!(text.parse::<Step>().is_err(), "{text:?}");
        }
    }

    fn wire(text: &str) -> AggregateSeries {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_wire_series_becomes_typed_columns_or_a_decode_error() {
        let series = Series::try_from(wire(
            r#"{"name":"cpu","tags":{},"non_numeric":2,"ts":[-60,0],
                "count":[3,0],"p99.9":[1.5,null]}"#,
        ))
        .unwrap();
        assert_eq!(series.non_numeric, 2);
        assert_eq!(series.values(Agg::Count), Some(&[Some(3.0), Some(0.0)][..]));
        assert_eq!(
            series.values(Agg::percentile(99.9).unwrap()),
            Some(&[Some(1.5), None][..])
        );
        assert_eq!(series.values(Agg::Avg), None);
        assert_eq!(series.points(Agg::Avg).count(), 0);
        assert_eq!(
            series.starts().map(|t| t.timestamp()).collect::<Vec<_>>(),
            [-60, 0]
        );
        for text in [
            r#"{"name":"cpu","tags":{},"non_numeric":0,"ts":[0],"median":[1]}"#,
            r#"{"name":"cpu","tags":{},"non_numeric":0,"ts":[0],"avg":[1,2]}"#,
        ] {
            assert!(
                matches!(Series::try_from(wire(text)), Err(Error::Decode(_))),
                "{text}"
            );
        }
    }
}
