//! How `fanfare ctl` reaches the services: the same URLs and service token the services
//! read, a gRPC client per service, the acting user on every call, and failed calls turned
//! into errors that name the call, the service and the status.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use fanfare_core::client::{
    ClientOptions, MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, ServiceTokenInterceptor, lazy_channel, lazy_channel_with,
};
use fanfare_core::identity::USER_ID_HEADER;
use fanfare_core::layers::metrics::code_name;
use fanfare_core::tls::{ClientTls, TlsClientConfig};
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt as _;

/// How long one unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `explain` waits for one fanout pod.
pub(super) const POD_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the services are and who is calling; every option also reads the environment
/// variable the services themselves use.
#[derive(Debug, Clone, Args)]
pub(super) struct ConnectionArgs {
    /// The groups service.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "FANFARE_GROUPS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub groups_url: String,

    /// The messages service.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "FANFARE_MESSAGES_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub messages_url: String,

    /// The fanout service; `explain` asks every address its host name resolves to (on
    /// Kubernetes the headless Service resolves to every pod).
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "FANFARE_FANOUT_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub fanout_url: String,

    /// Sent as `authorization: Bearer <token>`; `fanfare dev` needs none.
    #[arg(long, global = true, help_heading = "Connection", env = "FANFARE_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,

    /// The user to act as (sent as `x-fanfare-user-id`).
    #[arg(long, global = true, help_heading = "Connection", env = "FANFARE_CTL_USER", value_parser = clap::value_parser!(i64).range(1..))]
    pub as_user: Option<i64>,

    /// Print JSON (responses as grpcurl prints them; one object per line for streams).
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,

    /// TLS of `https://` URLs: the CA, and the certificate to present under mTLS.
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsClientConfig,
}

/// A client whose every call carries the service token.
type Authed = InterceptedService<Channel, ServiceTokenInterceptor>;
pub(super) type GroupsClient = GroupServiceClient<Authed>;
pub(super) type MessagesClient = MessageServiceClient<Authed>;
pub(super) type FanoutClient = FanoutServiceClient<Authed>;

/// The connections of one `fanfare ctl` run.
pub(super) struct Ctl {
    connection: ConnectionArgs,
    interceptor: ServiceTokenInterceptor,
    tls: ClientTls,
    groups: GroupsClient,
    messages: MessagesClient,
    fanout: FanoutClient,
}

impl Ctl {
    /// Clients for the three services; nothing connects until the first call.
    pub(super) fn new(connection: ConnectionArgs) -> anyhow::Result<Self> {
        let interceptor = ServiceTokenInterceptor::new(connection.service_token.as_deref())
            .context("invalid FANFARE_SERVICE_TOKEN")?;
        let tls = ClientTls::load(&connection.tls).context("invalid TLS settings")?;
        let channel = |name: &str, url: &str| {
            check_url(name, url)?;
            lazy_channel(url, Some(CALL_TIMEOUT), &tls).with_context(|| format!("invalid {name} URL {url:?}"))
        };
        let groups =
            GroupServiceClient::with_interceptor(channel("groups", &connection.groups_url)?, interceptor.clone())
                .max_decoding_message_size(MAX_RESPONSE_SIZE)
                .max_encoding_message_size(MAX_REQUEST_SIZE);
        let messages =
            MessageServiceClient::with_interceptor(channel("messages", &connection.messages_url)?, interceptor.clone())
                .max_decoding_message_size(MAX_RESPONSE_SIZE)
                .max_encoding_message_size(MAX_REQUEST_SIZE);
        // No call timeout on this channel: it also carries Subscribe, which lasts.
        check_url("fanout", &connection.fanout_url)?;
        let fanout_channel = lazy_channel(&connection.fanout_url, None, &tls)
            .with_context(|| format!("invalid fanout URL {:?}", connection.fanout_url))?;
        let fanout = FanoutServiceClient::with_interceptor(fanout_channel, interceptor.clone())
            .max_decoding_message_size(MAX_RESPONSE_SIZE)
            .max_encoding_message_size(MAX_REQUEST_SIZE);
        Ok(Self { connection, interceptor, tls, groups, messages, fanout })
    }

    /// Whether to print JSON.
    pub(super) fn json(&self) -> bool {
        self.connection.json
    }

    /// The user to act as: `--as-user` / `FANFARE_CTL_USER`.
    pub(super) fn actor(&self) -> anyhow::Result<i64> {
        self.connection.as_user.context("no acting user: pass --as-user ID or set FANFARE_CTL_USER")
    }

    /// `user`, or else the acting user.
    pub(super) fn user_or_actor(&self, user: Option<i64>) -> anyhow::Result<i64> {
        match user {
            Some(user) => Ok(user),
            None => self.actor(),
        }
    }

    /// The acting user if one was given (explain uses it as a fallback identity).
    pub(super) fn actor_if_given(&self) -> Option<i64> {
        self.connection.as_user
    }

    /// A call to the groups service.
    pub(super) fn groups(&self) -> Target<GroupsClient> {
        Target { client: self.groups.clone(), url: self.connection.groups_url.clone() }
    }

    /// A call to the messages service.
    pub(super) fn messages(&self) -> Target<MessagesClient> {
        Target { client: self.messages.clone(), url: self.connection.messages_url.clone() }
    }

    /// A call to the fanout service (any pod).
    pub(super) fn fanout(&self) -> Target<FanoutClient> {
        Target { client: self.fanout.clone(), url: self.connection.fanout_url.clone() }
    }

    /// The configured fanout URL.
    pub(super) fn fanout_url(&self) -> &str {
        &self.connection.fanout_url
    }

    /// A call to the one fanout pod at `address`, over TLS when the fanout URL is `https://`
    /// (the pod's certificate is checked against the URL's host name, not the address).
    pub(super) fn fanout_pod(&self, address: SocketAddr) -> anyhow::Result<Target<FanoutClient>> {
        let fanout_url: tonic::codegen::http::Uri = self.connection.fanout_url.parse()?;
        let options = ClientOptions::new(Some(POD_CALL_TIMEOUT)).with_tls(self.tls.clone());
        let (url, options) = match (fanout_url.scheme_str(), fanout_url.host()) {
            (Some("https"), Some(host)) => (format!("https://{address}"), options.with_server_name(host)),
            _ => (format!("http://{address}"), options),
        };
        let channel = lazy_channel_with(&url, options)?;
        let client = FanoutServiceClient::with_interceptor(channel, self.interceptor.clone())
            .max_decoding_message_size(MAX_RESPONSE_SIZE)
            .max_encoding_message_size(MAX_REQUEST_SIZE);
        Ok(Target { client, url })
    }
}

/// Refuses a URL a channel cannot connect to (tonic would accept `groups:50051` and fail
/// at the first call with a bare "transport error").
fn check_url(name: &str, url: &str) -> anyhow::Result<()> {
    let parsed: tonic::codegen::http::Uri = url.parse().with_context(|| format!("invalid {name} URL {url:?}"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
        anyhow::bail!("invalid {name} URL {url:?}: expected http://HOST:PORT");
    }
    Ok(())
}

/// A client and the URL it calls, so an error can say where the call went.
pub(super) struct Target<C> {
    pub client: C,
    pub url: String,
}

/// `message` as sent by `user`.
pub(super) fn as_user<T>(user: i64, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value = user.to_string().parse().expect("a decimal integer is valid ASCII metadata");
    request.metadata_mut().insert(USER_ID_HEADER, value);
    request
}

/// Awaits one call and names it in the error if it fails.
pub(super) async fn call<T>(
    rpc: &'static str,
    url: &str,
    response: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, CallError> {
    match response.await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(CallError { rpc, url: url.to_owned(), status }),
    }
}

/// A call the server (or the connection) answered with an error status.
#[derive(Debug)]
pub(super) struct CallError {
    /// The method, e.g. `GetGroup`.
    pub rpc: &'static str,
    /// Where the call went.
    pub url: String,
    /// What came back.
    pub status: Status,
}

impl CallError {
    /// The status code.
    pub(super) fn code(&self) -> tonic::Code {
        self.status.code()
    }

    /// `CODE: message`, on one line, with the root cause when the call never reached the
    /// server (`UNAVAILABLE: tcp connect error: Connection refused (os error 111)`).
    pub(super) fn summary(&self) -> String {
        let mut summary = format!("{}: {}", code_name(self.status.code()), self.status.message());
        let mut root = std::error::Error::source(&self.status);
        while let Some(deeper) = root.and_then(std::error::Error::source) {
            root = Some(deeper);
        }
        if let Some(root) = root.map(ToString::to_string)
            && !summary.contains(&root)
        {
            summary.push_str(&format!(": {root}"));
        }
        summary
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({}) failed: {}", self.rpc, self.url, self.summary())?;
        // The services also put most details in the message: print each line once.
        let message = self.status.message();
        let mut detail = |line: &str, said: &str| -> fmt::Result {
            if message.contains(said) { Ok(()) } else { write!(formatter, "\n  {line}") }
        };
        let details = self.status.get_error_details();
        for violation in details.bad_request().map(|bad| bad.field_violations.as_slice()).unwrap_or_default() {
            let line = format!("{}: {}", violation.field, violation.description);
            detail(&line, &line)?;
        }
        for violation in details.quota_failure().map(|quota| quota.violations.as_slice()).unwrap_or_default() {
            detail(&format!("{} ({})", violation.description, violation.subject), &violation.description)?;
        }
        for violation in details.precondition_failure().map(|failure| failure.violations.as_slice()).unwrap_or_default()
        {
            let line = format!("{} ({} {})", violation.description, violation.r#type, violation.subject);
            detail(&line, &violation.description)?;
        }
        if let Some(delay) = details.retry_info().and_then(|retry| retry.retry_delay) {
            let line = format!("retry after {} ms", delay.as_millis().max(1));
            detail(&line, &line)?;
        }
        match self.status.code() {
            tonic::Code::Unavailable => {
                let hint =
                    format!("(is {} the right URL? --groups-url/--messages-url/--fanout-url set them)", self.url);
                detail(&hint, &hint)
            }
            tonic::Code::Unauthenticated => {
                let hint = "(the acting user goes in --as-user / FANFARE_CTL_USER, the token in FANFARE_SERVICE_TOKEN)";
                detail(hint, hint)
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for CallError {}
