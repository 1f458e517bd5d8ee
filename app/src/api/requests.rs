//! Pool requests as the browser sees them: what the request form asks for (by the cloud of
//! the chosen credential), the monthly cost estimate (computed here, so the form can update
//! it as the member types, and the server the same way), a request with its timeline, the
//! admins' queue, and the server functions behind those pages.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::credentials::FieldSpec;
use crate::error::AppError;

/// The architectures Copr builds for, as its arch tags name them (`noarch` rides on x86_64).
pub const ARCHES: [&str; 4] = ["x86_64", "aarch64", "ppc64le", "s390x"];

/// Hours in a month, for a machine kept running all month.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// A plain (not secret, one-line) field.
pub fn param(name: &str, label: &str, help: &str, placeholder: &str, default: &str) -> FieldSpec {
    FieldSpec {
        name: name.into(),
        label: label.into(),
        secret: false,
        multiline: false,
        help: help.into(),
        placeholder: placeholder.into(),
        default: default.into(),
    }
}

/// The cloud parameters a kind's spawner needs, one image per architecture.
pub fn param_specs(kind: &str, arches: &[String]) -> Vec<FieldSpec> {
    let images = |help: &str, placeholder: &str| -> Vec<FieldSpec> {
        arches
            .iter()
            .map(|a| {
                param(
                    &format!("image_{a}"),
                    &format!("Image for {a}"),
                    help,
                    placeholder,
                    "",
                )
            })
            .collect()
    };
    let volume = || {
        param(
            "volume_size",
            "Volume size (GB)",
            "The builder's extra volume for the build's files.",
            "160",
            "160",
        )
    };
    match kind {
        "aws" => [
            vec![param(
                "instance_type",
                "Instance type",
                "The EC2 instance type, e.g. c7i.xlarge (x86_64) or c7g.xlarge (aarch64).",
                "c7i.xlarge",
                "",
            )],
            images(
                "An AMI id of a Copr builder image.",
                "ami-0123456789abcdef0",
            ),
            vec![
                param(
                    "subnets",
                    "Subnets",
                    "One or more subnet ids, comma separated; each start picks one.",
                    "subnet-0a1b2c3d",
                    "",
                ),
                param(
                    "security_group",
                    "Security group",
                    "Lets the Copr backend reach the builders over SSH.",
                    "sg-0a1b2c3d",
                    "",
                ),
                param(
                    "ssh_key",
                    "SSH key pair name",
                    "The EC2 key pair Copr's backend logs in with.",
                    "copr-builder",
                    "copr-builder",
                ),
                volume(),
            ],
        ]
        .concat(),
        "openstack" => [
            vec![param(
                "flavor",
                "Flavor",
                "The flavor name or id.",
                "m1.large",
                "",
            )],
            images(
                "An image name or id of a Copr builder image.",
                "copr-builder-f41",
            ),
            vec![
                param(
                    "network",
                    "Network",
                    "The network id the builders get their address on.",
                    "",
                    "",
                ),
                param(
                    "security_group",
                    "Security group",
                    "Lets the Copr backend reach the builders over SSH.",
                    "default",
                    "default",
                ),
                param(
                    "ssh_key",
                    "SSH key pair",
                    "The key pair Copr's backend logs in with.",
                    "copr-builder",
                    "copr-builder",
                ),
                volume(),
            ],
        ]
        .concat(),
        "ibmcloud" => [
            vec![param(
                "instance_type",
                "Profile",
                "The VPC instance profile, e.g. bz2-16x64.",
                "bz2-16x64",
                "",
            )],
            images("The image UUID of a Copr builder image.", ""),
            vec![
                param("vpc", "VPC id", "The VPC the builders run in.", "", ""),
                param(
                    "subnets",
                    "Subnets",
                    "ZONE:SUBNET pairs, comma separated, e.g. us-east-1:0757-abcd.",
                    "",
                    "",
                ),
                param(
                    "security_group",
                    "Security group id",
                    "Lets the Copr backend reach the builders over SSH.",
                    "",
                    "",
                ),
                param(
                    "ssh_key",
                    "SSH key id",
                    "The key Copr's backend logs in with.",
                    "",
                    "",
                ),
                volume(),
            ],
        ]
        .concat(),
        "libvirt" => vec![
            param("cpus", "CPUs", "Virtual CPUs per builder.", "4", "4"),
            param(
                "ram_mb",
                "Memory (MB)",
                "Memory per builder.",
                "16384",
                "16384",
            ),
            param(
                "volume_size",
                "Swap volume (GB)",
                "The builder's swap-space volume.",
                "168",
                "168",
            ),
        ],
        _ => Vec::new(),
    }
}

/// The budget fields of a request or a pool: what the cost estimate reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// `on_demand` or `preallocated`.
    pub choice: String,
    /// Machines kept ready (preallocated only).
    pub prealloc: u32,
    pub max: u32,
    pub price_per_hour: f64,
    pub monthly_cap: Option<f64>,
    /// Machine-hours the team expects its builds to use in a month.
    pub build_hours: f64,
}

/// What a month is expected to cost, against the cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Paid whatever the builds do: the preallocated machines, all month.
    pub floor: f64,
    /// The builds' hours beyond what the preallocated machines cover.
    pub variable: f64,
    pub total: f64,
    /// Hours the builds need beyond what `max` machines can give in a month (they wait).
    pub unserved_hours: f64,
    pub cap: Option<f64>,
}

impl Estimate {
    /// "fits", "exceeds by $X", or "no cap".
    pub fn verdict(&self) -> String {
        match self.cap {
            None => "no monthly cap".to_string(),
            Some(cap) if self.total <= cap => format!("fits the {} cap", money(cap)),
            Some(cap) => format!(
                "exceeds the {} cap by {}",
                money(cap),
                money(self.total - cap)
            ),
        }
    }

    pub fn fits(&self) -> bool {
        self.cap.is_none_or(|c| self.total <= c)
    }
}

/// `$1,234.50`.
/// Where a pool's month stands against its cap, said where people look (the status page, the
/// team page): `"monthly cap reached: $X of $Y"` once no machine starts, a warning from 80 %.
/// `None` without a cap or below 80 %.
pub fn cap_note(month_cost: f64, monthly_cap: Option<f64>) -> Option<CapNote> {
    let cap = monthly_cap?;
    if month_cost >= cap {
        Some(CapNote {
            text: format!(
                "monthly cap reached: {} of {}",
                money(month_cost),
                money(cap)
            ),
            reached: true,
        })
    } else if cap > 0.0 && month_cost >= 0.8 * cap {
        Some(CapNote {
            text: format!(
                "{:.0} % of the monthly cap used: {} of {}",
                (month_cost / cap * 100.0).floor(),
                money(month_cost),
                money(cap)
            ),
            reached: false,
        })
    } else {
        None
    }
}

/// See [`cap_note`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapNote {
    pub text: String,
    /// True when the pool starts no machine until next month.
    pub reached: bool,
}

pub fn money(amount: f64) -> String {
    let cents = (amount * 100.0).round() as i64;
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}${grouped}.{frac:02}", if cents < 0 { "-" } else { "" })
}

/// The monthly cost: preallocated = N × 730 h × price as the floor, plus the build hours
/// beyond what those N machines cover; on demand = the build hours × price. Build hours
/// beyond `max` machines running all month are not billed: those builds wait.
pub fn estimate(b: &Budget) -> Estimate {
    let price = b.price_per_hour.max(0.0);
    let capacity = f64::from(b.max) * HOURS_PER_MONTH;
    let hours = b.build_hours.max(0.0);
    let unserved_hours = (hours - capacity).max(0.0);
    let (floor, variable) = if b.choice == "preallocated" {
        let kept = f64::from(b.prealloc.min(b.max)) * HOURS_PER_MONTH;
        (kept * price, (hours.min(capacity) - kept).max(0.0) * price)
    } else {
        (0.0, hours.min(capacity) * price)
    };
    Estimate {
        floor,
        variable,
        total: floor + variable,
        unserved_hours,
        cap: b.monthly_cap,
    }
}

/// The request form's raw values, as typed (numbers as strings: a form keeps what was typed).
pub type FormValues = BTreeMap<String, String>;

/// Reads the budget out of a form's values, leniently (for the live estimate: an empty or
/// half-typed number counts as 0).
pub fn budget_of(values: &FormValues) -> Budget {
    let num = |k: &str| {
        values
            .get(k)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    Budget {
        choice: values
            .get("budget")
            .cloned()
            .unwrap_or_else(|| "on_demand".into()),
        prealloc: num("prealloc").unwrap_or(0.0).max(0.0) as u32,
        max: num("max").unwrap_or(0.0).max(0.0) as u32,
        price_per_hour: num("price_per_hour").unwrap_or(0.0),
        monthly_cap: num("monthly_cap"),
        build_hours: num("build_hours").unwrap_or(0.0),
    }
}

/// One price list entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceEntry {
    pub id: i32,
    pub kind: String,
    pub region: String,
    pub instance_type: String,
    pub price_per_hour: f64,
    pub updated_by: String,
    pub updated_at: String,
}

/// The price of `instance_type` in the list for the credential's kind and region, if any.
pub fn list_price(
    prices: &[PriceEntry],
    kind: &str,
    region: &str,
    instance_type: &str,
) -> Option<f64> {
    prices
        .iter()
        .find(|p| p.kind == kind && p.region == region && p.instance_type == instance_type.trim())
        .map(|p| p.price_per_hour)
}

/// A credential a request may name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialChoice {
    pub id: i32,
    pub name: String,
    pub kind: String,
    pub region: String,
}

/// The "new pool request" page: step one chooses a credential, step two fills the form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFormPage {
    pub team: String,
    pub csrf_token: String,
    pub credentials: Vec<CredentialChoice>,
    /// The chosen credential.
    pub credential: Option<CredentialChoice>,
    /// For a change request: the pool to change.
    pub change: Option<String>,
    /// The cloud parameters the credential's kind needs, for every architecture (the form
    /// shows the images of the ticked ones).
    pub params: Vec<FieldSpec>,
    /// What to show in the form: what was typed, or the defaults.
    pub values: FormValues,
    pub errors: Vec<crate::error::FieldError>,
    /// Prices for the credential's kind and region, to pre-fill the price.
    pub prices: Vec<PriceEntry>,
    /// A preview (no JavaScript) was asked for: the estimate below is of these values.
    pub preview: bool,
}

/// One step of a request's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// RFC 3339 UTC.
    pub at: String,
    pub actor: String,
    /// submitted, approved, rejected, withdrawn.
    pub action: String,
    pub note: Option<String>,
}

/// A request as its page and the queue show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestView {
    pub id: i32,
    pub team: String,
    /// `new` or `change`.
    pub purpose: String,
    pub name: String,
    /// `dedicated` or `community`.
    pub pool_kind: String,
    pub credential: Option<String>,
    pub credential_kind: Option<String>,
    pub arches: Vec<String>,
    /// The cloud parameters, as (label, value).
    pub params: Vec<(String, String)>,
    pub budget: Budget,
    pub estimate: Estimate,
    pub scope: Vec<String>,
    pub justification: String,
    pub state: String,
    pub created_by: String,
    pub created_at: String,
    pub timeline: Vec<TimelineEntry>,
    /// For admins: what to look at before approving.
    pub warnings: Vec<String>,
    /// What approval made: pool names.
    pub pools: Vec<String>,
}

/// A request's page, with what the viewer may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestPage {
    pub request: RequestView,
    pub csrf_token: String,
    pub can_withdraw: bool,
    pub can_decide: bool,
    /// The limits an admin may adjust before approving, pre-filled.
    pub limits: FormValues,
    pub errors: Vec<crate::error::FieldError>,
    pub notice: Option<String>,
}

/// The admins' queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestQueue {
    pub pending: Vec<RequestView>,
    /// The latest decisions, newest first.
    pub decided: Vec<RequestView>,
}

/// The price list page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceListPage {
    pub entries: Vec<PriceEntry>,
    pub csrf_token: String,
    pub values: FormValues,
    pub errors: Vec<crate::error::FieldError>,
    pub notice: Option<String>,
}

/// The server side of the request pages. Every method authorizes: a team's members see and
/// act on its requests, admins on all.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait RequestsBackend: Send + Sync + 'static {
    async fn form(
        &self,
        team: String,
        credential: Option<i32>,
        change: Option<String>,
    ) -> Result<RequestFormPage, AppError>;
    async fn request(&self, id: i32) -> Result<RequestPage, AppError>;
    async fn team_requests(&self, team: String) -> Result<Vec<RequestView>, AppError>;
    async fn queue(&self) -> Result<RequestQueue, AppError>;
    async fn prices(&self) -> Result<PriceListPage, AppError>;
}

#[cfg(feature = "ssr")]
fn requests_backend() -> Result<std::sync::Arc<dyn RequestsBackend>, AppError> {
    use_context::<std::sync::Arc<dyn RequestsBackend>>().ok_or_else(|| {
        leptos::logging::error!("no RequestsBackend in the Leptos context");
        AppError::Internal
    })
}

/// The new pool request page (or a change request for `change`).
#[server(prefix = "/api/ui", endpoint = "request_form")]
pub async fn get_request_form(
    team: String,
    credential: Option<i32>,
    change: Option<String>,
) -> Result<RequestFormPage, AppError> {
    super::answer(match requests_backend() {
        Ok(b) => b.form(team, credential, change).await,
        Err(e) => Err(e),
    })
}

/// A request's page.
#[server(prefix = "/api/ui", endpoint = "request")]
pub async fn get_request(id: i32) -> Result<RequestPage, AppError> {
    super::answer(match requests_backend() {
        Ok(b) => b.request(id).await,
        Err(e) => Err(e),
    })
}

/// A team's requests, newest first.
#[server(prefix = "/api/ui", endpoint = "team_requests")]
pub async fn get_team_requests(team: String) -> Result<Vec<RequestView>, AppError> {
    super::answer(match requests_backend() {
        Ok(b) => b.team_requests(team).await,
        Err(e) => Err(e),
    })
}

/// The admins' approval queue.
#[server(prefix = "/api/ui", endpoint = "request_queue")]
pub async fn get_request_queue() -> Result<RequestQueue, AppError> {
    super::answer(match requests_backend() {
        Ok(b) => b.queue().await,
        Err(e) => Err(e),
    })
}

/// The admins' price list.
#[server(prefix = "/api/ui", endpoint = "price_list")]
pub async fn get_price_list() -> Result<PriceListPage, AppError> {
    super::answer(match requests_backend() {
        Ok(b) => b.prices().await,
        Err(e) => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(choice: &str, prealloc: u32, max: u32, hours: f64, cap: Option<f64>) -> Budget {
        Budget {
            choice: choice.into(),
            prealloc,
            max,
            price_per_hour: 0.5,
            monthly_cap: cap,
            build_hours: hours,
        }
    }

    #[test]
    fn preallocated_machines_are_the_floor_and_builds_beyond_them_add_up() {
        let e = estimate(&budget("preallocated", 2, 5, 2000.0, Some(1000.0)));
        assert_eq!(e.floor, 2.0 * 730.0 * 0.5);
        assert_eq!(e.variable, (2000.0 - 1460.0) * 0.5);
        assert_eq!(e.total, 1000.0);
        assert!(e.fits());
        assert_eq!(e.verdict(), "fits the $1,000.00 cap");
        let small = estimate(&budget("preallocated", 2, 5, 100.0, Some(500.0)));
        assert_eq!(
            small.total, 730.0,
            "the floor is paid whatever the builds do"
        );
        assert_eq!(small.verdict(), "exceeds the $500.00 cap by $230.00");
    }

    #[test]
    fn on_demand_pays_the_build_hours_up_to_what_max_machines_can_give() {
        let e = estimate(&budget("on_demand", 0, 1, 1000.0, None));
        assert_eq!(e.floor, 0.0);
        assert_eq!(e.total, 730.0 * 0.5);
        assert_eq!(e.unserved_hours, 270.0);
        assert_eq!(e.verdict(), "no monthly cap");
    }

    #[test]
    fn half_typed_forms_estimate_as_zero_and_money_reads_well() {
        let v: FormValues = [
            ("budget", "preallocated"),
            ("prealloc", "2"),
            ("max", "x"),
            ("price_per_hour", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let b = budget_of(&v);
        assert_eq!((b.prealloc, b.max, b.price_per_hour), (2, 0, 0.0));
        assert_eq!(money(1234567.891), "$1,234,567.89");
        assert_eq!(money(0.5), "$0.50");
    }

    #[test]
    fn the_cap_note_says_when_a_pool_stops_starting_and_warns_from_80_percent() {
        assert_eq!(cap_note(50.0, None), None);
        assert_eq!(cap_note(79.9, Some(100.0)), None);
        let warn = cap_note(80.0, Some(100.0)).unwrap();
        assert_eq!(warn.text, "80 % of the monthly cap used: $80.00 of $100.00");
        assert!(!warn.reached);
        let reached = cap_note(100.0, Some(100.0)).unwrap();
        assert_eq!(reached.text, "monthly cap reached: $100.00 of $100.00");
        assert!(reached.reached);
        assert!(cap_note(0.0, Some(0.0)).unwrap().reached);
    }
}
