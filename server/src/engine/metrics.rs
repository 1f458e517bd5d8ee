//! What the engine counts for Prometheus: hook runs by kind and outcome with their durations,
//! hook timeouts, pass durations and the time from takeTicket to a machine. The families are
//! created here and registered by [`crate::metrics::Metrics`]; recording is lock-free.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::hooks::HookRunResult;
use super::model::{HookKind, HookResult};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// resalloc's hook names: `alloc`, `terminate`, `release`, `watch`, `list`.
    pub kind: String,
    /// `success`, `failed`, `timeout`, `cancelled` or `not_started`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

fn seconds_histogram() -> Histogram {
    // 50 ms … ~3.6 h: livechecks take seconds, boots minutes, a stuck cmd_new an hour.
    Histogram::new(exponential_buckets(0.05, 2.5, 14))
}

#[derive(Clone)]
pub struct EngineMetrics {
    pub hook_runs: Family<HookLabels, Counter>,
    pub hook_seconds: Family<KindLabels, Histogram>,
    pub hook_timeouts: Family<KindLabels, Counter>,
    pub pass_seconds: Histogram,
    pub ticket_ready_seconds: Histogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            hook_runs: Family::default(),
            hook_seconds: Family::new_with_constructor(seconds_histogram),
            hook_timeouts: Family::default(),
            // A pass takes milliseconds; a slow database makes it seconds.
            pass_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            ticket_ready_seconds: seconds_histogram(),
        }
    }
}

impl EngineMetrics {
    /// Adds the engine's families to `registry` (prefixed there).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hook_runs",
            "Hooks that finished, by kind (alloc, terminate, release, watch, list) and outcome",
            self.hook_runs.clone(),
        );
        registry.register_with_unit(
            "hook_duration",
            "How long hooks ran, by kind",
            Unit::Seconds,
            self.hook_seconds.clone(),
        );
        registry.register(
            "hook_timeouts",
            "Hooks stopped because they ran past their pool's timeout, by kind",
            self.hook_timeouts.clone(),
        );
        registry.register_with_unit(
            "engine_pass_duration",
            "How long one engine pass took: load, decide, persist",
            Unit::Seconds,
            self.pass_seconds.clone(),
        );
        registry.register_with_unit(
            "ticket_ready",
            "Time from takeTicket to the ticket getting a machine",
            Unit::Seconds,
            self.ticket_ready_seconds.clone(),
        );
    }

    /// Counts one hook run.
    pub fn hook_ran(&self, kind: HookKind, result: HookRunResult, seconds: f64) {
        let outcome = match result {
            HookRunResult::Finished(HookResult::Success) => "success",
            HookRunResult::Finished(HookResult::Failed) => "failed",
            HookRunResult::Finished(HookResult::TimedOut) => "timeout",
            HookRunResult::Cancelled => "cancelled",
            HookRunResult::NotStarted => "not_started",
        };
        let kind = kind.as_str().to_string();
        self.hook_runs
            .get_or_create(&HookLabels {
                kind: kind.clone(),
                outcome: outcome.to_string(),
            })
            .inc();
        if matches!(result, HookRunResult::Finished(_)) {
            self.hook_seconds
                .get_or_create(&KindLabels { kind: kind.clone() })
                .observe(seconds);
        }
        if result == HookRunResult::Finished(HookResult::TimedOut) {
            self.hook_timeouts.get_or_create(&KindLabels { kind }).inc();
        }
    }
}
