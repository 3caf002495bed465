//! What a service needs to call another service: a channel to its URL that spreads calls over
//! every address the URL's host name resolves to, TLS for `https://` URLs, and the service
//! token on every call.
//!
//! A Kubernetes headless Service resolves to one address per ready pod. HTTP/2 keeps a
//! connection open as long as it can, so a client that resolved the name once would send every
//! call to one pod and never see pods added later. [`lazy_channel`] re-resolves the name every
//! [`DNS_REFRESH_INTERVAL`] and balances calls over one connection per address, adding and
//! removing connections as pods come and go (tonic's `balance_channel`).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use http::Uri;
use http::uri::Scheme;
use tokio::sync::mpsc::Sender;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::tls::ClientTls;

/// Whether a call failed without the server having processed it, so that it may be sent again
/// on another connection whatever the method. Two causes, both seen when a server recycles its
/// connections under load (`FANFARE_MAX_CONNECTION_AGE_MS`, or its shutdown):
/// - its HTTP/2 stream was refused because the connection was going away (a GOAWAY with no
///   error for a stream the server had not accepted, or a reset with `REFUSED_STREAM`):
///   HTTP/2 promises the application never saw it (RFC 9113, 6.8); tonic reports it as
///   `INTERNAL` ("h2 protocol error"), so the code alone does not tell it from a real
///   internal error;
/// - it was still queued in the client when that connection closed, never written (hyper's
///   "canceled: connection closed"); tonic reports it as `CANCELLED`.
pub fn unprocessed(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled) {
            return true;
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            let going_away = h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR);
            return going_away || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        cause = error.source();
    }
    false
}

/// Runs `call`, and once more if it failed [`unprocessed`] (its connection was going away):
/// what every caller of a Fanfare service should do, since a server recycles its connections
/// (`FANFARE_MAX_CONNECTION_AGE_MS`) and a call sent in the moment the GOAWAY crosses it on
/// the wire fails that way.
pub async fn once_more_if_unprocessed<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    match call().await {
        Err(status) if unprocessed(&status) => call().await,
        answered => answered,
    }
}

/// How long connecting to another service may take before a call fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a service's host name is resolved again, to notice pods coming and going.
pub const DNS_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// How long one resolution may take before it counts as failed.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response message our clients decode: what a service may encode
/// ([`MAX_ENCODING_MESSAGE_SIZE`](crate::server::MAX_ENCODING_MESSAGE_SIZE)). Set on every
/// generated client with `max_decoding_message_size`.
pub const MAX_RESPONSE_SIZE: usize = crate::server::MAX_ENCODING_MESSAGE_SIZE;
/// Largest request message our clients encode: what a service decodes
/// ([`MAX_DECODING_MESSAGE_SIZE`](crate::server::MAX_DECODING_MESSAGE_SIZE)), so a request
/// that would be refused is refused before it is sent. Set with `max_encoding_message_size`.
pub const MAX_REQUEST_SIZE: usize = crate::server::MAX_DECODING_MESSAGE_SIZE;
/// Address changes waiting for the balancer; it takes them whenever the channel is used.
const CHANGE_QUEUE_CAPACITY: usize = 64;

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

/// Turns a host name into addresses. The system resolver in production; tests substitute
/// their own to change the address set at will.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// Every address of `host`, with `port` unless the resolver knows better.
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// How a channel to another service behaves. [`ClientOptions::new`] gives the defaults.
#[derive(Clone)]
pub struct ClientOptions {
    /// Bound on each unary call; `None` for channels that carry long streams.
    pub call_timeout: Option<Duration>,
    /// Bound on opening one connection.
    pub connect_timeout: Duration,
    /// How often the host name is resolved again.
    pub dns_refresh: Duration,
    /// What resolves the host name.
    pub resolver: Arc<dyn Resolve>,
    /// The TLS of `https://` URLs (ignored for `http://` ones).
    pub tls: ClientTls,
    /// The name the service's certificate must carry; `None` for the URL's host. Set when
    /// the URL names one pod by address but its certificate names the Service.
    pub server_name: Option<String>,
}

impl ClientOptions {
    /// The defaults: [`CONNECT_TIMEOUT`], [`DNS_REFRESH_INTERVAL`], the system resolver.
    pub fn new(call_timeout: Option<Duration>) -> Self {
        Self {
            call_timeout,
            connect_timeout: CONNECT_TIMEOUT,
            dns_refresh: DNS_REFRESH_INTERVAL,
            resolver: Arc::new(SystemResolver),
            tls: ClientTls::default(),
            server_name: None,
        }
    }

    /// The same options checking the service's certificate for `server_name`.
    pub fn with_server_name(self, server_name: impl Into<String>) -> Self {
        Self { server_name: Some(server_name.into()), ..self }
    }

    /// The same options with `tls` for `https://` URLs.
    pub fn with_tls(self, tls: ClientTls) -> Self {
        Self { tls, ..self }
    }

    /// The same options resolving host names with `resolver`.
    pub fn with_resolver(self, resolver: Arc<dyn Resolve>) -> Self {
        Self { resolver, ..self }
    }

    /// The same options resolving host names again every `interval`.
    pub fn with_dns_refresh(self, interval: Duration) -> Self {
        Self { dns_refresh: interval, ..self }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ClientOptions")
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("dns_refresh", &self.dns_refresh)
            .field("tls", &self.tls)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A channel to the service at `url`, connected on first use and reconnecting as needed;
/// each unary call is bounded by `call_timeout` (streaming calls set their own). Balanced
/// over every address of the URL's host, re-resolved every [`DNS_REFRESH_INTERVAL`]; an
/// `https://` URL is reached over TLS with `tls`. See [`lazy_channel_with`]. Must be called
/// within a tokio runtime.
pub fn lazy_channel(url: &str, call_timeout: Option<Duration>, tls: &ClientTls) -> anyhow::Result<Channel> {
    lazy_channel_with(url, ClientOptions::new(call_timeout).with_tls(tls.clone()))
}

/// [`lazy_channel`] with explicit options.
///
/// When the URL's host is an IP address, or `localhost` (whose IPv4 and IPv6 addresses
/// rarely both listen), there is nothing to balance: the channel connects to it directly.
/// Otherwise a background task resolves the name at once and then every
/// [`ClientOptions::dns_refresh`], and hands the balancer the addresses that appeared and
/// disappeared. A failed or empty resolution keeps the last good set (and is logged); until
/// a first resolution succeeds the channel connects by name, so calls fail as they would
/// on a plain channel rather than waiting. The task ends when the last clone of the channel
/// is dropped.
///
/// An `https://` URL is reached over TLS ([`ClientOptions::tls`]); every connection checks
/// the service's certificate against the URL's host name, not the address it resolved to.
pub fn lazy_channel_with(url: &str, options: ClientOptions) -> anyhow::Result<Channel> {
    let uri = Uri::try_from(url)?;
    let host = uri.host().with_context(|| format!("URL {url:?} names no host"))?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tls = match uri.scheme_str() {
        Some("https") => Some(options.tls.tonic_config(options.server_name.as_deref().unwrap_or(bare_host))),
        Some("http") => None,
        _ => anyhow::bail!("URL {url:?} is neither http:// nor https://"),
    };
    // Checked now, so the refresher's endpoints cannot fail later.
    let direct = endpoint(uri.clone(), &options, tls.as_ref()).with_context(|| format!("the TLS settings of {url}"))?;
    let is_ip_literal = bare_host.parse::<IpAddr>().is_ok();
    let is_loopback_name = bare_host.eq_ignore_ascii_case("localhost") || bare_host.ends_with(".localhost");
    if is_ip_literal || is_loopback_name {
        return Ok(direct.connect_lazy());
    }

    let default_port = if uri.scheme() == Some(&Scheme::HTTPS) { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let (channel, changes) = Channel::balance_channel(CHANGE_QUEUE_CAPACITY);
    let refresher = Refresher {
        host: bare_host.to_owned(),
        port,
        uri,
        options,
        tls,
        changes,
        current: BTreeSet::new(),
        connecting_by_name: false,
        failing: false,
    };
    tokio::spawn(refresher.run());
    Ok(channel)
}

/// One connection of a balanced channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Backend {
    /// The URL as given, resolved by the connector; only before a first good resolution.
    ByName,
    /// One resolved address.
    Address(SocketAddr),
}

/// The balancer is gone: every clone of the channel was dropped.
struct ChannelDropped;

/// Keeps a balanced channel's connections in step with its host's addresses.
struct Refresher {
    host: String,
    port: u16,
    uri: Uri,
    options: ClientOptions,
    /// The TLS settings of an `https://` URL.
    tls: Option<ClientTlsConfig>,
    changes: Sender<Change<Backend, Endpoint>>,
    /// The last good set of addresses, each one connection in the balancer.
    current: BTreeSet<SocketAddr>,
    connecting_by_name: bool,
    /// Whether the last resolution failed, so a failure streak is logged once.
    failing: bool,
}

impl Refresher {
    async fn run(mut self) {
        loop {
            if self.refresh().await.is_err() {
                break;
            }
            tokio::select! {
                () = self.changes.closed() => break,
                () = tokio::time::sleep(self.options.dns_refresh) => {}
            }
        }
        tracing::debug!(host = %self.host, "channel dropped; no longer resolving its host");
    }

    /// Resolves once and applies the difference.
    async fn refresh(&mut self) -> Result<(), ChannelDropped> {
        let addresses = match self.resolve().await {
            Ok(addresses) => addresses,
            Err(reason) => return self.keep_last_addresses(&reason).await,
        };
        if self.failing {
            self.failing = false;
            tracing::info!(host = %self.host, "service host resolves again");
        }
        let added: Vec<SocketAddr> = addresses.difference(&self.current).copied().collect();
        let removed: Vec<SocketAddr> = self.current.difference(&addresses).copied().collect();
        // Additions first, so the balancer never runs out of connections.
        for address in &added {
            let Some(endpoint) = self.endpoint(self.address_uri(*address)) else { continue };
            self.send(Change::Insert(Backend::Address(*address), endpoint.origin(self.uri.clone()))).await?;
        }
        for address in &removed {
            self.send(Change::Remove(Backend::Address(*address))).await?;
        }
        if self.connecting_by_name {
            self.send(Change::Remove(Backend::ByName)).await?;
            self.connecting_by_name = false;
        }
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                host = %self.host,
                ?added,
                ?removed,
                addresses = addresses.len(),
                "service addresses changed"
            );
        }
        self.current = addresses;
        Ok(())
    }

    async fn resolve(&self) -> Result<BTreeSet<SocketAddr>, String> {
        let resolving = self.options.resolver.resolve(&self.host, self.port);
        match tokio::time::timeout(RESOLVE_TIMEOUT, resolving).await {
            Ok(Ok(addresses)) if addresses.is_empty() => Err("the name has no addresses".to_owned()),
            Ok(Ok(addresses)) => Ok(addresses.into_iter().collect()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_elapsed) => Err(format!("no answer within {RESOLVE_TIMEOUT:?}")),
        }
    }

    /// A failed or empty resolution is more likely a DNS hiccup than every pod gone at once:
    /// keep the last good set. With none yet, connect by name like a plain channel.
    async fn keep_last_addresses(&mut self, reason: &str) -> Result<(), ChannelDropped> {
        if !self.failing {
            self.failing = true;
            tracing::warn!(
                host = %self.host,
                error = reason,
                kept = self.current.len(),
                "cannot resolve the service host; keeping its last addresses"
            );
        }
        if self.current.is_empty()
            && !self.connecting_by_name
            && let Some(endpoint) = self.endpoint(self.uri.clone())
        {
            self.send(Change::Insert(Backend::ByName, endpoint)).await?;
            self.connecting_by_name = true;
        }
        Ok(())
    }

    /// A connection's settings, or `None` (logged) in the unexpected case that the TLS
    /// settings checked by [`lazy_channel_with`] no longer apply.
    fn endpoint(&self, uri: Uri) -> Option<Endpoint> {
        match endpoint(uri, &self.options, self.tls.as_ref()) {
            Ok(endpoint) => Some(endpoint),
            Err(error) => {
                tracing::error!(host = %self.host, error = %error, "cannot configure a connection");
                None
            }
        }
    }

    /// The URL with its host and port replaced by `address`.
    fn address_uri(&self, address: SocketAddr) -> Uri {
        let scheme = self.uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let built = Uri::builder().scheme(scheme).authority(address.to_string()).path_and_query("/").build();
        debug_assert!(built.is_ok(), "a socket address is a valid authority");
        built.unwrap_or_else(|_| self.uri.clone())
    }

    async fn send(&self, change: Change<Backend, Endpoint>) -> Result<(), ChannelDropped> {
        self.changes.send(change).await.map_err(|_| ChannelDropped)
    }
}

/// One connection's settings.
fn endpoint(
    uri: Uri,
    options: &ClientOptions,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint, tonic::transport::Error> {
    let mut endpoint = Channel::builder(uri).connect_timeout(options.connect_timeout);
    if let Some(timeout) = options.call_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    match tls {
        Some(tls) => endpoint.tls_config(tls.clone()),
        None => Ok(endpoint),
    }
}
