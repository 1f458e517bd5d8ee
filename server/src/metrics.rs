//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format: what this process
//! counted (HTTP requests, sign-ins, routing fetches, and the engine's hooks and passes when
//! it leads) and the state every replica reads alike from the database (pools by state,
//! machines by pool and state, waiting tickets by tag set), refreshed at each scrape.
//!
//! Only loopback clients may read it unless `metrics_allow` names the scraper's address or
//! network, or the scraper sends `metrics_token` as a bearer token ([`allowed`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

use crate::config::Config;
use crate::engine::metrics::EngineMetrics;
use crate::engine::model::PoolState;
use crate::engine::store::{live_resources, open_tickets};
use crate::entities::{pools, resources, tickets};

/// A request method as a label: the standard ones by name, anything else as `other` (a
/// client must not make new series by inventing methods).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The labels of a routing fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// The API token's name (`session` for a signed-in user, `none` when refused).
    pub token: Arc<str>,
    /// `json`, `python` or `match`.
    pub format: &'static str,
    /// The HTTP status answered: 200, 304, 401, …
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success`, or why it failed (`state`, `provider`, `config`, …).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route as the router knows it, never the raw path, with parameters written
    /// `:id` (`/api/v1/tickets/:id`): braces in label values trip simple parsers.
    pub route: Arc<str>,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MachineLabels {
    pub pool: String,
    /// resalloc's states: `STARTING`, `UP`, `RELEASING`, `DELETE_REQUEST`, `DELETING`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TagSetLabels {
    /// The ticket's tags, sorted and joined with spaces (as Copr's `tags_raw`).
    pub tags: String,
}

pub struct Metrics {
    registry: Registry,
    pub routing_fetches: Family<FetchLabels, Counter>,
    sign_ins: Family<OutcomeLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
    /// Router patterns and their labels (a router has a fixed set of patterns).
    route_labels: RwLock<HashMap<Box<str>, Arc<str>>>,
    pools: Family<StateLabels, Gauge>,
    machines: Family<MachineLabels, Gauge>,
    waiting: Family<TagSetLabels, Gauge>,
    /// One refresh of the database gauges at a time, so two scrapes never interleave.
    refresh: tokio::sync::Mutex<()>,
    /// Who may read the metrics besides loopback (`metrics_allow`, `metrics_token`); replaced
    /// when the configuration is reloaded.
    access: std::sync::RwLock<Access>,
}

/// `metrics_allow` and `metrics_token`.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub allow: Vec<ipnet::IpNet>,
    pub token: Option<crate::config::Secret>,
}

impl Access {
    pub fn from_config(config: &Config) -> Access {
        Access {
            allow: config.metrics_allow.clone(),
            token: config.metrics_token.clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(&EngineMetrics::default(), Access::default())
    }
}

impl Metrics {
    /// The registry, with the engine's families in it.
    pub fn new(engine: &EngineMetrics, access: Access) -> Metrics {
        let mut registry = Registry::with_prefix("copr_pools");
        let m = Metrics {
            routing_fetches: Family::default(),
            sign_ins: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.5, 12))
            }),
            route_labels: RwLock::default(),
            pools: Family::default(),
            machines: Family::default(),
            waiting: Family::default(),
            refresh: tokio::sync::Mutex::new(()),
            access: std::sync::RwLock::new(access),
            registry: Registry::default(),
        };
        registry.register(
            "routing_fetches",
            "Requests to the routing API, by token, format and HTTP status",
            m.routing_fetches.clone(),
        );
        registry.register(
            "sign_ins",
            "Sign-ins, by outcome (success, or the reason one failed)",
            m.sign_ins.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            m.http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "How long HTTP requests took to answer, by route",
            Unit::Seconds,
            m.http_seconds.clone(),
        );
        registry.register(
            "pools",
            "Pools by state (from the database)",
            m.pools.clone(),
        );
        registry.register(
            "machines",
            "Machines that are not ENDED, by pool and state (from the database)",
            m.machines.clone(),
        );
        registry.register(
            "tickets_waiting",
            "Open tickets without a machine, by the tags they asked for (from the database)",
            m.waiting.clone(),
        );
        engine.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Replaces who may read the metrics.
    pub fn set_access(&self, access: Access) {
        *self.access.write().expect("metrics access lock") = access;
    }

    /// [`allowed`] with the current access settings.
    pub fn allows(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), Refusal> {
        allowed(
            &self.access.read().expect("metrics access lock"),
            peer,
            headers,
        )
    }

    /// Counts one routing request.
    pub fn routing_fetch(&self, token: &Arc<str>, format: &'static str, status: u16) {
        self.routing_fetches
            .get_or_create(&FetchLabels {
                token: token.clone(),
                format,
                status,
            })
            .inc();
    }

    /// Counts one sign-in.
    pub fn sign_in(&self, outcome: &str) {
        self.sign_ins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one HTTP request.
    pub fn http(&self, route: &str, method: &axum::http::Method, status: u16, seconds: f64) {
        let route = self.route_label(route);
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.clone(),
                method: method_label(method),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    /// The label of a router pattern (`/api/v1/tickets/{id}` → `/api/v1/tickets/:id`), made
    /// once per route: counting a request allocates nothing once its route was seen.
    fn route_label(&self, route: &str) -> Arc<str> {
        if let Some(label) = self.route_labels.read().expect("route labels").get(route) {
            return label.clone();
        }
        let label: Arc<str> = route.replace('{', ":").replace('}', "").into();
        self.route_labels
            .write()
            .expect("route labels")
            .insert(route.into(), label.clone());
        label
    }

    /// Reads the state gauges from the database.
    pub async fn refresh(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let _one = self.refresh.lock().await;
        let count = || Expr::col(sea_orm::sea_query::Asterisk).count();
        let (pool_rows, machine_rows, waiting_rows) = tokio::try_join!(
            pools::Entity::find()
                .select_only()
                .column(pools::Column::State)
                .column_as(count(), "n")
                .group_by(pools::Column::State)
                .into_tuple::<(String, i64)>()
                .all(db),
            resources::Entity::find()
                .filter(live_resources())
                .select_only()
                .column(resources::Column::Pool)
                .column(resources::Column::State)
                .column_as(count(), "n")
                .group_by(resources::Column::Pool)
                .group_by(resources::Column::State)
                .into_tuple::<(String, String, i64)>()
                .all(db),
            tickets::Entity::find()
                .filter(open_tickets())
                .filter(tickets::Column::ResourceId.is_null())
                .select_only()
                .column(tickets::Column::Tags)
                .column_as(count(), "n")
                .group_by(tickets::Column::Tags)
                .into_tuple::<(String, i64)>()
                .all(db),
        )?;
        self.pools.clear();
        for state in PoolState::ALL {
            self.pools
                .get_or_create(&StateLabels {
                    state: state.as_str().to_string(),
                })
                .set(0);
        }
        for (state, n) in pool_rows {
            self.pools.get_or_create(&StateLabels { state }).set(n);
        }
        self.machines.clear();
        for (pool, state, n) in machine_rows {
            self.machines
                .get_or_create(&MachineLabels { pool, state })
                .set(n);
        }
        self.waiting.clear();
        for (tags, n) in waiting_rows {
            let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
            self.waiting
                .get_or_create(&TagSetLabels {
                    tags: tags.join(" "),
                })
                .inc_by(n);
        }
        Ok(())
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Why `/metrics` refused a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A bearer token was sent and it is not `metrics_token`.
    WrongToken,
    /// Not loopback, not in `metrics_allow`, no token.
    NotAllowed,
}

/// Whether a scraper at `peer` may read `/metrics`: with `metrics_token` as a bearer token
/// from anywhere; otherwise from an address in `metrics_allow`, or from loopback unless the
/// request came through a proxy (it carries `Forwarded` / `X-Forwarded-For`), since a
/// reverse proxy on the same host makes every visitor look local.
pub fn allowed(access: &Access, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let (Some(expected), Some(given)) = (&access.token, bearer) {
        // Compared as digests: equal time whatever the first differing byte.
        let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
        return if digest(expected.expose()).as_ref() == digest(given).as_ref() {
            Ok(())
        } else {
            Err(Refusal::WrongToken)
        };
    }
    let Some(peer) = peer.map(|p| p.to_canonical()) else {
        return Err(Refusal::NotAllowed);
    };
    if access.allow.iter().any(|net| net.contains(&peer)) {
        return Ok(());
    }
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if peer.is_loopback() && !proxied {
        return Ok(());
    }
    Err(Refusal::NotAllowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allow: &[&str], token: Option<&str>) -> Access {
        Access {
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            token: token.map(crate::config::Secret::new),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_by_default_and_nobody_else() {
        let c = config(&[], None);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(allowed(&c, Some(local), &HeaderMap::new()), Ok(()));
        assert_eq!(allowed(&c, Some(mapped), &HeaderMap::new()), Ok(()));
        assert_eq!(
            allowed(&c, Some(remote), &HeaderMap::new()),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            allowed(&c, None, &HeaderMap::new()),
            Err(Refusal::NotAllowed)
        );
        // Through a reverse proxy on the same host, a visitor is not local.
        assert_eq!(
            allowed(
                &c,
                Some(local),
                &headers(&[("x-forwarded-for", "203.0.113.9")])
            ),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn allow_list_and_token() {
        let c = config(&["10.0.0.0/24"], Some("s3cret"));
        let inside: IpAddr = "10.0.0.7".parse().unwrap();
        let outside: IpAddr = "10.0.1.7".parse().unwrap();
        assert_eq!(allowed(&c, Some(inside), &HeaderMap::new()), Ok(()));
        assert_eq!(
            allowed(&c, Some(outside), &HeaderMap::new()),
            Err(Refusal::NotAllowed)
        );
        let good = headers(&[("authorization", "Bearer s3cret")]);
        let bad = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(allowed(&c, Some(outside), &good), Ok(()));
        assert_eq!(allowed(&c, Some(inside), &bad), Err(Refusal::WrongToken));
    }
}
