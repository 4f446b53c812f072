//! The `idempotency_keys` table: which `Idempotency-Key`s the server has answered, and with what.
//!
//! A POST that carries an `Idempotency-Key` stores its metrics and its key in one transaction, so
//! a retry of the same request (the first answer was lost, the client sent it again) finds the key
//! and is answered with the original result instead of storing the batch twice. `created_micros`
//! lets the server forget keys once they are older than its idempotency window.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000002_create_idempotency_keys"
    }
}

#[async_trait::async_trait]
#[allow(elided_lifetimes_in_paths)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(IdempotencyKeys::Key)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedMicros)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::Stored)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Forgetting expired keys deletes by age.
        manager
            .create_index(
                Index::create()
                    .name("idempotency_keys_created")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedMicros)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Key,
    CreatedMicros,
    Stored,
}
