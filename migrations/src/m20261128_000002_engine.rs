//! The allocation engine's state: pools (every resalloc `pools.yaml` key plus state, owner and
//! hook timeouts), resources, tickets and named counters.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_identity_and_audit::Teams;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Pools::Table)
                    .col(string(Pools::Name).primary_key())
                    // active | paused | draining | retired
                    .col(string(Pools::State))
                    .col(integer_null(Pools::OwnerTeamId))
                    .col(text_null(Pools::Description))
                    .col(integer(Pools::Max))
                    .col(integer(Pools::MaxStarting))
                    .col(integer(Pools::MaxPrealloc))
                    .col(integer(Pools::StartDelay))
                    .col(text(Pools::CmdNew))
                    .col(text(Pools::CmdDelete))
                    .col(text_null(Pools::CmdLivecheck))
                    .col(text_null(Pools::CmdRelease))
                    .col(text_null(Pools::CmdList))
                    .col(integer(Pools::LivecheckPeriod))
                    .col(integer(Pools::LivecheckAttempts))
                    .col(integer(Pools::ReuseOpportunityTime))
                    .col(integer(Pools::ReuseMaxCount))
                    .col(integer(Pools::ReuseMaxTime))
                    .col(string(Pools::NamePattern))
                    // JSON arrays: tags as [{"name": …, "priority": …}], counters as names.
                    .col(text(Pools::Tags))
                    .col(text(Pools::TagsOnDemand))
                    .col(text(Pools::NamedCounters))
                    // Hook timeouts in seconds (resalloc has none: #14, #134).
                    .col(integer(Pools::TimeoutNew))
                    .col(integer(Pools::TimeoutDelete))
                    .col(integer(Pools::TimeoutLivecheck))
                    .col(integer(Pools::TimeoutRelease))
                    .col(integer(Pools::TimeoutList))
                    // Waiting tickets may start machines in this normal pool (#32).
                    .col(boolean(Pools::StartOnWaiting))
                    // cmd_list: how often, and how old an unknown machine must be seen to go.
                    .col(integer(Pools::ListPeriod))
                    .col(integer(Pools::UnknownMinAge))
                    // Runtime statistics kept by the engine.
                    .col(big_integer_null(Pools::LastStartMs))
                    .col(big_integer_null(Pools::LastAttemptToStartMs))
                    .col(big_integer_null(Pools::LastSuccessfulStartMs))
                    .col(double_null(Pools::StartSuccessRate))
                    .col(double_null(Pools::StartTimeAvg))
                    .col(big_integer_null(Pools::LastListMs))
                    .col(timestamp_with_time_zone(Pools::CreatedAt))
                    .col(timestamp_with_time_zone(Pools::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_pools_owner_team")
                            .from(Pools::Table, Pools::OwnerTeamId)
                            .to(Teams::Table, Teams::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tickets::Table)
                    .col(pk_auto(Tickets::Id))
                    // OPEN | CLOSED | FAILED
                    .col(string(Tickets::State))
                    // JSON array of tag names, sorted and without duplicates.
                    .col(text(Tickets::Tags))
                    .col(string_null(Tickets::Sandbox))
                    .col(integer_null(Tickets::ResourceId))
                    .col(big_integer_null(Tickets::AssignedMs))
                    .col(big_integer_null(Tickets::ClosedMs))
                    .col(timestamp_with_time_zone(Tickets::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // The engine reads the open tickets on every pass; the table keeps every ticket ever
        // taken (millions, in Copr's case), so only the open ones are indexed for it.
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX ix_tickets_open ON tickets (id) WHERE state = 'OPEN'")
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Resources::Table)
                    .col(pk_auto(Resources::Id))
                    .col(string(Resources::Pool))
                    .col(string_null(Resources::Name))
                    // STARTING | UP | RELEASING | DELETE_REQUEST | DELETING | ENDED
                    .col(string(Resources::State))
                    // The first 512 bytes of cmd_new's standard output.
                    .col(binary_null(Resources::Data))
                    // JSON [{"name", "priority"}], the pool's tags when the machine came up.
                    .col(text(Resources::Tags))
                    .col(integer(Resources::IdInPool))
                    .col(integer_null(Resources::TicketId).unique_key())
                    .col(string_null(Resources::Sandbox))
                    .col(big_integer_null(Resources::SandboxedSinceMs))
                    .col(big_integer_null(Resources::ReleasedAtMs))
                    .col(integer(Resources::ReleasesCounter))
                    .col(integer(Resources::CheckFailedCount))
                    .col(big_integer_null(Resources::CheckLastMs))
                    .col(big_integer_null(Resources::UpMs))
                    .col(big_integer_null(Resources::EndedMs))
                    // Why the machine was (or is being) deleted, for people and the audit log.
                    .col(string_null(Resources::DeleteReason))
                    .col(timestamp_with_time_zone(Resources::CreatedAt))
                    .col(timestamp_with_time_zone(Resources::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_resources_pool")
                            .from(Resources::Table, Resources::Pool)
                            .to(Pools::Table, Pools::Name),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_resources_state")
                    .table(Resources::Table)
                    .col(Resources::State)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_resources_name")
                    .table(Resources::Table)
                    .col(Resources::Name)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_resources_pool")
                    .table(Resources::Table)
                    .col(Resources::Pool)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_resources_live ON resources (id) WHERE state <> 'ENDED'",
            )
            .await?;
        // An id within the pool is unique among the machines that still exist. Partial indexes
        // are written alike in SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_resources_id_in_pool ON resources (pool, id_in_pool) \
                 WHERE state <> 'ENDED'",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(NamedCounters::Table)
                    .col(integer(NamedCounters::ResourceId))
                    .col(string(NamedCounters::CounterName))
                    .col(integer(NamedCounters::Value))
                    .col(timestamp_with_time_zone(NamedCounters::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(NamedCounters::ResourceId)
                            .col(NamedCounters::CounterName),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_named_counters_resource")
                            .from(NamedCounters::Table, NamedCounters::ResourceId)
                            .to(Resources::Table, Resources::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_named_counters_value")
                    .table(NamedCounters::Table)
                    .col(NamedCounters::CounterName)
                    .col(NamedCounters::Value)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            NamedCounters::Table.into_iden(),
            Resources::Table.into_iden(),
            Tickets::Table.into_iden(),
            Pools::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Pools {
    Table,
    Name,
    State,
    OwnerTeamId,
    Description,
    Max,
    MaxStarting,
    MaxPrealloc,
    StartDelay,
    CmdNew,
    CmdDelete,
    CmdLivecheck,
    CmdRelease,
    CmdList,
    LivecheckPeriod,
    LivecheckAttempts,
    ReuseOpportunityTime,
    ReuseMaxCount,
    ReuseMaxTime,
    NamePattern,
    Tags,
    TagsOnDemand,
    NamedCounters,
    TimeoutNew,
    TimeoutDelete,
    TimeoutLivecheck,
    TimeoutRelease,
    TimeoutList,
    StartOnWaiting,
    ListPeriod,
    UnknownMinAge,
    LastStartMs,
    LastAttemptToStartMs,
    LastSuccessfulStartMs,
    StartSuccessRate,
    StartTimeAvg,
    LastListMs,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tickets {
    Table,
    Id,
    State,
    Tags,
    Sandbox,
    ResourceId,
    AssignedMs,
    ClosedMs,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Resources {
    Table,
    Id,
    Pool,
    Name,
    State,
    Data,
    Tags,
    IdInPool,
    TicketId,
    Sandbox,
    SandboxedSinceMs,
    ReleasedAtMs,
    ReleasesCounter,
    CheckFailedCount,
    CheckLastMs,
    UpMs,
    EndedMs,
    DeleteReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NamedCounters {
    Table,
    ResourceId,
    CounterName,
    Value,
    CreatedAt,
}
