//! The abuse suite's machinery: hostile requests sent as raw bytes (so they can be anything,
//! not only what a generated client would build), the answer each must get, and a runner
//! that sends them while a well-behaved caller keeps calling the same pod.
//!
//! Every call carries a 5 s deadline and the client gives up a little after it; a case passes
//! only on the code it expects, so a hang shows as DEADLINE_EXCEEDED and fails. Time is
//! never asserted otherwise.

#![allow(clippy::disallowed_methods, reason = "client-side failures of the raw test client")]

pub mod cases;
pub mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bytes::{Buf, BufMut};
use fanfare_core::identity::USER_ID_HEADER;
use futures::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// The deadline of every hostile and canary call.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The most an error's message and details may take, well under grpcio's 16 KiB of metadata.
pub const ERROR_BUDGET: usize = 8 * 1024;
/// Hostile calls in flight at once.
const CONCURRENCY: usize = 8;

/// The `authorization` a case sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// The pod's token.
    Valid,
    /// None at all.
    Missing,
    /// Another one.
    Wrong(String),
}

/// The answer a case must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this code.
    Code(Code),
    /// INVALID_ARGUMENT with a violation of one of these fields (or of an entry or a field
    /// of it: `name[3]`, `name.sub`).
    Names(Vec<String>),
    /// Any answer of the service's own (OK or a refusal; not INTERNAL, UNKNOWN, a timeout or
    /// a transport error); an INVALID_ARGUMENT must name one of these fields.
    Answered(Vec<String>),
}

/// One hostile call and what it must get.
#[derive(Debug, Clone)]
pub struct Case {
    /// `/package.Service/Method`.
    pub path: String,
    /// What is hostile about it, for failure messages.
    pub what: String,
    /// The encoded request (anything at all).
    pub body: Vec<u8>,
    /// Whether the method answers with a stream.
    pub server_streaming: bool,
    /// The token sent.
    pub token: Token,
    /// The raw `x-fanfare-user-id` value, if any.
    pub user: Option<Vec<u8>>,
    /// The answer it must get.
    pub expect: Expect,
}

/// Requests and answers as bytes: what is sent is sent verbatim.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, destination: &mut EncodeBuf<'_>) -> Result<(), Status> {
        destination.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(source.copy_to_bytes(source.remaining()).to_vec()))
    }
}

/// Sends one case to the pod behind `channel` whose token is `pod_token`: OK (for a stream,
/// once its headers arrived) or the status it got.
pub async fn send(channel: &Channel, pod_token: &str, case: &Case) -> Result<(), Status> {
    let mut request = Request::new(case.body.clone());
    request.set_timeout(DEADLINE);
    let token = match &case.token {
        Token::Valid => Some(pod_token),
        Token::Missing => None,
        Token::Wrong(token) => Some(token.as_str()),
    };
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("an ASCII token");
        request.metadata_mut().insert("authorization", value);
    }
    if let Some(user) = &case.user {
        let value = AsciiMetadataValue::try_from(user.as_slice()).expect("a header value");
        request.metadata_mut().insert(USER_ID_HEADER, value);
    }
    let path = PathAndQuery::try_from(case.path.as_str()).expect("a valid path");
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let call = async move {
        grpc.ready().await.map_err(|error| Status::unavailable(format!("not ready: {error}")))?;
        if case.server_streaming {
            grpc.server_streaming(request, path, RawCodec).await.map(drop)
        } else {
            grpc.unary(request, path, RawCodec).await.map(drop)
        }
    };
    // The deadline travels with the call; the client stops waiting a little after it.
    match tokio::time::timeout(DEADLINE + Duration::from_secs(1), call).await {
        Ok(answer) => answer,
        Err(_) => Err(Status::deadline_exceeded("no answer within the deadline")),
    }
}

/// Codes that are never a service's own answer to a request.
fn is_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Internal
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unavailable
            | Code::DataLoss
            | Code::Unimplemented
    )
}

/// The fields an INVALID_ARGUMENT names.
fn violated_fields(status: &Status) -> Vec<String> {
    let details = status.get_error_details();
    let violations = details.bad_request().map(|bad| bad.field_violations.clone()).unwrap_or_default();
    violations.into_iter().map(|violation| violation.field).collect()
}

fn names_one_of(status: &Status, names: &[String]) -> bool {
    violated_fields(status).iter().any(|field| {
        names.iter().any(|name| {
            field == name || field.starts_with(&format!("{name}[")) || field.starts_with(&format!("{name}."))
        })
    })
}

/// Codes the client may make itself (a call it gave up on, a connection that broke), which
/// then carry no `ErrorInfo`.
fn is_clients_own(code: Code) -> bool {
    matches!(code, Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Unavailable)
}

/// Why `answer` is not what `case` must get, if it is not.
pub fn check(case: &Case, answer: &Result<(), Status>) -> Option<String> {
    if let Err(status) = answer {
        let size = status.message().len() + status.details().len();
        if size > ERROR_BUDGET {
            return Some(format!("an error of {size} bytes: {:.200}", status.message()));
        }
        if !is_clients_own(status.code()) && fanfare_core::status::reason_of(status).is_none() {
            return Some(format!("no ErrorInfo reason: {:?} {:.200}", status.code(), status.message()));
        }
    }
    let code = answer.as_ref().err().map_or(Code::Ok, Status::code);
    let describe = || match answer {
        Ok(()) => "OK".to_owned(),
        Err(status) => format!("{:?} {:.300} {:?}", status.code(), status.message(), violated_fields(status)),
    };
    let good = match &case.expect {
        Expect::Code(expected) => code == *expected,
        Expect::Names(names) => answer
            .as_ref()
            .err()
            .is_some_and(|status| status.code() == Code::InvalidArgument && names_one_of(status, names)),
        Expect::Answered(names) => match answer {
            Ok(()) => true,
            Err(status) if status.code() == Code::InvalidArgument => names_one_of(status, names),
            Err(status) => !is_failure(status.code()) && status.code() != Code::ResourceExhausted,
        },
    };
    (!good).then(|| format!("expected {:?}, got {}", case.expect, describe()))
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases whose answer was wrong: `path what: why`.
    pub failures: Vec<String>,
    /// Answers by method and code, for the record.
    pub codes: BTreeMap<(String, String), usize>,
    /// Hostile calls made.
    pub calls: usize,
    /// Canary calls made while the hostile ones ran, and those that failed.
    pub canary_calls: usize,
    /// Canary failures.
    pub canary_failures: Vec<String>,
}

impl Report {
    /// Panics listing every wrong answer and every canary failure.
    #[track_caller]
    pub fn assert_clean(&self) {
        let mut summary = String::new();
        for ((method, code), count) in &self.codes {
            summary.push_str(&format!("  {method}: {code} ×{count}\n"));
        }
        eprintln!("{} hostile calls, {} canary calls\n{summary}", self.calls, self.canary_calls);
        assert!(
            self.failures.is_empty(),
            "{} of {} cases got the wrong answer:\n{}",
            self.failures.len(),
            self.calls,
            self.failures.join("\n")
        );
        assert!(self.canary_failures.is_empty(), "the parallel caller failed: {:?}", self.canary_failures);
        assert!(self.canary_calls > 0, "the parallel caller ran while the hostile calls did");
    }
}

/// Sends every case (a few at a time, from a spawned task) to the pod behind `channel`,
/// while `canary` (a normal call of another caller to the same pod) is made over and over;
/// every canary call must succeed.
pub async fn run<C, F>(channel: Channel, pod_token: &str, cases: Vec<Case>, canary: C) -> Report
where
    C: Fn() -> F,
    F: Future<Output = Result<(), Status>>,
{
    let token = pod_token.to_owned();
    let hostile = tokio::spawn(async move {
        let answers = futures::stream::iter(cases)
            .map(|case| {
                let channel = channel.clone();
                let token = token.clone();
                async move {
                    let answer = send(&channel, &token, &case).await;
                    (case, answer)
                }
            })
            .buffer_unordered(CONCURRENCY);
        answers.collect::<Vec<_>>().await
    });

    let mut report = Report::default();
    while !hostile.is_finished() {
        let answer = tokio::time::timeout(DEADLINE, canary()).await;
        report.canary_calls += 1;
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(status)) => report.canary_failures.push(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => report.canary_failures.push("no answer within the deadline".to_owned()),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (case, answer) in hostile.await.expect("the hostile task does not panic") {
        report.calls += 1;
        let code = answer.as_ref().err().map_or(Code::Ok, Status::code);
        let method: String = case.path.rsplit('/').next().unwrap_or_default().chars().take(40).collect();
        *report.codes.entry((method, format!("{code:?}"))).or_default() += 1;
        if let Some(why) = check(&case, &answer) {
            report.failures.push(format!("{} {}: {why}", case.path, case.what));
        }
    }
    report
}

/// Unknown methods of `service` (and of no service), with and without a token.
pub fn unknown_methods(service: &str) -> Vec<Case> {
    let case = |path: String, token: Token, expect: Code| Case {
        what: format!("unknown method {path}"),
        path,
        body: Vec::new(),
        server_streaming: false,
        token,
        user: Some(b"1".to_vec()),
        expect: Expect::Code(expect),
    };
    let (package, name) = service.rsplit_once('.').expect("a qualified service name");
    let paths = [
        format!("/{service}/NoSuchMethod"),
        format!("/{service}/nosuchmethod"),
        format!("/{service}/"),
        format!("/{service}/{}", "M".repeat(4 * 1024)),
        format!("/{package}.{name}V2/NoSuchMethod"),
        "/no.such.Service/Method".to_owned(),
    ];
    let mut cases = Vec::new();
    for path in paths {
        cases.push(case(path.clone(), Token::Valid, Code::Unimplemented));
        cases.push(case(path, Token::Missing, Code::Unauthenticated));
    }
    cases
}
