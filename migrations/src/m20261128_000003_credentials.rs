//! Teams' cloud credentials: the non-secret part in `credentials`, each secret field
//! encrypted in its own `credential_secrets` row (AES-256-GCM, with the id of the key that
//! sealed it). Pools may use one credential; a pool paused for a reason says why.

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
                    .table(Credentials::Table)
                    .col(pk_auto(Credentials::Id))
                    .col(integer(Credentials::TeamId))
                    // aws | openstack | ibmcloud | libvirt | local
                    .col(string(Credentials::Kind))
                    .col(string(Credentials::Name))
                    // JSON object of the non-secret fields (region, auth URL, URI, …).
                    .col(text(Credentials::Fields))
                    // Keyed SHA-256 of the secret fields, shortened, and the last four
                    // characters of the main secret: enough to recognise, nothing to use.
                    .col(string(Credentials::Fingerprint))
                    .col(string(Credentials::Last4))
                    .col(string(Credentials::CreatedBy))
                    .col(timestamp_with_time_zone(Credentials::CreatedAt))
                    .col(timestamp_with_time_zone(Credentials::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Credentials::SecretReplacedAt))
                    .col(timestamp_with_time_zone_null(Credentials::LastUsedAt))
                    .col(timestamp_with_time_zone_null(Credentials::RevokedAt))
                    .col(string_null(Credentials::RevokedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_credentials_team")
                            .from(Credentials::Table, Credentials::TeamId)
                            .to(Teams::Table, Teams::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A name is unique among a team's live credentials; a revoked one frees its name.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_credentials_live_name ON credentials (team_id, name) \
                 WHERE revoked_at IS NULL",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CredentialSecrets::Table)
                    .col(integer(CredentialSecrets::CredentialId))
                    .col(string(CredentialSecrets::Field))
                    .col(string(CredentialSecrets::KeyId))
                    // The 12-byte nonce followed by the ciphertext and its tag.
                    .col(blob(CredentialSecrets::Sealed))
                    .col(timestamp_with_time_zone(CredentialSecrets::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(CredentialSecrets::CredentialId)
                            .col(CredentialSecrets::Field),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_credential_secrets_credential")
                            .from(CredentialSecrets::Table, CredentialSecrets::CredentialId)
                            .to(Credentials::Table, Credentials::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(Pools::Table)
                    .add_column(integer_null(Pools::CredentialId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Pools::Table)
                    .add_column(text_null(Pools::StateReason))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Pools::StateReason, Pools::CredentialId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Pools::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(CredentialSecrets::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Credentials::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Credentials {
    Table,
    Id,
    TeamId,
    Kind,
    Name,
    Fields,
    Fingerprint,
    Last4,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    SecretReplacedAt,
    LastUsedAt,
    RevokedAt,
    RevokedBy,
}

#[derive(DeriveIden)]
pub enum CredentialSecrets {
    Table,
    CredentialId,
    Field,
    KeyId,
    Sealed,
    CreatedAt,
}

/// `pools` and the columns this step adds to it.
#[derive(DeriveIden)]
enum Pools {
    Table,
    CredentialId,
    StateReason,
}
