//! Helpers shared by the integration tests.

pub(crate) mod frozen_proxy;
pub(crate) mod redis_server;
