//! sea-orm entities: one file per table, in the shape `sea-orm-cli generate entity` writes.
//! Domain methods live in the modules named for their area, not here.

pub mod audit_events;
pub mod credential_secrets;
pub mod credentials;
pub mod memberships;
pub mod named_counters;
pub mod pools;
pub mod resources;
pub mod teams;
pub mod tickets;
pub mod users;
