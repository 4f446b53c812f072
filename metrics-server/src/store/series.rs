//! The write side of the series catalog: the series id of each metric, resolved inside the
//! write's transaction.
//!
//! A process-wide cache maps (name, tags) to series ids; the ids of a batch's other series are
//! created or found with one upsert (`INSERT .. ON CONFLICT (name, tags_sha) DO UPDATE ..
//! RETURNING id`), which returns the id whether this transaction created the row or another
//! did, so servers sharing one PostgreSQL agree. New series are upserted in a fixed order, so two
//! concurrent batches never wait on each other's rows crosswise. The cache learns ids only after
//! the transaction commits: an id from a rolled-back transaction names no row. Series rows are
//! never deleted (see `delete.rs`), so a cached id stays valid.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use migrations::{canonical, digest};

use super::{write::WriteConnection, NewMetric};
use crate::selection::Tags;

/// Series ids kept before the cache starts over: bounds its memory at high cardinality.
const MAX_CACHED: usize = 100_000;

/// Series ids by name and tags, shared by every write of one store.
#[derive(Clone, Default)]
pub(super) struct SeriesCache {
    ids: Arc<Mutex<HashMap<String, HashMap<Tags, i64>>>>,
}

/// Series a transaction created or found, for the cache once it has committed.
#[derive(Debug, Default)]
pub(super) struct Learned(Vec<(String, Tags, i64)>);

/// A series to create or find, with its catalog texts.
#[derive(Debug)]
pub(super) struct NewSeries<'a> {
    /// Its metrics' name.
    pub(super) name: &'a str,
    /// Its tags.
    pub(super) tags: &'a Tags,
    /// The canonical text of the tags.
    pub(super) text: String,
    /// The digest of `text`.
    pub(super) sha: String,
}

impl SeriesCache {
    /// Adds what a committed transaction learned.
    pub(super) fn learn(&self, learned: Learned) {
        let Ok(mut ids) = self.ids.lock() else {
            return;
        };
        if ids.values().map(HashMap::len).sum::<usize>() + learned.0.len() > MAX_CACHED {
            ids.clear();
        }
        for (name, tags, id) in learned.0 {
            ids.entry(name).or_default().insert(tags, id);
        }
    }

    fn get(&self, metrics: &[&NewMetric]) -> Vec<Option<i64>> {
        let Ok(ids) = self.ids.lock() else {
            return vec![None; metrics.len()];
        };
        metrics
            .iter()
            .map(|m| {
                ids.get(&m.name)
                    .and_then(|by_tags| by_tags.get(&m.tags))
                    .copied()
            })
            .collect()
    }
}

/// The series id of each metric, creating the series that do not exist yet, in the caller's
/// transaction.
pub(super) async fn series_ids(
    conn: &mut impl WriteConnection,
    cache: &SeriesCache,
    metrics: &[&NewMetric],
) -> Result<(Vec<i64>, Learned), sqlx::Error> {
    let mut ids = cache.get(metrics);
    // The distinct series missing from the cache, in a fixed order.
    let mut missing: BTreeMap<(&str, &Tags), Vec<usize>> = BTreeMap::new();
    for (i, m) in metrics.iter().enumerate() {
        if ids[i].is_none() {
            missing.entry((&m.name, &m.tags)).or_default().push(i);
        }
    }
    let mut learned = Learned::default();
    if !missing.is_empty() {
        let new: Vec<NewSeries<'_>> = missing
            .keys()
            .map(|&(name, tags)| {
                let text = canonical(tags);
                let sha = digest(&text);
                NewSeries {
                    name,
                    tags,
                    text,
                    sha,
                }
            })
            .collect();
        let found = conn.upsert_series(&new).await?;
        conn.insert_series_tags(&new, &found).await?;
        for ((key, members), id) in missing.into_iter().zip(found) {
            for i in members {
                ids[i] = Some(id);
            }
            learned.0.push((key.0.to_owned(), key.1.clone(), id));
        }
    }
    Ok((
        ids.into_iter().map(|id| id.unwrap_or_default()).collect(),
        learned,
    ))
}
