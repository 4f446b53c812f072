//! Aggregation in domain terms: which buckets ([`Aggregation`]: a step, an offset, a fill), which
//! functions ([`Function`]), and what comes back ([`AggSeries`]: one series per name and values
//! of the `by` keys, one column per function).
//!
//! # The rules (the same on every backend)
//!
//! - Bucket `k` is `[origin + k·step, origin + (k+1)·step)`, labelled by its start; `origin` is
//!   the Unix epoch plus `offset`. Instants before the epoch fall in the bucket whose start is at
//!   or below them (a floor, not a truncation).
//! - `count` counts every metric of a bucket. Every other function reads only the metrics whose
//!   `value` is a number (booleans and strings are skipped, and counted in
//!   [`AggSeries::non_numeric`]); a bucket without a number has `null` there.
//! - `first` and `last` are the numeric values with the lowest and highest `(ts, storage order)`.
//! - `stddev` is the population standard deviation (divides by `n`, as PostgreSQL's
//!   `stddev_pop` and Prometheus's `stddev_over_time`), computed in two passes (the mean first,
//!   then the squared deviations from it), so it does not lose precision to cancellation.
//! - `pNN` is the percentile by linear interpolation between the closest ranks, as PostgreSQL's
//!   `percentile_cont`, NumPy's default and Excel's `PERCENTILE.INC`: with the bucket's `n`
//!   numbers sorted, `h = (n−1)·NN/100`, the answer is `x[⌊h⌋] + (h−⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`
//!   (0-based). The ranks are found by the database in exact integer arithmetic and the
//!   interpolation is one IEEE operation in Rust, so both backends give bit-identical results.
//! - Sums (`sum`, `avg`, `stddev`) depend on the order the database adds in, which differs between
//!   backends: they agree to a relative 1e-12 or better; every other function is exact.
//! - [`Fill`] applies to buckets without any metric inside the grid's span; `count` is 0 there
//!   whatever the fill.

use std::collections::BTreeMap;

/// The most buckets a series may have, as in Prometheus.
pub const MAX_BUCKETS: u64 = 11_000;

/// One aggregate function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function {
    /// How many metrics (numeric or not).
    Count,
    /// The sum of the numbers.
    Sum,
    /// Their mean.
    Avg,
    /// The smallest.
    Min,
    /// The largest.
    Max,
    /// The number with the lowest `(ts, id)`.
    First,
    /// The number with the highest `(ts, id)`.
    Last,
    /// The population standard deviation.
    Stddev,
    /// A percentile by linear interpolation (see the module docs).
    Percentile(Percentile),
}

/// A percentile as the exact fraction `numerator / denominator` (`p99.9` is 999/1000), so that
/// ranks are computed in integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentile {
    /// The numerator, at most `denominator`.
    pub numerator: i64,
    /// A power of ten, at least 100.
    pub denominator: i64,
}

impl Function {
    /// Reads a function's name: `count`, `sum`, `avg`, `min`, `max`, `first`, `last`,
    /// `stddev`, or `p` and a percentage from 0 to 100 with at most 4 decimals (`p50`, `p99.9`).
    pub fn parse(text: &str) -> Option<Function> {
        Some(match text {
            "count" => Function::Count,
            "sum" => Function::Sum,
            "avg" => Function::Avg,
            "min" => Function::Min,
            "max" => Function::Max,
            "first" => Function::First,
            "last" => Function::Last,
            "stddev" => Function::Stddev,
            _ => {
                let digits = text.strip_prefix('p')?;
                let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
                let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                if whole.is_empty()
                    || whole.len() > 3
                    || fraction.len() > 4
                    || (digits.contains('.') && fraction.is_empty())
                    || !all_digits(whole)
                    || !all_digits(fraction)
                {
                    return None;
                }
                let denominator = 100 * 10_i64.pow(fraction.len() as u32);
                let numerator: i64 = format!("{whole}{fraction}").parse().ok()?;
                if numerator > denominator {
                    return None;
                }
                Function::Percentile(Percentile {
                    numerator,
                    denominator,
                })
            }
        })
    }

    /// The function's name as the answer's column: `avg`, `p99`, `p99.9`.
    pub fn label(&self) -> String {
        match self {
            Function::Count => "count".into(),
            Function::Sum => "sum".into(),
            Function::Avg => "avg".into(),
            Function::Min => "min".into(),
            Function::Max => "max".into(),
            Function::First => "first".into(),
            Function::Last => "last".into(),
            Function::Stddev => "stddev".into(),
            Function::Percentile(p) => {
                let decimals = p.denominator.ilog10() as usize - 2;
                let scale = p.denominator / 100;
                let whole = p.numerator / scale;
                let fraction = p.numerator % scale;
                if decimals == 0 {
                    format!("p{whole}")
                } else {
                    let fraction = format!("{fraction:0decimals$}");
                    format!("p{whole}.{fraction}")
                }
            }
        }
    }
}

impl Percentile {
    /// The 1-based ranks, among `n` sorted numbers, of the two numbers the percentile
    /// interpolates between, and the weight of the second (`n` ≥ 1).
    pub fn ranks(&self, n: i64) -> (i64, i64, f64) {
        let scaled = (n - 1) * self.numerator;
        let low = 1 + scaled / self.denominator;
        let rest = scaled % self.denominator;
        let high = if rest == 0 { low } else { low + 1 };
        (low, high, rest as f64 / self.denominator as f64)
    }

    /// The interpolated percentile between the numbers at the two ranks.
    pub fn interpolate(&self, n: i64, low: f64, high: f64) -> f64 {
        let (_, _, weight) = self.ranks(n);
        if weight == 0.0 {
            low
        } else {
            low + weight * (high - low)
        }
    }
}

/// What to put in a bucket without metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    /// Leave it out (the default).
    #[default]
    None,
    /// Keep it, with `null` for every function but `count`.
    Null,
    /// Repeat the previous bucket's value of each function (`null` before the first).
    Prev,
    /// Interpolate linearly in time between the neighbouring buckets with a value (`null`
    /// before the first and after the last).
    Linear,
    /// This number.
    Value(f64),
}

/// How to aggregate a selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    /// The bucket width, in microseconds (positive).
    pub step_micros: i64,
    /// The grid's shift from the epoch, in microseconds (any sign; only its remainder by the
    /// step matters).
    pub offset_micros: i64,
    /// The functions, in the answer's column order.
    pub functions: Vec<Function>,
    /// Tag keys whose values split the series, besides the name.
    pub by: Vec<String>,
    /// What empty buckets become.
    pub fill: Fill,
}

impl Aggregation {
    /// The start of the bucket holding `ts_micros`.
    pub fn bucket_of(&self, ts_micros: i64) -> i64 {
        let step = i128::from(self.step_micros);
        let ts = i128::from(ts_micros);
        let shifted = ts - i128::from(self.offset_micros);
        let start = ts - shifted.rem_euclid(step);
        start as i64
    }

    /// How many buckets span the instants `first..=last` (0 when `last < first`).
    pub fn buckets_between(&self, first_micros: i64, last_micros: i64) -> u64 {
        if last_micros < first_micros {
            return 0;
        }
        let first = i128::from(self.bucket_of(first_micros));
        let last = i128::from(self.bucket_of(last_micros));
        ((last - first) / i128::from(self.step_micros) + 1) as u64
    }
}

/// A step that keeps `span_micros` within [`MAX_BUCKETS`] buckets: the smallest of the usual
/// steps (1s, 5s, 10s, 15s, 30s, 1m, 5m, 10m, 15m, 30m, 1h, 3h, 6h, 12h, 1d, 7d) that does, else
/// whole days.
pub fn suggested_step(span_micros: i64) -> String {
    const STEPS: [(i64, &str); 16] = [
        (1, "1s"),
        (5, "5s"),
        (10, "10s"),
        (15, "15s"),
        (30, "30s"),
        (60, "1m"),
        (300, "5m"),
        (600, "10m"),
        (900, "15m"),
        (1800, "30m"),
        (3600, "1h"),
        (10_800, "3h"),
        (21_600, "6h"),
        (43_200, "12h"),
        (86_400, "1d"),
        (604_800, "7d"),
    ];
    // A span of s seconds needs at most ⌊s/step⌋ + 2 buckets on any grid.
    let fits = |step_secs: i64| (span_micros / (step_secs * 1_000_000)) as u64 + 2 <= MAX_BUCKETS;
    for (secs, text) in STEPS {
        if fits(secs) {
            return text.to_owned();
        }
    }
    let mut days = 8;
    while !fits(days * 86_400) {
        days *= 2;
    }
    format!("{days}d")
}

/// One bucket as the database computed it, before fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Its start, in microseconds since the epoch.
    pub start_micros: i64,
    /// How many metrics it holds.
    pub count: u64,
    /// How many of them have a non-numeric value.
    pub non_numeric: u64,
    /// One value per function of the [`Aggregation`], in its order (`count` as a number).
    pub values: Vec<Option<f64>>,
}

/// One series of an aggregation's answer: a name and the values of the `by` keys, its buckets
/// in time order, one column per function.
#[derive(Debug, Clone, PartialEq)]
pub struct AggSeries {
    /// The metrics' name.
    pub name: String,
    /// The texts of the `by` keys; a key the series' metrics lack is absent.
    pub tags: BTreeMap<String, String>,
    /// The buckets' starts, in microseconds since the epoch, ascending.
    pub starts_micros: Vec<i64>,
    /// One column per function, in the aggregation's order, each as long as `starts_micros`.
    pub columns: Vec<Vec<Option<f64>>>,
    /// How many metrics of the series have a non-numeric value (left out of every function but
    /// `count`).
    pub non_numeric: u64,
    /// The same per bucket, as long as `starts_micros` (0 in filled buckets).
    pub bucket_non_numeric: Vec<u64>,
}

impl AggSeries {
    /// The series of these buckets (ascending), with empty buckets of the grid from
    /// `grid_first` to `grid_last` (bucket starts) filled as `aggregation.fill` says.
    pub fn filled(
        name: String,
        tags: BTreeMap<String, String>,
        buckets: Vec<Bucket>,
        aggregation: &Aggregation,
        grid: Option<(i64, i64)>,
    ) -> AggSeries {
        let width = aggregation.functions.len();
        let non_numeric = buckets.iter().map(|b| b.non_numeric).sum();
        let mut starts = Vec::with_capacity(buckets.len());
        let mut rows: Vec<Option<Vec<Option<f64>>>> = Vec::with_capacity(buckets.len());
        let mut bucket_non_numeric = Vec::with_capacity(buckets.len());
        match (aggregation.fill, grid) {
            (Fill::None, _) | (_, None) => {
                for bucket in buckets {
                    starts.push(bucket.start_micros);
                    bucket_non_numeric.push(bucket.non_numeric);
                    rows.push(Some(bucket.values));
                }
            }
            (_, Some((first, last))) => {
                let first = first.min(buckets.first().map_or(first, |b| b.start_micros));
                let last = last.max(buckets.last().map_or(last, |b| b.start_micros));
                let mut buckets = buckets.into_iter().peekable();
                let mut at = first;
                while at <= last {
                    starts.push(at);
                    match buckets.next_if(|b| b.start_micros == at) {
                        Some(bucket) => {
                            bucket_non_numeric.push(bucket.non_numeric);
                            rows.push(Some(bucket.values));
                        }
                        None => {
                            bucket_non_numeric.push(0);
                            rows.push(None);
                        }
                    }
                    at += aggregation.step_micros;
                }
            }
        }
        let mut columns: Vec<Vec<Option<f64>>> = (0..width)
            .map(|column| {
                rows.iter()
                    .map(|row| row.as_ref().and_then(|r| r[column]))
                    .collect()
            })
            .collect();
        for (function, column) in aggregation.functions.iter().zip(columns.iter_mut()) {
            let empty: Vec<bool> = rows.iter().map(Option::is_none).collect();
            if *function == Function::Count {
                for (value, empty) in column.iter_mut().zip(&empty) {
                    if *empty {
                        *value = Some(0.0);
                    }
                }
                continue;
            }
            fill_column(column, &empty, &starts, aggregation.fill);
        }
        AggSeries {
            name,
            tags,
            starts_micros: starts,
            columns,
            non_numeric,
            bucket_non_numeric,
        }
    }
}

/// Fills the `empty` places of one column.
fn fill_column(column: &mut [Option<f64>], empty: &[bool], starts: &[i64], fill: Fill) {
    match fill {
        Fill::None | Fill::Null => {}
        Fill::Value(v) => {
            for (value, empty) in column.iter_mut().zip(empty) {
                if *empty {
                    *value = Some(v);
                }
            }
        }
        Fill::Prev => {
            let mut previous = None;
            for (value, empty) in column.iter_mut().zip(empty) {
                if *empty {
                    *value = previous;
                }
                previous = *value;
            }
        }
        Fill::Linear => {
            let mut before: Option<(i64, f64)> = None;
            let mut i = 0;
            while i < column.len() {
                if !empty[i] {
                    before = column[i].map(|v| (starts[i], v));
                    i += 1;
                    continue;
                }
                // A run of empty buckets: between `before` and the next bucket with a value.
                let run_end = (i..column.len())
                    .find(|&j| !empty[j])
                    .unwrap_or(column.len());
                let after = column
                    .get(run_end)
                    .copied()
                    .flatten()
                    .map(|v| (starts[run_end], v));
                if let (Some((t0, v0)), Some((t1, v1))) = (before, after) {
                    for j in i..run_end {
                        let weight = (starts[j] - t0) as f64 / (t1 - t0) as f64;
                        column[j] = Some(v0 + weight * (v1 - v0));
                    }
                }
                i = run_end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregation(step: i64, offset: i64, fill: Fill) -> Aggregation {
        Aggregation {
            step_micros: step,
            offset_micros: offset,
            functions: vec![Function::Count, Function::Avg],
            by: Vec::new(),
            fill,
        }
    }

    #[test]
    fn functions_parse_and_print() {
        for name in [
            "count", "sum", "avg", "min", "max", "first", "last", "stddev", "p0", "p50", "p99",
            "p100", "p99.9", "p99.99", "p5.5", "p0.0001",
        ] {
            let function = Function::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(function.label(), name);
        }
        for bad in [
            "",
            "p",
            "p101",
            "p-1",
            "p1e2",
            "p99.",
            "p.5",
            "p99.12345",
            "median",
            "P99",
            "p1000",
        ] {
            assert_eq!(Function::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Function::parse("p99.9"),
            Some(Function::Percentile(Percentile {
                numerator: 999,
                denominator: 1000
            }))
        );
    }

    #[test]
    fn percentile_ranks_are_exact() {
        let p = |text: &str| match Function::parse(text) {
            Some(Function::Percentile(p)) => p,
            _ => unreachable!(),
        };
        // n = 5: h = 4·0.5 = 2 → the third.
        assert_eq!(p("p50").ranks(5), (3, 3, 0.0));
        // n = 4: h = 3·0.5 = 1.5 → between the second and third.
        assert_eq!(p("p50").ranks(4), (2, 3, 0.5));
        assert_eq!(p("p100").ranks(7), (7, 7, 0.0));
        assert_eq!(p("p0").ranks(7), (1, 1, 0.0));
        assert_eq!(p("p99").ranks(1), (1, 1, 0.0));
        // n = 11: h = 10·0.99 = 9.9.
        let (low, high, weight) = p("p99").ranks(11);
        assert_eq!((low, high), (10, 11));
        assert!((weight - 0.9).abs() < 1e-15);
        assert_eq!(p("p50").interpolate(4, 2.0, 3.0), 2.5);
    }

    #[test]
    fn buckets_floor_on_the_grid() {
        let a = aggregation(60_000_000, 0, Fill::None);
        assert_eq!(a.bucket_of(0), 0);
        assert_eq!(a.bucket_of(59_999_999), 0);
        assert_eq!(a.bucket_of(60_000_000), 60_000_000);
        assert_eq!(a.bucket_of(-1), -60_000_000);
        assert_eq!(a.bucket_of(-60_000_000), -60_000_000);
        let shifted = aggregation(60_000_000, 15_000_000, Fill::None);
        assert_eq!(shifted.bucket_of(14_999_999), -45_000_000);
        assert_eq!(shifted.bucket_of(15_000_000), 15_000_000);
        assert_eq!(shifted.bucket_of(-45_000_001), -105_000_000);
        let negative = aggregation(60_000_000, -45_000_000, Fill::None);
        assert_eq!(
            negative.bucket_of(14_999_999),
            shifted.bucket_of(14_999_999)
        );
        assert_eq!(a.buckets_between(0, 60_000_000), 2);
        assert_eq!(a.buckets_between(-1, 0), 2);
        assert_eq!(a.buckets_between(5, 4), 0);
    }

    #[test]
    fn suggested_steps_fit() {
        let day = 86_400_000_000;
        assert_eq!(suggested_step(day), "10s");
        assert_eq!(suggested_step(7 * day), "1m");
        assert_eq!(suggested_step(365 * day), "1h");
        let huge = suggested_step(10_000 * 365 * day);
        assert!(huge.ends_with('d'), "{huge}");
    }

    fn bucket(start: i64, avg: f64) -> Bucket {
        Bucket {
            start_micros: start,
            count: 1,
            non_numeric: 0,
            values: vec![Some(1.0), Some(avg)],
        }
    }

    fn filled(fill: Fill) -> AggSeries {
        let a = aggregation(10, 0, fill);
        AggSeries::filled(
            "cpu".into(),
            BTreeMap::new(),
            vec![bucket(10, 1.0), bucket(40, 4.0), bucket(50, 8.0)],
            &a,
            Some((0, 70)),
        )
    }

    #[test]
    fn every_fill() {
        let none = filled(Fill::None);
        assert_eq!(none.starts_micros, [10, 40, 50]);
        let null = filled(Fill::Null);
        assert_eq!(null.starts_micros, [0, 10, 20, 30, 40, 50, 60, 70]);
        let counts = [0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0].map(Some);
        assert_eq!(null.columns[0], counts);
        assert_eq!(
            null.columns[1],
            [
                None,
                Some(1.0),
                None,
                None,
                Some(4.0),
                Some(8.0),
                None,
                None
            ]
        );
        let prev = filled(Fill::Prev);
        assert_eq!(prev.columns[0], counts);
        assert_eq!(
            prev.columns[1],
            [
                None,
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(4.0),
                Some(8.0),
                Some(8.0),
                Some(8.0)
            ]
        );
        let linear = filled(Fill::Linear);
        assert_eq!(
            linear.columns[1],
            [
                None,
                Some(1.0),
                Some(2.0),
                Some(3.0),
                Some(4.0),
                Some(8.0),
                None,
                None
            ]
        );
        let value = filled(Fill::Value(-1.5));
        assert_eq!(
            value.columns[1],
            [
                Some(-1.5),
                Some(1.0),
                Some(-1.5),
                Some(-1.5),
                Some(4.0),
                Some(8.0),
                Some(-1.5),
                Some(-1.5)
            ]
        );
        assert_eq!(value.columns[0], counts);
    }
}
