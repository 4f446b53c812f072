//! The write path: every write of the store, on either backend, is one sqlx transaction run by
//! [`transaction`], and a connection on which anything of it failed is closed, never reused.
//!
//! Why not sea-orm's transaction or sqlx's `Pool::begin`: both hand the connection back to the
//! pool after a failed COMMIT or ROLLBACK. SQLite rolls a transaction back by itself on some
//! errors (`SQLITE_FULL` among them), so the ROLLBACK that follows fails too, and the connection
//! goes back to the pool with sqlx still counting a transaction open on it. The next BEGIN on it
//! then becomes a SAVEPOINT and the next COMMIT a RELEASE: writes acknowledged but never
//! committed. (sqlx issue #3742 is the same class of failure on PostgreSQL.) Only the owner of
//! the pooled connection can close it, so the write path owns it.

use sqlx::{
    pool::PoolConnection, Connection, Database, PgConnection, Pool, QueryBuilder, Sqlite,
    SqliteConnection,
};

use migrations::digest;

use super::{
    schema::quote,
    series::{series_ids, Learned, NewSeries, SeriesCache},
    NewMetric, OnceOutcome, StoreError,
};

/// Rows per INSERT statement on SQLite: 5 bind parameters each stays far below its 32,766
/// parameters per statement.
const ROWS_PER_STATEMENT: usize = 1000;

/// Runs `work` in one transaction on a connection of `pool` and commits it. If anything fails
/// (BEGIN, a statement, COMMIT), the connection is closed instead of going back to the pool:
/// after a failed transaction neither sqlx nor we know its state for sure.
pub(super) async fn transaction<DB, T>(
    pool: &Pool<DB>,
    work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
) -> Result<T, StoreError>
where
    DB: Database,
{
    let mut conn: PoolConnection<DB> = pool.acquire().await?;
    let result: Result<T, sqlx::Error> = async {
        let mut tx = conn.begin().await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }
    .await;
    if result.is_err() {
        conn.close_on_drop();
    }
    result.map_err(StoreError::from)
}

/// Stores `metrics` with their series (see [`super::series`]) and returns their ids in order,
/// with the series the cache may learn once the transaction has committed.
pub(super) async fn store_metrics(
    conn: &mut impl WriteConnection,
    cache: &SeriesCache,
    metrics: &[&NewMetric],
) -> Result<(Vec<i64>, Learned), sqlx::Error> {
    let (series, learned) = series_ids(conn, cache, metrics).await?;
    let ids = conn.insert_rows(metrics, &series).await?;
    Ok((ids, learned))
}

/// Stores `metrics` unless `key` was recorded within the last `window_micros`, in which case it
/// stores nothing and returns what the first write stored. Run inside [`transaction`], so the
/// metrics and the key are committed together or not at all: a retry after a lost answer finds
/// the key and stores nothing, a retry after a failed write stores the batch. Keys older than the
/// window are deleted on the way, which is what bounds the table.
pub(super) async fn insert_once(
    conn: &mut impl WriteConnection,
    cache: &SeriesCache,
    key: &str,
    window_micros: i64,
    metrics: &[&NewMetric],
) -> Result<(OnceOutcome, Learned), sqlx::Error> {
    let now = chrono::Utc::now().timestamp_micros();
    conn.forget_keys_before(now.saturating_sub(window_micros))
        .await?;
    if let Some(stored) = conn.stored_under(key).await? {
        let stored = u64::try_from(stored).unwrap_or(0);
        return Ok((OnceOutcome::Repeated { stored }, Learned::default()));
    }
    let (ids, learned) = store_metrics(conn, cache, metrics).await?;
    conn.remember(key, now, ids.len() as i64).await?;
    Ok((OnceOutcome::Stored(ids), learned))
}

/// The statements of the write path on one backend's connection, inside a transaction. Each
/// backend's impl below is the one place its write SQL is spelled: sqlx statements, because
/// the transaction must own its connection (see above) and because each backend's fastest bulk
/// insert differs (multi-row `VALUES` on SQLite, array parameters on PostgreSQL).
pub(super) trait WriteConnection {
    /// Inserts `metrics`, of the series `series` (one id each), and returns their ids in order.
    async fn insert_rows(
        &mut self,
        metrics: &[&NewMetric],
        series: &[i64],
    ) -> Result<Vec<i64>, sqlx::Error>;
    /// Creates the series that do not exist yet and returns the id of each, in order.
    async fn upsert_series(&mut self, series: &[NewSeries<'_>]) -> Result<Vec<i64>, sqlx::Error>;
    /// Records the tags of `series` (ids `ids`), unless recorded already.
    async fn insert_series_tags(
        &mut self,
        series: &[NewSeries<'_>],
        ids: &[i64],
    ) -> Result<(), sqlx::Error>;
    /// Deletes idempotency keys recorded before `micros`.
    async fn forget_keys_before(&mut self, micros: i64) -> Result<(), sqlx::Error>;
    /// How many metrics the write under `key` stored, if the key is recorded.
    async fn stored_under(&mut self, key: &str) -> Result<Option<i64>, sqlx::Error>;
    /// Records `key`, made at `micros`, as having stored `stored` metrics.
    async fn remember(&mut self, key: &str, micros: i64, stored: i64) -> Result<(), sqlx::Error>;
}

/// The id of each of `series` from the rows an upsert returned (`id, name, tags_sha`).
fn ids_in_order(
    series: &[NewSeries<'_>],
    returned: Vec<(i64, String, String)>,
) -> Result<Vec<i64>, sqlx::Error> {
    let by_key: std::collections::HashMap<(String, String), i64> = returned
        .into_iter()
        .map(|(id, name, sha)| ((name, sha), id))
        .collect();
    series
        .iter()
        .map(|s| {
            by_key
                .get(&(s.name.to_owned(), s.sha.clone()))
                .copied()
                .ok_or(sqlx::Error::RowNotFound)
        })
        .collect()
}

/// The `(series_id, key, value, value_sha)` rows of `series`: every tag but the empty texts,
/// which read as absent; key and value quoted as JSON strings (see the migration).
fn tag_rows<'a>(
    series: &'a [NewSeries<'a>],
    ids: &'a [i64],
) -> impl Iterator<Item = (i64, String, String, String)> + 'a {
    series.iter().zip(ids).flat_map(|(s, &id)| {
        s.tags
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(move |(key, value)| (id, quote(key), quote(value), digest(value)))
    })
}

// The idempotency statements are the same SQL on both backends (sqlx binds `$N` on SQLite too).
// sqlx's executors are typed per database, so the methods that run them are written once here
// and expanded into each backend's impl.
macro_rules! idempotency_statements {
    () => {
        async fn forget_keys_before(&mut self, micros: i64) -> Result<(), sqlx::Error> {
            sqlx::query(FORGET_KEYS).bind(micros).execute(self).await?;
            Ok(())
        }

        async fn stored_under(&mut self, key: &str) -> Result<Option<i64>, sqlx::Error> {
            sqlx::query_scalar(STORED_UNDER)
                .bind(key)
                .fetch_optional(self)
                .await
        }

        async fn remember(
            &mut self,
            key: &str,
            micros: i64,
            stored: i64,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(REMEMBER)
                .bind(key)
                .bind(micros)
                .bind(stored)
                .execute(self)
                .await?;
            Ok(())
        }
    };
}

const FORGET_KEYS: &str = "DELETE FROM idempotency_keys WHERE created_micros < $1";
const STORED_UNDER: &str = r#"SELECT stored FROM idempotency_keys WHERE "key" = $1"#;
const REMEMBER: &str =
    r#"INSERT INTO idempotency_keys ("key", created_micros, stored) VALUES ($1, $2, $3)"#;

impl WriteConnection for SqliteConnection {
    /// Multi-row `INSERT ... RETURNING id` statements.
    async fn insert_rows(
        &mut self,
        metrics: &[&NewMetric],
        series: &[i64],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let mut ids = Vec::with_capacity(metrics.len());
        let rows: Vec<(&NewMetric, i64)> = metrics
            .iter()
            .copied()
            .zip(series.iter().copied())
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO metrics (name, ts, value, doc, series_id) ",
            );
            insert.push_values(chunk, |mut row, (m, series)| {
                row.push_bind(m.name.as_str())
                    .push_bind(m.ts_micros)
                    .push_bind(m.value)
                    .push_bind(m.doc.as_str())
                    .push_bind(*series);
            });
            insert.push(" RETURNING id");
            let mut chunk_ids: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *self).await?;
            // Ids are assigned in row order; RETURNING does not promise to list them in it.
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids);
        }
        Ok(ids)
    }

    async fn upsert_series(&mut self, series: &[NewSeries<'_>]) -> Result<Vec<i64>, sqlx::Error> {
        let mut returned = Vec::with_capacity(series.len());
        for chunk in series.chunks(ROWS_PER_STATEMENT) {
            let mut upsert =
                QueryBuilder::<Sqlite>::new("INSERT INTO series (name, tags, tags_sha) ");
            upsert.push_values(chunk, |mut row, s| {
                row.push_bind(s.name)
                    .push_bind(s.text.as_str())
                    .push_bind(s.sha.as_str());
            });
            upsert.push(
                " ON CONFLICT (name, tags_sha) DO UPDATE SET name = excluded.name \
                 RETURNING id, name, tags_sha",
            );
            returned.extend(
                upsert
                    .build_query_as::<(i64, String, String)>()
                    .fetch_all(&mut *self)
                    .await?,
            );
        }
        ids_in_order(series, returned)
    }

    async fn insert_series_tags(
        &mut self,
        series: &[NewSeries<'_>],
        ids: &[i64],
    ) -> Result<(), sqlx::Error> {
        let rows: Vec<_> = tag_rows(series, ids).collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO series_tags (series_id, key, value, value_sha) ",
            );
            insert.push_values(chunk, |mut row, (id, key, value, sha)| {
                row.push_bind(*id)
                    .push_bind(key.as_str())
                    .push_bind(value.as_str())
                    .push_bind(sha.as_str());
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build().execute(&mut *self).await?;
        }
        Ok(())
    }

    idempotency_statements!();
}

impl WriteConnection for PgConnection {
    /// One statement for the whole batch: five array parameters, unnested into rows.
    ///
    /// The profile of the multi-row `INSERT ... VALUES` showed the server building and binding
    /// 4,000 parameters per 1,000 rows and PostgreSQL planning a statement that large; arrays
    /// make it one bind per column and a plan that is the same for every batch size. Ids come
    /// from the sequence in row order, so sorting them gives the input order.
    async fn insert_rows(
        &mut self,
        metrics: &[&NewMetric],
        series: &[i64],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        let ts: Vec<i64> = metrics.iter().map(|m| m.ts_micros).collect();
        let values: Vec<Option<f64>> = metrics.iter().map(|m| m.value).collect();
        let docs: Vec<&str> = metrics.iter().map(|m| m.doc.as_str()).collect();
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO metrics (name, ts, value, doc, series_id) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::float8[], $4::text[], $5::int8[]) \
             RETURNING id",
        )
        .bind(names)
        .bind(ts)
        .bind(values)
        .bind(docs)
        .bind(series)
        .fetch_all(self)
        .await?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn upsert_series(&mut self, series: &[NewSeries<'_>]) -> Result<Vec<i64>, sqlx::Error> {
        let names: Vec<&str> = series.iter().map(|s| s.name).collect();
        let texts: Vec<&str> = series.iter().map(|s| s.text.as_str()).collect();
        let shas: Vec<&str> = series.iter().map(|s| s.sha.as_str()).collect();
        let returned: Vec<(i64, String, String)> = sqlx::query_as(
            "INSERT INTO series (name, tags, tags_sha) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
             ON CONFLICT (name, tags_sha) DO UPDATE SET name = EXCLUDED.name \
             RETURNING id, name, tags_sha",
        )
        .bind(names)
        .bind(texts)
        .bind(shas)
        .fetch_all(&mut *self)
        .await?;
        ids_in_order(series, returned)
    }

    async fn insert_series_tags(
        &mut self,
        series: &[NewSeries<'_>],
        ids: &[i64],
    ) -> Result<(), sqlx::Error> {
        let (mut series_ids, mut keys, mut values, mut shas) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, key, value, sha) in tag_rows(series, ids) {
            series_ids.push(id);
            keys.push(key);
            values.push(value);
            shas.push(sha);
        }
        if series_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO series_tags (series_id, key, value, value_sha) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(series_ids)
        .bind(keys)
        .bind(values)
        .bind(shas)
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    idempotency_statements!();
}

#[cfg(test)]
mod tests {
    use sqlx::{sqlite::SqlitePoolOptions, Executor, SqlitePool};

    use super::transaction;

    /// Whether the pool's connection is the one marked by `mark`: a TEMP table lives and dies
    /// with its connection.
    async fn is_marked(pool: &SqlitePool) -> bool {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sqlite_temp_master WHERE name = 'marker'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap()
            == 1
    }

    async fn one_connection_pool() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect(&url)
            .await
            .unwrap();
        pool.execute("CREATE TABLE t (x INTEGER)").await.unwrap();
        pool.execute("CREATE TEMP TABLE marker (x INTEGER)")
            .await
            .unwrap();
        (dir, pool)
    }

    #[tokio::test]
    async fn a_committed_transaction_keeps_its_connection() {
        let (_dir, pool) = one_connection_pool().await;
        transaction(&pool, async |conn| {
            conn.execute("INSERT INTO t VALUES (1)").await.map(|_| ())
        })
        .await
        .unwrap();
        assert!(is_marked(&pool).await);
    }

    #[tokio::test]
    async fn a_failed_transaction_closes_its_connection() {
        let (dir, pool) = one_connection_pool().await;
        // What SQLite does on SQLITE_FULL: it ends the transaction itself, behind sqlx's back,
        // and the COMMIT that follows fails.
        let failed = transaction(&pool, async |conn| {
            conn.execute("INSERT INTO t VALUES (1)").await?;
            conn.execute("ROLLBACK").await?;
            Err::<(), _>(sqlx::Error::Protocol("COMMIT failed".into()))
        })
        .await;
        assert!(failed.is_err());
        assert!(!is_marked(&pool).await, "the failed connection was reused");

        // The next transaction commits for real: another connection sees it.
        transaction(&pool, async |conn| {
            conn.execute("INSERT INTO t VALUES (2)").await.map(|_| ())
        })
        .await
        .unwrap();
        let file = dir.path().join("t.db");
        let other = SqlitePool::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t")
            .fetch_all(&other)
            .await
            .unwrap();
        assert_eq!(rows, vec![2]);
    }
}
