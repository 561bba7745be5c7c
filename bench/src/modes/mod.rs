//! The benchmark modes, one module each, and what the throughput modes share.

pub(crate) mod backlog;
pub(crate) mod batch;
pub(crate) mod chains;
pub(crate) mod common;
pub(crate) mod idle;
pub(crate) mod schedules;
pub(crate) mod side_by_side;
pub(crate) mod target;
pub(crate) mod unary;
pub(crate) mod watch;
