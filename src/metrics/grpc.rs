//! gRPC server metrics, recorded by `crate::observe` for every call: calls handled
//! by service, method and status code, and how long they took (a stream's time
//! runs to its end). The names and labels are those of the usual gRPC server
//! dashboards: `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}`
//! and `grpc_server_handling_seconds`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// From 0.1 ms to about 13 minutes (a watch stream's life), doubling.
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 24))
}

pub(crate) struct GrpcFamilies {
    handled: Family<HandledLabels, Counter>,
    handling: Family<CallLabels, Histogram, fn() -> Histogram>,
}

impl Default for GrpcFamilies {
    fn default() -> GrpcFamilies {
        GrpcFamilies {
            handled: Family::default(),
            handling: Family::new_with_constructor(call_buckets),
        }
    }
}

impl GrpcFamilies {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "handled",
            "gRPC calls completed, by service, method and status code.",
            self.handled.clone(),
        );
        registry.register_with_unit(
            "handling",
            "How long gRPC calls took, to the end of their response stream.",
            Unit::Seconds,
            self.handling.clone(),
        );
    }

    pub(crate) fn record(&self, path: &str, code: i32, started: Instant) {
        let code = code_name(code);
        // An unknown path is answered UNIMPLEMENTED: it gets no series of its own,
        // so a client cannot grow the label sets without bound.
        let (service, method) = match (code, path.trim_start_matches('/').split_once('/')) {
            ("UNIMPLEMENTED", _) | (_, None) => ("unknown", "unknown"),
            (_, Some(split)) => split,
        };
        let call = CallLabels {
            grpc_service: service.to_string(),
            grpc_method: method.to_string(),
        };
        self.handling
            .get_or_create(&call)
            .observe(started.elapsed().as_secs_f64());
        self.handled
            .get_or_create(&HandledLabels {
                grpc_service: call.grpc_service,
                grpc_method: call.grpc_method,
                grpc_code: code,
            })
            .inc();
    }
}

/// The canonical name of a gRPC status code.
fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}
