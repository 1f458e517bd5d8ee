//! The history behind the charts: what each pool (and all of them, pool `''`) looked like at a
//! fixed interval, kept fine for a day and hourly for 90 days. The engine writes it; the pages
//! only read it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PoolHistory::Table)
                    // The pool's name, or '' for every pool together.
                    .col(string(PoolHistory::Pool))
                    // 300 (kept a day) or 3600 (kept 90 days).
                    .col(integer(PoolHistory::StepSecs))
                    // Start of the interval, epoch milliseconds.
                    .col(big_integer(PoolHistory::AtMs))
                    // Machines by state and waiting tickets: a sample (fine rows) or the mean
                    // of an hour's samples (hourly rows).
                    .col(double(PoolHistory::Ready))
                    .col(double(PoolHistory::Taken))
                    .col(double(PoolHistory::Starting))
                    .col(double(PoolHistory::Ending))
                    .col(double(PoolHistory::Waiting))
                    // How many samples the figures above are the mean of (0: none yet).
                    .col(integer(PoolHistory::Samples))
                    // Start attempts in the interval and how many failed.
                    .col(integer(PoolHistory::Starts))
                    .col(integer(PoolHistory::StartFailures))
                    // Tickets that got a machine in the interval, and the p50 / p95 of the
                    // time from takeTicket to that machine.
                    .col(integer(PoolHistory::Assigned))
                    .col(big_integer_null(PoolHistory::ToReadyP50Ms))
                    .col(big_integer_null(PoolHistory::ToReadyP95Ms))
                    .primary_key(
                        Index::create()
                            .col(PoolHistory::Pool)
                            .col(PoolHistory::StepSecs)
                            .col(PoolHistory::AtMs),
                    )
                    .to_owned(),
            )
            .await?;
        // Each interval's time to a machine reads the tickets assigned in it; the table keeps
        // every ticket ever taken.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_tickets_assigned ON tickets (assigned_ms) \
                 WHERE assigned_ms IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX ix_tickets_assigned")
            .await?;
        manager
            .drop_table(Table::drop().table(PoolHistory::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PoolHistory {
    Table,
    Pool,
    StepSecs,
    AtMs,
    Ready,
    Taken,
    Starting,
    Ending,
    Waiting,
    Samples,
    Starts,
    StartFailures,
    Assigned,
    ToReadyP50Ms,
    ToReadyP95Ms,
}
