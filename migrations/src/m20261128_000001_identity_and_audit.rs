//! People and teams (from Fedora Accounts) and the append-only audit log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_auto(Users::Id))
                    // The OIDC subject: the stable key (a salted hash for pairwise clients).
                    .col(string_uniq(Users::Sub))
                    .col(string(Users::Username))
                    .col(string_null(Users::DisplayName))
                    .col(string_null(Users::Email))
                    // JSON array: every FAS group from the last sign-in (teams are a subset).
                    .col(text(Users::Groups))
                    .col(boolean(Users::IsAdmin).default(false))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Users::LastLoginAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_users_username")
                    .table(Users::Table)
                    .col(Users::Username)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Teams::Table)
                    .col(pk_auto(Teams::Id))
                    // The FAS group name.
                    .col(string_uniq(Teams::Name))
                    .col(timestamp_with_time_zone(Teams::CreatedAt))
                    .col(timestamp_with_time_zone(Teams::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(integer(Memberships::UserId))
                    .col(integer(Memberships::TeamId))
                    .col(timestamp_with_time_zone(Memberships::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(Memberships::UserId)
                            .col(Memberships::TeamId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memberships_user")
                            .from(Memberships::Table, Memberships::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memberships_team")
                            .from(Memberships::Table, Memberships::TeamId)
                            .to(Teams::Table, Teams::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_memberships_team")
                    .table(Memberships::Table)
                    .col(Memberships::TeamId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_auto(AuditEvents::Id))
                    .col(timestamp_with_time_zone(AuditEvents::CreatedAt))
                    // Username, or `system` / `cli:<user>` for the server and its commands.
                    .col(string(AuditEvents::Actor))
                    // Dotted verb, e.g. `pool.create`, `resource.delete`.
                    .col(string(AuditEvents::Action))
                    .col(string(AuditEvents::ObjectType))
                    .col(string(AuditEvents::ObjectId))
                    // JSON: what changed, with secrets redacted before they get here.
                    .col(text(AuditEvents::Details))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_created")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_object")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::ObjectType)
                    .col(AuditEvents::ObjectId)
                    .to_owned(),
            )
            .await?;
        // Written (as a no-op) first thing in every SQLite write transaction, so the
        // transaction takes the write lock before it reads: SQLite cannot upgrade a read to a
        // write once another connection has committed, and fails instead of waiting.
        manager
            .create_table(
                Table::create()
                    .table(WriteGate::Table)
                    .col(pk_auto(WriteGate::Id))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WriteGate::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            Memberships::Table.into_iden(),
            Teams::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
pub enum Users {
    Table,
    Id,
    Sub,
    Username,
    DisplayName,
    Email,
    Groups,
    IsAdmin,
    CreatedAt,
    UpdatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
pub enum Teams {
    Table,
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    UserId,
    TeamId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    CreatedAt,
    Actor,
    Action,
    ObjectType,
    ObjectId,
    Details,
}

#[derive(DeriveIden)]
enum WriteGate {
    Table,
    Id,
}
