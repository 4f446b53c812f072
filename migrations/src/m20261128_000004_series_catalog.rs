//! The series catalog: which tag sets each name has been written with, kept at ingest, so that
//! tag filters and the `/v1/tags` catalog are served by indexes instead of reading documents.
//!
//! - `series(id, name, tags, tags_sha)`: one row per distinct (name, tag set). `tags` is the
//!   canonical text of the tag set ([`canonical`]: a JSON object of texts, keys sorted) and
//!   `tags_sha` its SHA-256 ([`digest`]); the unique index is on `(name, tags_sha)` because a
//!   PostgreSQL B-tree entry cannot hold an arbitrarily long text.
//! - `series_tags(series_id, key, value, value_sha)`: the tags of each series, one row per key whose
//!   text is not empty (an empty text, from `null`, reads as absent, so it has no row). `key` and
//!   `value` hold the texts as JSON strings ([`quote`]): a JSON text may contain `\u0000`, which
//!   a PostgreSQL `text` cannot. The index `(key, value_sha, series_id)` answers "which series
//!   have key = value", and its `key` prefix "which values does key take".
//! - `metrics.series_id`: the series of each metric, with the index `(series_id, ts, id)` that
//!   serves a tag-filtered range query in result order.
//!
//! Tag texts follow the server's `selection::tags_of` rules exactly ([`tags_of`] here, checked
//! against it by the server's tests). Rows stored before this migration get their series here:
//! the backfill reads every metric once, in id order, a batch at a time. Series rows are never
//! deleted (their ids stay valid in every server's cache); catalog answers list only series that
//! still have metrics.

use std::collections::{BTreeMap, HashMap};

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, TryGetable},
};
use sha2::{Digest, Sha256};

pub(crate) struct Migration;

/// Metrics read per backfill batch.
const BACKFILL_BATCH: u64 = 5000;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000004_series_catalog"
    }
}

/// The keys of a metric object that are not tags (as `selection::RESERVED_KEYS`).
const RESERVED_KEYS: [&str; 3] = ["name", "value", "ts"];

/// The tags of a stored metric document by text, by the rules of the server's
/// `selection::tags_of` (a string by its content, `null` as `""`, anything else by its JSON text
/// as sent; a key given twice keeps its last value). `None` if `doc` is not a JSON object.
pub fn tags_of(doc: &str) -> Option<BTreeMap<String, String>> {
    let object: BTreeMap<String, &serde_json::value::RawValue> = serde_json::from_str(doc).ok()?;
    Some(
        object
            .into_iter()
            .filter(|(key, _)| !RESERVED_KEYS.contains(&key.as_str()))
            .map(|(key, raw)| {
                let text = raw.get().trim();
                let text = if text.starts_with('"') {
                    serde_json::from_str(text).unwrap_or_default()
                } else if text == "null" {
                    String::new()
                } else {
                    text.to_owned()
                };
                (key, text)
            })
            .collect(),
    )
}

/// The canonical text of a tag set: a JSON object of its texts, keys sorted. Two metrics are of
/// the same series when their names and canonical texts are equal.
pub fn canonical(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_default()
}

/// `text` as a JSON string: how `series_tags` keeps keys and values (any text, NUL included, on
/// both backends). The server's store quotes the same way.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The SHA-256 of `text` in lower-case hex: what the catalog's indexes hold instead of
/// unbounded texts.
pub fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
#[allow(elided_lifetimes_in_paths)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Series::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Series::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Series::Name).text().not_null())
                    .col(ColumnDef::new(Series::Tags).text().not_null())
                    .col(ColumnDef::new(Series::TagsSha).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("series_name_tags_sha")
                    .table(Series::Table)
                    .col(Series::Name)
                    .col(Series::TagsSha)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SeriesTags::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SeriesTags::SeriesId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SeriesTags::Key).text().not_null())
                    .col(ColumnDef::new(SeriesTags::Value).text().not_null())
                    .col(ColumnDef::new(SeriesTags::ValueSha).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(SeriesTags::SeriesId)
                            .col(SeriesTags::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("series_tags_key_value_series")
                    .table(SeriesTags::Table)
                    .col(SeriesTags::Key)
                    .col(SeriesTags::ValueSha)
                    .col(SeriesTags::SeriesId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Metrics::Table)
                    .add_column(ColumnDef::new(Metrics::SeriesId).big_integer().null())
                    .to_owned(),
            )
            .await?;
        backfill(manager).await?;
        manager
            .create_index(
                Index::create()
                    .name("metrics_series_ts_id")
                    .table(Metrics::Table)
                    .col(Metrics::SeriesId)
                    .col(Metrics::Ts)
                    .col(Metrics::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("metrics_series_ts_id")
                    .table(Metrics::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Metrics::Table)
                    .drop_column(Metrics::SeriesId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(SeriesTags::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Series::Table).to_owned())
            .await
    }
}

/// Gives every stored metric its series, reading the table once in id order.
async fn backfill(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let mut known: HashMap<(String, String), i64> = HashMap::new();
    let mut after = 0_i64;
    loop {
        let batch = Query::select()
            .columns([Metrics::Id, Metrics::Name, Metrics::Doc])
            .from(Metrics::Table)
            .and_where(Expr::col(Metrics::Id).gt(after))
            .order_by(Metrics::Id, Order::Asc)
            .limit(BACKFILL_BATCH)
            .to_owned();
        let rows = db.query_all(backend.build(&batch)).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut members: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for row in &rows {
            let id = i64::try_get_by_index(row, 0).map_err(DbErr::from)?;
            let name = String::try_get_by_index(row, 1).map_err(DbErr::from)?;
            let doc = String::try_get_by_index(row, 2).map_err(DbErr::from)?;
            after = id;
            let tags = tags_of(&doc).unwrap_or_default();
            let text = canonical(&tags);
            let sha = digest(&text);
            let series = match known.get(&(name.clone(), sha.clone())) {
                Some(series) => *series,
                None => {
                    let series = create_series(db, backend, &name, &text, &sha, &tags).await?;
                    known.insert((name, sha), series);
                    series
                }
            };
            members.entry(series).or_default().push(id);
        }
        for (series, ids) in members {
            let update = Query::update()
                .table(Metrics::Table)
                .value(Metrics::SeriesId, series)
                .and_where(Expr::col(Metrics::Id).is_in(ids))
                .to_owned();
            db.execute(backend.build(&update)).await?;
        }
    }
}

/// Inserts one series and its tags; returns its id.
async fn create_series(
    db: &SchemaManagerConnection<'_>,
    backend: sea_orm_migration::sea_orm::DbBackend,
    name: &str,
    text: &str,
    sha: &str,
    tags: &BTreeMap<String, String>,
) -> Result<i64, DbErr> {
    let insert = Query::insert()
        .into_table(Series::Table)
        .columns([Series::Name, Series::Tags, Series::TagsSha])
        .values([name.into(), text.into(), sha.into()])
        .map_err(|err| DbErr::Custom(err.to_string()))?
        .returning_col(Series::Id)
        .to_owned();
    let row = db
        .query_one(backend.build(&insert))
        .await?
        .ok_or_else(|| DbErr::Custom("INSERT .. RETURNING returned no row".into()))?;
    let id = i64::try_get_by_index(&row, 0).map_err(DbErr::from)?;
    let mut insert = Query::insert()
        .into_table(SeriesTags::Table)
        .columns([
            SeriesTags::SeriesId,
            SeriesTags::Key,
            SeriesTags::Value,
            SeriesTags::ValueSha,
        ])
        .to_owned();
    let mut any = false;
    for (key, value) in tags.iter().filter(|(_, value)| !value.is_empty()) {
        insert
            .values([
                id.into(),
                quote(key).into(),
                quote(value).into(),
                digest(value).into(),
            ])
            .map_err(|err| DbErr::Custom(err.to_string()))?;
        any = true;
    }
    if any {
        db.execute(backend.build(&insert)).await?;
    }
    Ok(id)
}

#[derive(DeriveIden)]
enum Metrics {
    Table,
    Id,
    Name,
    Ts,
    Doc,
    SeriesId,
}

#[derive(DeriveIden)]
enum Series {
    Table,
    Id,
    Name,
    Tags,
    TagsSha,
}

#[derive(DeriveIden)]
enum SeriesTags {
    Table,
    SeriesId,
    Key,
    Value,
    ValueSha,
}
