//! The `tokens` table: the API tokens the server accepts, as SHA-256 hashes with their scopes.
//!
//! A token is shown once, when it is created; the table keeps only its hash (`hash`, hex, looked
//! up on every request), the first characters for people to tell tokens apart (`hint`), its
//! scopes (`read`, `write`, `delete`, `admin`, comma-separated) and the metric-name prefixes it is
//! confined to (a JSON array; empty means every name). Revoking sets `revoked_micros`; the row
//! stays so that `token list` shows what was revoked when.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000003_create_tokens"
    }
}

#[async_trait::async_trait]
#[allow(elided_lifetimes_in_paths)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Tokens::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Tokens::Name).text().not_null())
                    .col(ColumnDef::new(Tokens::Hash).text().not_null().unique_key())
                    .col(ColumnDef::new(Tokens::Hint).text().not_null())
                    .col(ColumnDef::new(Tokens::Scopes).text().not_null())
                    .col(ColumnDef::new(Tokens::Prefixes).text().not_null())
                    .col(
                        ColumnDef::new(Tokens::CreatedMicros)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Tokens::RevokedMicros).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tokens::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    Name,
    Hash,
    Hint,
    Scopes,
    Prefixes,
    CreatedMicros,
    RevokedMicros,
}
