//! The admins' price list: what one machine of an instance type costs per hour in a kind's
//! region. A request form pre-fills its price from it; the member may still change it.

use app::api::requests::{FormValues, PriceEntry};
use app::error::FieldError;
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::entities::price_list;

/// Every entry, by kind, region and instance type.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<PriceEntry>, DbErr> {
    Ok(price_list::Entity::find()
        .order_by_asc(price_list::Column::Kind)
        .order_by_asc(price_list::Column::Region)
        .order_by_asc(price_list::Column::InstanceType)
        .all(db)
        .await?
        .into_iter()
        .map(|p| PriceEntry {
            id: p.id,
            kind: p.kind,
            region: p.region,
            instance_type: p.instance_type,
            price_per_hour: p.price_per_hour,
            updated_by: p.updated_by,
            updated_at: p
                .updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
        .collect())
}

fn problem(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Sets the price of (kind, region, instance type), adding the entry or changing it.
pub async fn set(
    db: &(impl ConnectionTrait + TransactionTrait),
    actor: &Actor,
    values: &FormValues,
) -> Result<(), Result<Vec<FieldError>, DbErr>> {
    let get = |k: &str| {
        values
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (kind, region, instance_type) = (get("kind"), get("region"), get("instance_type"));
    let mut errors = Vec::new();
    if !matches!(
        kind.as_str(),
        "aws" | "openstack" | "ibmcloud" | "libvirt" | "local"
    ) {
        errors.push(problem("kind", "Choose a kind of cloud."));
    }
    let word = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if !word(&region) {
        errors.push(problem(
            "region",
            "Enter the region as the credential names it, e.g. us-east-1.",
        ));
    }
    if !word(&instance_type) {
        errors.push(problem(
            "instance_type",
            "Enter the instance type, flavor or profile, e.g. c7i.xlarge.",
        ));
    }
    let price = get("price_per_hour")
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0);
    if price.is_none() {
        errors.push(problem(
            "price_per_hour",
            "Enter the price per machine-hour: a number, 0 or more.",
        ));
    }
    if !errors.is_empty() {
        return Err(Ok(errors));
    }
    let price = price.expect("checked");
    let txn = crate::db::begin_write(db).await.map_err(Err)?;
    let existing = price_list::Entity::find()
        .filter(price_list::Column::Kind.eq(kind.as_str()))
        .filter(price_list::Column::Region.eq(region.as_str()))
        .filter(price_list::Column::InstanceType.eq(instance_type.as_str()))
        .one(&txn)
        .await
        .map_err(Err)?;
    let now = Utc::now();
    let before = existing.as_ref().map(|e| e.price_per_hour);
    match existing {
        Some(e) => {
            price_list::Entity::update(price_list::ActiveModel {
                id: Set(e.id),
                price_per_hour: Set(price),
                updated_by: Set(actor.label()),
                updated_at: Set(now),
                ..Default::default()
            })
            .exec(&txn)
            .await
            .map_err(Err)?;
        }
        None => {
            price_list::Entity::insert(price_list::ActiveModel {
                kind: Set(kind.clone()),
                region: Set(region.clone()),
                instance_type: Set(instance_type.clone()),
                price_per_hour: Set(price),
                updated_by: Set(actor.label()),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            })
            .exec(&txn)
            .await
            .map_err(Err)?;
        }
    }
    audit::record(
        &txn,
        actor,
        "price.set",
        "price",
        format!("{kind}/{region}/{instance_type}"),
        json!({ "price_per_hour": [before, price] }),
    )
    .await
    .map_err(Err)?;
    txn.commit().await.map_err(Err)?;
    Ok(())
}

/// Removes an entry.
pub async fn delete(
    db: &(impl ConnectionTrait + TransactionTrait),
    actor: &Actor,
    id: i32,
) -> Result<bool, DbErr> {
    let txn = crate::db::begin_write(db).await?;
    let Some(e) = price_list::Entity::find_by_id(id).one(&txn).await? else {
        return Ok(false);
    };
    price_list::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        "price.delete",
        "price",
        format!("{}/{}/{}", e.kind, e.region, e.instance_type),
        json!({ "price_per_hour": e.price_per_hour }),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}
