//! Retention: removing metrics older than a configured age, in the background.
//!
//! `--retention 30d` keeps every metric 30 days (by its `ts`); `--retention debug.=1d` keeps
//! metrics whose name starts with `debug.` one day. Rules may be repeated; the rule with the
//! longest prefix matching a name wins, so `--retention 30d --retention debug.=1d` keeps `debug.*`
//! one day and everything else 30 days, and `--retention audit.=forever` exempts `audit.*` from a
//! shorter default. Without any rule nothing is ever removed.
//!
//! A [`Policy`] is one rule with the longer prefixes that override it (its `except` list, see
//! [`plan`]); each pass of the background task ([`spawn`]) turns every policy into a
//! [`RetentionRule`] relative to the current time and asks the store to delete what it expires in
//! small transactions ([`MetricStore::delete_expired`], `--retention-batch` rows each), yielding
//! between them so that writes never wait behind a long delete. What each pass removed is logged
//! per rule.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::store::{MetricStore, RetentionRule};

/// One `--retention` value: a name prefix (`""` for every name) and how long its metrics are
/// kept (`None`: forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSpec {
    /// Names starting with this; `""` for the default rule.
    pub prefix: String,
    /// How long a metric is kept after its `ts`; `None` keeps it forever.
    pub keep: Option<Duration>,
}

impl FromStr for RetentionSpec {
    type Err = String;

    /// `30d` (every name), `PREFIX=30d` (names starting with `PREFIX`), `PREFIX=forever`. The
    /// prefix is everything before the last `=`.
    fn from_str(s: &str) -> Result<RetentionSpec, String> {
        let (prefix, age) = match s.rfind('=') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => ("", s),
        };
        let keep = parse_age(age).map_err(|problem| {
            format!(
                "{s:?}: {problem}; give an age such as 30d, 12h or 2w (units s, m, h, d, w) or \
                 `forever`, optionally after a name prefix and `=` (debug.=1d)"
            )
        })?;
        Ok(RetentionSpec {
            prefix: prefix.to_owned(),
            keep,
        })
    }
}

impl fmt::Display for RetentionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.prefix.is_empty() {
            write!(f, "{}=", self.prefix)?;
        }
        match self.keep {
            None => f.write_str("forever"),
            Some(keep) => write!(f, "{}", format_age(keep)),
        }
    }
}

/// `30d`, `12h`, `90m`, `3600s`, `2w`, or `forever` (`None`).
fn parse_age(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("forever") {
        return Ok(None);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("{text:?} does not start with a number"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{digits} is too large"))?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "" => return Err(format!("{text:?} has no unit")),
        other => return Err(format!("unknown unit {other:?}")),
    };
    // Ages beyond the timestamps' range (about 10,000 years) mean nothing: refuse them.
    const MAX_SECS: u64 = 10_000 * 366 * 86_400;
    match n.checked_mul(unit_secs) {
        Some(0) => Err("an age of 0 would remove every metric as it arrives".to_owned()),
        Some(secs) if secs <= MAX_SECS => Ok(Some(Duration::from_secs(secs))),
        _ => Err(format!(
            "{text:?} is longer than 10000 years; use `forever`"
        )),
    }
}

/// An age in the largest unit that divides it.
fn format_age(age: Duration) -> String {
    let secs = age.as_secs();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// A rule ready to run: its prefix, the longer prefixes left to their own rules, and its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Names starting with this; `""` for every name.
    pub prefix: String,
    /// Names starting with any of these follow another (longer) rule.
    pub except: Vec<String>,
    /// How long a metric is kept after its `ts`.
    pub keep: Duration,
}

impl Policy {
    /// The store's rule for a pass at `now_micros`: metrics with `ts` before `now - keep`.
    pub fn rule(&self, now_micros: i64) -> RetentionRule {
        let keep = i64::try_from(self.keep.as_micros()).unwrap_or(i64::MAX);
        RetentionRule {
            prefix: self.prefix.clone(),
            except: self.except.clone(),
            before_micros: now_micros.saturating_sub(keep),
        }
    }
}

/// Turns the `--retention` values into policies, longest prefix winning: each rule excepts the
/// longer prefixes under it (only the shortest of nested ones, which cover the rest). `forever`
/// rules yield no policy but still except their prefix from shorter rules. Two rules for the same
/// prefix are an error.
pub fn plan(specs: &[RetentionSpec]) -> Result<Vec<Policy>, String> {
    for (i, spec) in specs.iter().enumerate() {
        if let Some(other) = specs[..i].iter().find(|s| s.prefix == spec.prefix) {
            let what = if spec.prefix.is_empty() {
                "the default (no prefix)".to_owned()
            } else {
                format!("the prefix {:?}", spec.prefix)
            };
            return Err(format!(
                "--retention gives {what} twice ({other} and {spec}); keep one"
            ));
        }
    }
    let mut policies: Vec<Policy> = specs
        .iter()
        .filter_map(|spec| {
            let keep = spec.keep?;
            let longer: Vec<&str> = specs
                .iter()
                .map(|s| s.prefix.as_str())
                .filter(|p| p.len() > spec.prefix.len() && p.starts_with(&spec.prefix))
                .collect();
            let mut except: Vec<String> = longer
                .iter()
                .filter(|p| {
                    !longer
                        .iter()
                        .any(|q| q.len() < p.len() && p.starts_with(*q))
                })
                .map(|p| (*p).to_owned())
                .collect();
            except.sort();
            Some(Policy {
                prefix: spec.prefix.clone(),
                except,
                keep,
            })
        })
        .collect();
    policies.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    Ok(policies)
}

/// How the background task runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The time between two passes (the first runs at start).
    pub interval: Duration,
    /// Most metrics deleted in one transaction.
    pub batch: u64,
}

/// Starts the background task: a pass at once, then one every `schedule.interval`, until
/// `shutdown` is cancelled (between two transactions, never in the middle of one).
pub fn spawn(
    store: Arc<dyn MetricStore>,
    policies: Vec<Policy>,
    schedule: Schedule,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if policies.is_empty() {
            return;
        }
        let mut ticker = tokio::time::interval(schedule.interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now_micros = chrono::Utc::now().timestamp_micros();
            for policy in &policies {
                if shutdown.is_cancelled() {
                    return;
                }
                run_rule(
                    &*store,
                    policy,
                    now_micros,
                    schedule.batch.max(1),
                    &shutdown,
                )
                .await;
            }
        }
    })
}

/// Deletes what one policy expires, a batch per transaction, and logs the count.
async fn run_rule(
    store: &dyn MetricStore,
    policy: &Policy,
    now_micros: i64,
    batch: u64,
    shutdown: &CancellationToken,
) {
    let rule = policy.rule(now_micros);
    let mut removed = 0u64;
    let outcome = loop {
        match store.delete_expired(&rule, batch).await {
            Ok(n) => {
                removed += n;
                if n < batch {
                    break Ok(());
                }
            }
            Err(err) => break Err(err),
        }
        if shutdown.is_cancelled() {
            break Ok(());
        }
        // Let the writer and the readers in between two transactions.
        tokio::task::yield_now().await;
    };
    let before = chrono::DateTime::from_timestamp_micros(rule.before_micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let prefix = if policy.prefix.is_empty() {
        "(every name)"
    } else {
        policy.prefix.as_str()
    };
    match outcome {
        Ok(()) if removed > 0 => tracing::info!(
            rule = %prefix,
            except = ?policy.except,
            keep = %format_age(policy.keep),
            removed,
            older_than = %before,
            "retention removed expired metrics"
        ),
        Ok(()) => {
            tracing::debug!(rule = %prefix, older_than = %before, "retention: nothing expired")
        }
        Err(err) => tracing::warn!(
            rule = %prefix,
            removed,
            error = %err,
            "retention pass failed; retrying at the next one"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(values: &[&str]) -> Vec<RetentionSpec> {
        values.iter().map(|v| v.parse().unwrap()).collect()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn values_parse_with_or_without_a_prefix() {
        assert_eq!(
            "30d".parse::<RetentionSpec>().unwrap(),
            RetentionSpec {
                prefix: String::new(),
                keep: Some(30 * DAY)
            }
        );
        assert_eq!(
            "debug.=12h".parse::<RetentionSpec>().unwrap(),
            RetentionSpec {
                prefix: "debug.".into(),
                keep: Some(Duration::from_secs(12 * 3600))
            }
        );
        // The prefix is everything before the last `=`.
        let spec: RetentionSpec = "a=b.=2w".parse().unwrap();
        assert_eq!((spec.prefix.as_str(), spec.keep), ("a=b.", Some(14 * DAY)));
        assert_eq!(
            "audit.=forever".parse::<RetentionSpec>().unwrap().keep,
            None
        );
        assert_eq!("=1d".parse::<RetentionSpec>().unwrap().prefix, "");
        for (value, shown) in [
            ("30d", "30d"),
            ("x=90m", "x=90m"),
            ("y=forever", "y=forever"),
        ] {
            assert_eq!(value.parse::<RetentionSpec>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (value, problem) in [
            ("30", "no unit"),
            ("30x", "unknown unit \"x\""),
            ("debug.=", "does not start with a number"),
            ("0d", "every metric"),
            ("99999999w", "10000 years"),
            ("99999999999999999999999d", "too large"),
        ] {
            let err = value.parse::<RetentionSpec>().unwrap_err();
            assert!(err.contains(problem), "{value}: {err}");
            assert!(err.contains("30d") && err.contains("forever"), "{err}");
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let policies = plan(&specs(&[
            "30d",
            "debug.=1d",
            "debug.keep.=forever",
            "debug.keep.x.=1h",
            "audit=forever",
            "auditor=2d",
        ]))
        .unwrap();
        let summary: Vec<(&str, Vec<&str>, Duration)> = policies
            .iter()
            .map(|p| {
                (
                    p.prefix.as_str(),
                    p.except.iter().map(String::as_str).collect(),
                    p.keep,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                // `auditor` is under `audit`, which covers it: only `audit` is excepted.
                ("", vec!["audit", "debug."], 30 * DAY),
                ("auditor", vec![], 2 * DAY),
                ("debug.", vec!["debug.keep."], DAY),
                ("debug.keep.x.", vec![], Duration::from_secs(3600)),
            ]
        );
    }

    #[test]
    fn no_rule_keeps_everything_and_duplicates_are_refused() {
        assert_eq!(plan(&[]).unwrap(), vec![]);
        assert_eq!(plan(&specs(&["x.=forever"])).unwrap(), vec![]);
        let err = plan(&specs(&["30d", "6d"])).unwrap_err();
        assert!(
            err.contains("default") && err.contains("30d and 6d"),
            "{err}"
        );
        let err = plan(&specs(&["a.=1d", "a.=forever"])).unwrap_err();
        assert!(err.contains("\"a.\""), "{err}");
    }

    #[test]
    fn a_rule_expires_what_is_older_than_its_age() {
        let policy = &plan(&specs(&["debug.=1d", "debug.x=2d"])).unwrap()[0];
        let now = 10 * 86_400_000_000;
        assert_eq!(
            policy.rule(now),
            RetentionRule {
                prefix: "debug.".into(),
                except: vec!["debug.x".into()],
                before_micros: 9 * 86_400_000_000,
            }
        );
    }
}
