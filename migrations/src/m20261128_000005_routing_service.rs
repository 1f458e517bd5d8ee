//! Serving routing rules to Copr: the rules' version (bumped in the transaction of every
//! change, so pollers get an ETag that changes exactly when the rules do) and the API tokens
//! pollers use, stored as SHA-256 hashes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoutingState::Table)
                    // One row, id 1.
                    .col(integer(RoutingState::Id).primary_key())
                    .col(big_integer(RoutingState::Version))
                    .col(timestamp_with_time_zone(RoutingState::ChangedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO routing_state (id, version, changed_at) VALUES (1, 1, CURRENT_TIMESTAMP)",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(pk_auto(ApiTokens::Id))
                    .col(string_uniq(ApiTokens::Name))
                    // Hex SHA-256 of the token; the token itself is shown once and never stored.
                    .col(string_uniq(ApiTokens::TokenHash))
                    // The token's last four characters, to tell tokens apart.
                    .col(string(ApiTokens::Hint))
                    .col(string(ApiTokens::CreatedBy))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .col(string_null(ApiTokens::RevokedBy))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RoutingState::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RoutingState {
    Table,
    Id,
    Version,
    ChangedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    Name,
    TokenHash,
    Hint,
    CreatedBy,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
    RevokedBy,
}
