//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The labels of a routing fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// The API token's name (`session` for a signed-in user, `none` when refused).
    pub token: String,
    /// `json`, `python` or `match`.
    pub format: String,
    /// The HTTP status answered: 200, 304, 401, …
    pub status: String,
}

pub struct Metrics {
    registry: Registry,
    pub routing_fetches: Family<FetchLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("copr_pools");
        let routing_fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "routing_fetches",
            "Requests to the routing API, by token, format and HTTP status",
            routing_fetches.clone(),
        );
        Metrics {
            registry,
            routing_fetches,
        }
    }

    /// Counts one routing request.
    pub fn routing_fetch(&self, token: &str, format: &str, status: u16) {
        self.routing_fetches
            .get_or_create(&FetchLabels {
                token: token.to_string(),
                format: format.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
