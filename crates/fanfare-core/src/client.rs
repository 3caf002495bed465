//! What a service needs to call another service: a channel to its URL and the service token
//! on every call.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// How long connecting to another service may take before a call fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds `authorization: Bearer <token>` to every call when a service token is configured.
#[derive(Debug, Clone)]
pub struct ServiceTokenInterceptor {
    authorization: Option<MetadataValue<Ascii>>,
}

impl ServiceTokenInterceptor {
    /// An interceptor sending `token`, or nothing when there is none.
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        let authorization = token.map(|token| format!("Bearer {token}").parse()).transpose()?;
        Ok(Self { authorization })
    }
}

impl tonic::service::Interceptor for ServiceTokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to the service at `url`, connected on first use and reconnecting as needed;
/// each unary call is bounded by `call_timeout` (streaming calls set their own).
pub fn lazy_channel(url: &str, call_timeout: Option<Duration>) -> anyhow::Result<Channel> {
    let mut endpoint = Channel::from_shared(url.to_owned())?.connect_timeout(CONNECT_TIMEOUT);
    if let Some(timeout) = call_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    Ok(endpoint.connect_lazy())
}
