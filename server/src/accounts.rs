//! People and teams. A team is a Fedora Accounts (FAS) group; membership is what the provider
//! said at the user's last sign-in, so someone removed from a group loses access at their next
//! sign-in (and sessions have a maximum age).

use std::collections::BTreeSet;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::config::TeamGroups;
use crate::entities::{memberships, teams, users};

/// Who the provider (or the development sign-in) says the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The stable key: OIDC `sub`.
    pub sub: String,
    /// The FAS username, used for display and authorization.
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

/// The signed-in user, as authorization sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: i32,
    /// The provider's subject (`dev:<name>` for the development sign-in).
    pub sub: String,
    pub username: String,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
    /// Team names, sorted.
    pub teams: Vec<String>,
    pub admin: bool,
}

impl CurrentUser {
    pub fn is_member(&self, team: &str) -> bool {
        self.teams.iter().any(|t| t == team)
    }
}

/// Which groups make someone an admin and which count as teams.
#[derive(Debug, Clone)]
pub struct GroupPolicy {
    pub admin_groups: Vec<String>,
    pub team_groups: TeamGroups,
}

impl GroupPolicy {
    pub fn is_admin(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| self.admin_groups.contains(g))
    }

    pub fn teams(&self, groups: &[String]) -> BTreeSet<String> {
        groups
            .iter()
            .filter(|g| self.team_groups.is_team(g))
            .cloned()
            .collect()
    }
}

/// Records a sign-in: creates or updates the user, the teams of their groups, and replaces
/// their memberships with the current ones. Returns the user's id.
pub async fn sign_in(
    db: &(impl ConnectionTrait + TransactionTrait),
    who: &Identity,
    policy: &GroupPolicy,
) -> Result<i32, DbErr> {
    let now = Utc::now();
    let admin = policy.is_admin(&who.groups);
    let groups_json = serde_json::to_string(&who.groups).expect("strings serialize");
    let txn = crate::db::begin_write(db).await?;
    let existing = users::Entity::find()
        .filter(users::Column::Sub.eq(&who.sub))
        .one(&txn)
        .await?;
    let user = match existing {
        Some(u) => {
            let mut am = u.into_active_model();
            am.username = Set(who.username.clone());
            am.display_name = Set(who.display_name.clone());
            am.email = Set(who.email.clone());
            am.groups = Set(groups_json);
            am.is_admin = Set(admin);
            am.updated_at = Set(now);
            am.last_login_at = Set(Some(now));
            am.update(&txn).await?
        }
        None => {
            users::ActiveModel {
                sub: Set(who.sub.clone()),
                username: Set(who.username.clone()),
                display_name: Set(who.display_name.clone()),
                email: Set(who.email.clone()),
                groups: Set(groups_json),
                is_admin: Set(admin),
                created_at: Set(now),
                updated_at: Set(now),
                last_login_at: Set(Some(now)),
                ..Default::default()
            }
            .insert(&txn)
            .await?
        }
    };

    let wanted = policy.teams(&who.groups);
    let mut team_ids = Vec::new();
    for name in &wanted {
        let team = match teams::Entity::find()
            .filter(teams::Column::Name.eq(name))
            .one(&txn)
            .await?
        {
            Some(t) => t,
            None => {
                let t = teams::ActiveModel {
                    name: Set(name.clone()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
                audit::record(
                    &txn,
                    &Actor::System,
                    "team.create",
                    "team",
                    name,
                    json!({ "from": "FAS group" }),
                )
                .await?;
                t
            }
        };
        team_ids.push((team.id, team.name));
    }
    let current = memberships::Entity::find()
        .filter(memberships::Column::UserId.eq(user.id))
        .all(&txn)
        .await?;
    let current_ids: BTreeSet<i32> = current.iter().map(|m| m.team_id).collect();
    let wanted_ids: BTreeSet<i32> = team_ids.iter().map(|(id, _)| *id).collect();
    let left: Vec<i32> = current_ids.difference(&wanted_ids).copied().collect();
    if !left.is_empty() {
        memberships::Entity::delete_many()
            .filter(memberships::Column::UserId.eq(user.id))
            .filter(memberships::Column::TeamId.is_in(left.clone()))
            .exec(&txn)
            .await?;
    }
    let mut joined = Vec::new();
    for (id, name) in &team_ids {
        if !current_ids.contains(id) {
            memberships::ActiveModel {
                user_id: Set(user.id),
                team_id: Set(*id),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
            joined.push(name.clone());
        }
    }
    let left_names: Vec<String> = if left.is_empty() {
        Vec::new()
    } else {
        teams::Entity::find()
            .filter(teams::Column::Id.is_in(left))
            .all(&txn)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect()
    };
    audit::record(
        &txn,
        &Actor::User(who.username.clone()),
        "user.sign_in",
        "user",
        &who.username,
        json!({ "admin": admin, "teams_joined": joined, "teams_left": left_names }),
    )
    .await?;
    txn.commit().await?;
    Ok(user.id)
}

/// The user with their teams, or None when the row is gone.
pub async fn load(db: &impl ConnectionTrait, user_id: i32) -> Result<Option<CurrentUser>, DbErr> {
    let Some(u) = users::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    let ids: Vec<i32> = memberships::Entity::find()
        .filter(memberships::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.team_id)
        .collect();
    let teams = if ids.is_empty() {
        Vec::new()
    } else {
        teams::Entity::find()
            .filter(teams::Column::Id.is_in(ids))
            .order_by_asc(teams::Column::Name)
            .all(db)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect()
    };
    Ok(Some(CurrentUser {
        id: u.id,
        sub: u.sub,
        username: u.username,
        display_name: u.display_name,
        groups: serde_json::from_str(&u.groups).unwrap_or_default(),
        teams,
        admin: u.is_admin,
    }))
}

/// A team's members, by username.
pub async fn team_members(
    db: &impl ConnectionTrait,
    team: &str,
) -> Result<Option<Vec<users::Model>>, DbErr> {
    let Some(t) = teams::Entity::find()
        .filter(teams::Column::Name.eq(team))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let ids: Vec<i32> = memberships::Entity::find()
        .filter(memberships::Column::TeamId.eq(t.id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    if ids.is_empty() {
        return Ok(Some(Vec::new()));
    }
    users::Entity::find()
        .filter(users::Column::Id.is_in(ids))
        .order_by_asc(users::Column::Username)
        .all(db)
        .await
        .map(Some)
}

/// A team by name.
pub async fn team(db: &impl ConnectionTrait, name: &str) -> Result<Option<teams::Model>, DbErr> {
    teams::Entity::find()
        .filter(teams::Column::Name.eq(name))
        .one(db)
        .await
}
