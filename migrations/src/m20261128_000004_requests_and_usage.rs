//! Pool requests and what approving them makes: the requests with their timeline, the
//! admins' price list, routing rules (tags Copr adds to matching builds), dedicated pools
//! (`tags_required`), budgets (price and monthly cap) and usage per pool and day, metered
//! from each machine's `accounted_ms`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_identity_and_audit::Teams;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // SQLite adds one column per statement.
        for sql in [
            "ALTER TABLE pools ADD COLUMN tags_required TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE pools ADD COLUMN price_per_hour DOUBLE PRECISION",
            "ALTER TABLE pools ADD COLUMN monthly_cap DOUBLE PRECISION",
            "ALTER TABLE pools ADD COLUMN request_id INTEGER",
            // Until when the machine's time is counted in `usage` (epoch ms).
            "ALTER TABLE resources ADD COLUMN accounted_ms BIGINT",
        ] {
            db.execute_unprepared(sql).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Usage::Table)
                    .col(string(Usage::Pool))
                    // UTC day, YYYY-MM-DD.
                    .col(string(Usage::Day))
                    .col(big_integer(Usage::MachineMs))
                    // At the pool's price when the time was counted.
                    .col(double(Usage::Cost))
                    .col(integer(Usage::Starts))
                    .primary_key(Index::create().col(Usage::Pool).col(Usage::Day))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PriceList::Table)
                    .col(pk_auto(PriceList::Id))
                    .col(string(PriceList::Kind))
                    .col(string(PriceList::Region))
                    .col(string(PriceList::InstanceType))
                    .col(double(PriceList::PricePerHour))
                    .col(string(PriceList::UpdatedBy))
                    .col(timestamp_with_time_zone(PriceList::CreatedAt))
                    .col(timestamp_with_time_zone(PriceList::UpdatedAt))
                    .index(
                        Index::create()
                            .name("ux_price_list_entry")
                            .col(PriceList::Kind)
                            .col(PriceList::Region)
                            .col(PriceList::InstanceType)
                            .unique(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoutingRules::Table)
                    .col(pk_auto(RoutingRules::Id))
                    // Rules apply in this order (Copr's EXTRA_BUILDCHROOT_TAGS is a list).
                    .col(integer(RoutingRules::Position))
                    .col(text(RoutingRules::Pattern))
                    // JSON array of tag names.
                    .col(text(RoutingRules::Tags))
                    // `admin`, `request:<id>`.
                    .col(string(RoutingRules::Origin))
                    // Rules made for a pool follow its state.
                    .col(string_null(RoutingRules::Pool))
                    .col(boolean(RoutingRules::Enabled))
                    .col(text_null(RoutingRules::Note))
                    .col(timestamp_with_time_zone(RoutingRules::CreatedAt))
                    .col(timestamp_with_time_zone(RoutingRules::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PoolRequests::Table)
                    .col(pk_auto(PoolRequests::Id))
                    .col(integer(PoolRequests::TeamId))
                    // `new` (a new pool) or `change` (limits or budget of `pool`).
                    .col(string(PoolRequests::Purpose))
                    // For a change: the pool; for a new pool: the name asked for.
                    .col(string(PoolRequests::Name))
                    // `dedicated` or `community`.
                    .col(string(PoolRequests::PoolKind))
                    .col(integer_null(PoolRequests::CredentialId))
                    // Everything else the form asked for, as JSON (arches, cloud parameters,
                    // budget, max, price, cap, scope, justification).
                    .col(text(PoolRequests::Spec))
                    // submitted | approved | rejected | withdrawn
                    .col(string(PoolRequests::State))
                    .col(string(PoolRequests::CreatedBy))
                    .col(timestamp_with_time_zone(PoolRequests::CreatedAt))
                    .col(timestamp_with_time_zone(PoolRequests::UpdatedAt))
                    .col(string_null(PoolRequests::DecidedBy))
                    .col(timestamp_with_time_zone_null(PoolRequests::DecidedAt))
                    .col(text_null(PoolRequests::DecisionReason))
                    // What approval made: JSON {limits, pools, rules}.
                    .col(text_null(PoolRequests::Outcome))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_pool_requests_team")
                            .from(PoolRequests::Table, PoolRequests::TeamId)
                            .to(Teams::Table, Teams::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_pool_requests_pending ON pool_requests (id) WHERE state = 'submitted'",
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(RequestEvents::Table)
                    .col(pk_auto(RequestEvents::Id))
                    .col(integer(RequestEvents::RequestId))
                    .col(timestamp_with_time_zone(RequestEvents::At))
                    .col(string(RequestEvents::Actor))
                    // submitted | approved | rejected | withdrawn
                    .col(string(RequestEvents::Action))
                    .col(text_null(RequestEvents::Note))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_request_events_request")
                            .from(RequestEvents::Table, RequestEvents::RequestId)
                            .to(PoolRequests::Table, PoolRequests::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PoolRequests::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RoutingRules::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PriceList::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Usage::Table).to_owned())
            .await?;
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE resources DROP COLUMN accounted_ms",
            "ALTER TABLE pools DROP COLUMN request_id",
            "ALTER TABLE pools DROP COLUMN monthly_cap",
            "ALTER TABLE pools DROP COLUMN price_per_hour",
            "ALTER TABLE pools DROP COLUMN tags_required",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Usage {
    Table,
    Pool,
    Day,
    MachineMs,
    Cost,
    Starts,
}

#[derive(DeriveIden)]
enum PriceList {
    Table,
    Id,
    Kind,
    Region,
    InstanceType,
    PricePerHour,
    UpdatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RoutingRules {
    Table,
    Id,
    Position,
    Pattern,
    Tags,
    Origin,
    Pool,
    Enabled,
    Note,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PoolRequests {
    Table,
    Id,
    TeamId,
    Purpose,
    Name,
    PoolKind,
    CredentialId,
    Spec,
    State,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    DecidedBy,
    DecidedAt,
    DecisionReason,
    Outcome,
}

#[derive(DeriveIden)]
enum RequestEvents {
    Table,
    Id,
    RequestId,
    At,
    Actor,
    Action,
    Note,
}
