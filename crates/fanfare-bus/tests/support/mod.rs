//! Helpers shared by the integration tests.

pub mod frozen_proxy;
pub mod redis_server;
