//! The `metrics` table: one row per stored metric.
//!
//! It keeps the original data model: `name` and `ts` columns, indexed for the range queries, and
//! the posted object whole as JSON text (`doc`, returned as stored, keys and order intact). `ts` is
//! the instant in microseconds since the Unix epoch, so the same integer comparison serves
//! PostgreSQL and SQLite; `value` holds the value where it is a number, for aggregations. `id`
//! grows with every insert and is never reused: it is the order of storage and the stream cursor.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000001_create_metrics"
    }
}

#[async_trait::async_trait]
#[allow(elided_lifetimes_in_paths)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Metrics::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Metrics::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Metrics::Name).text().not_null())
                    .col(ColumnDef::new(Metrics::Ts).big_integer().not_null())
                    .col(ColumnDef::new(Metrics::Value).double().null())
                    .col(ColumnDef::new(Metrics::Doc).text().not_null())
                    .to_owned(),
            )
            .await?;
        // Queries by name and range walk this index in result order (ts, then storage order).
        manager
            .create_index(
                Index::create()
                    .name("metrics_name_ts_id")
                    .table(Metrics::Table)
                    .col(Metrics::Name)
                    .col(Metrics::Ts)
                    .col(Metrics::Id)
                    .to_owned(),
            )
            .await?;
        // Queries by range alone, over every name.
        manager
            .create_index(
                Index::create()
                    .name("metrics_ts_id")
                    .table(Metrics::Table)
                    .col(Metrics::Ts)
                    .col(Metrics::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Metrics::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Metrics {
    Table,
    Id,
    Name,
    Ts,
    Value,
    Doc,
}
