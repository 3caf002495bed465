//! Who is calling, and what they may do: the callers file (`FANFARE_CALLERS_FILE`).
//!
//! Every caller has a name, one or more accepted tokens (two during a rotation) or mTLS
//! client-certificate names, and the methods it may call. Tokens are stored as SHA-256 digests, so the file holds no secret
//! and a presented token is found with one hash and one map lookup. A caller may also be
//! allowed to act for end users (send `x-fanfare-user-id`), and an operator caller's acting
//! as a user leaves an audit log line.
//!
//! ```toml
//! [[callers]]
//! name = "groups"
//! token_sha256 = ["5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"]
//! methods = ["fanfare.messages.v1.MessageService/AppendSystemUpdates"]
//! acts_for_users = false
//! ```
//!
//! The caller's name labels its calls' metrics and log spans, and is the `source` under
//! which messages records the events a caller relays.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Most callers a file may name: each name is a metric label value.
pub const MAX_CALLERS: usize = 64;
/// Longest caller name.
pub const MAX_CALLER_NAME_LEN: usize = 64;
/// Most tokens one caller may hold at once (two cover a rotation).
pub const MAX_TOKENS_PER_CALLER: usize = 4;
/// Most client-certificate names one caller may be known by.
pub const MAX_CERTIFICATE_NAMES_PER_CALLER: usize = 4;
/// Longest client-certificate name accepted.
pub const MAX_CERTIFICATE_NAME_LEN: usize = 256;
/// Most method patterns one caller may list.
pub const MAX_METHODS_PER_CALLER: usize = 256;
/// Largest callers file read, in bytes.
pub const MAX_CALLERS_FILE_BYTES: u64 = 1024 * 1024;

/// Methods only a caller that names them exactly may call: `*` and `package.Service/*` do
/// not reach them. Appending relayed events to a group's log is for the groups service alone.
pub const INTERNAL_METHODS: [&str; 1] = ["fanfare.messages.v1.MessageService/AppendSystemUpdates"];

/// The name of the caller in development mode (`FANFARE_ALLOW_UNAUTHENTICATED`, no token).
pub const ANONYMOUS_CALLER: &str = "anonymous";
/// The name of the one caller of the single shared `FANFARE_SERVICE_TOKEN`, when no callers
/// file is configured.
pub const SHARED_TOKEN_CALLER: &str = "shared";

/// One caller: its name and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    name: Arc<str>,
    methods: Vec<MethodPattern>,
    acts_for_users: bool,
    operator: bool,
    /// Named by a callers file, rather than the built-in anonymous or shared-token caller.
    named: bool,
}

impl Caller {
    /// A caller allowed everything, internal methods included: development mode and the
    /// single shared token.
    pub fn unrestricted(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            methods: vec![MethodPattern::Everything],
            acts_for_users: true,
            operator: false,
            named: false,
        }
    }

    /// The caller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared (for labels kept after the request is gone).
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// Whether the caller may call `path` (`/package.Service/Method`).
    pub fn may_call(&self, path: &str) -> bool {
        let Some((service, method)) = path.strip_prefix('/').and_then(|rest| rest.split_once('/')) else {
            return false;
        };
        let internal = INTERNAL_METHODS.iter().any(|internal| {
            internal.split_once('/').is_some_and(|(name, method_name)| name == service && method_name == method)
        });
        self.methods.iter().any(|pattern| pattern.matches(service, method, internal))
    }

    /// Whether the caller may send `x-fanfare-user-id` and act for an end user.
    pub fn acts_for_users(&self) -> bool {
        self.acts_for_users
    }

    /// Whether a callers file named this caller. Without one, every caller is the same
    /// built-in one (anonymous in development, or the holder of the shared token) and tells
    /// nothing about who is calling.
    pub fn is_named(&self) -> bool {
        self.named
    }

    /// Whether the caller is an operator identity, whose acting as a user is audited.
    pub fn is_operator(&self) -> bool {
        self.operator
    }

    /// The caller the auth layer attached to an incoming call, if it ran.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Caller> {
        request.extensions().get::<Arc<Caller>>().map(AsRef::as_ref)
    }
}

/// Which methods a pattern admits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MethodPattern {
    /// Every method, internal ones included (the built-in callers only).
    Everything,
    /// `*`: every method of every service but the internal ones.
    Any,
    /// `package.Service/*`: every method of the service but the internal ones.
    Service(String),
    /// `package.Service/Method`.
    Method(String, String),
}

impl MethodPattern {
    fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Any);
        }
        let valid_name = |name: &str| {
            !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'_')
        };
        match text.split_once('/') {
            Some((service, "*")) if valid_name(service) => Ok(Self::Service(service.to_owned())),
            Some((service, method)) if valid_name(service) && valid_name(method) => {
                Ok(Self::Method(service.to_owned(), method.to_owned()))
            }
            _ => Err(format!("method pattern {text:?} must be `*`, `package.Service/*` or `package.Service/Method`")),
        }
    }

    fn matches(&self, service: &str, method: &str, internal: bool) -> bool {
        match self {
            Self::Everything => true,
            Self::Any => !internal,
            Self::Service(name) => !internal && name == service,
            Self::Method(name, method_name) => name == service && method_name == method,
        }
    }
}

/// The callers a server accepts, found by the digest of their token.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    by_token_digest: HashMap<[u8; 32], Arc<Caller>>,
    by_certificate: HashMap<String, Arc<Caller>>,
    names: Vec<Arc<str>>,
}

impl Callers {
    /// Reads and checks the callers file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.len() > MAX_CALLERS_FILE_BYTES {
            anyhow::bail!("{} is larger than {MAX_CALLERS_FILE_BYTES} bytes", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).map_err(|reason| anyhow::anyhow!("invalid callers file {}: {reason}", path.display()))
    }

    /// Parses and checks a callers file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: CallersFile = toml::from_str(text).map_err(|error| error.message().to_owned())?;
        if file.callers.is_empty() {
            return Err("it names no caller".to_owned());
        }
        if file.callers.len() > MAX_CALLERS {
            return Err(format!("it names {} callers; at most {MAX_CALLERS}", file.callers.len()));
        }
        let mut callers = Self::default();
        for entry in file.callers {
            callers.add(entry)?;
        }
        Ok(callers)
    }

    fn add(&mut self, entry: CallerEntry) -> Result<(), String> {
        let name = entry.name;
        let valid_name = !name.is_empty()
            && name.len() <= MAX_CALLER_NAME_LEN
            && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-_.".contains(&byte));
        if !valid_name {
            return Err(format!(
                "caller name {name:?} must be 1 to {MAX_CALLER_NAME_LEN} characters of a-z, 0-9, `-`, `_`, `.`"
            ));
        }
        if self.names.iter().any(|known| **known == *name) {
            return Err(format!("caller {name:?} is named twice"));
        }
        if entry.token_sha256.is_empty() && entry.certificate_names.is_empty() {
            return Err(format!("caller {name:?} needs a token_sha256 or a certificate_names entry"));
        }
        if entry.token_sha256.len() > MAX_TOKENS_PER_CALLER {
            return Err(format!("caller {name:?} may have at most {MAX_TOKENS_PER_CALLER} entries in token_sha256"));
        }
        if entry.certificate_names.len() > MAX_CERTIFICATE_NAMES_PER_CALLER
            || entry
                .certificate_names
                .iter()
                .any(|certificate| certificate.is_empty() || certificate.len() > MAX_CERTIFICATE_NAME_LEN)
        {
            return Err(format!(
                "caller {name:?} may have at most {MAX_CERTIFICATE_NAMES_PER_CALLER} certificate_names of 1 to \
                 {MAX_CERTIFICATE_NAME_LEN} bytes"
            ));
        }
        if entry.methods.is_empty() || entry.methods.len() > MAX_METHODS_PER_CALLER {
            return Err(format!("caller {name:?} needs 1 to {MAX_METHODS_PER_CALLER} entries in methods"));
        }
        let methods = entry.methods.iter().map(|text| MethodPattern::parse(text)).collect::<Result<Vec<_>, _>>()?;
        let caller = Arc::new(Caller {
            name: Arc::from(name.as_str()),
            methods,
            acts_for_users: entry.acts_for_users,
            operator: entry.operator,
            named: true,
        });
        for digest in &entry.token_sha256 {
            let digest = parse_digest(digest)
                .ok_or_else(|| format!("caller {name:?}: token_sha256 entries must be 64 hex digits"))?;
            if self.by_token_digest.insert(digest, Arc::clone(&caller)).is_some() {
                return Err(format!("caller {name:?}: a token digest is listed twice"));
            }
        }
        for certificate in entry.certificate_names {
            if self.by_certificate.insert(certificate.clone(), Arc::clone(&caller)).is_some() {
                return Err(format!("caller {name:?}: certificate name {certificate:?} is listed twice"));
            }
        }
        self.names.push(caller.shared_name());
        Ok(())
    }

    /// The caller a verified client certificate naming `identity` belongs to, if any.
    pub fn by_certificate(&self, identity: &str) -> Option<&Arc<Caller>> {
        self.by_certificate.get(identity)
    }

    /// The caller presenting `token`, if any.
    pub fn by_token(&self, token: &str) -> Option<&Arc<Caller>> {
        self.by_token_digest.get(&token_digest(token))
    }

    /// The callers' names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(AsRef::as_ref)
    }
}

/// The SHA-256 digest of a token, as the callers file lists it (hex).
pub fn token_sha256_hex(token: &str) -> String {
    hex::encode(token_digest(token))
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut digest).ok()?;
    Some(digest)
}

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallersFile {
    #[serde(default)]
    callers: Vec<CallerEntry>,
}

/// One `[[callers]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    name: String,
    #[serde(default)]
    token_sha256: Vec<String>,
    /// Identities (first URI name, else first DNS name) of verified client certificates.
    #[serde(default)]
    certificate_names: Vec<String>,
    methods: Vec<String>,
    #[serde(default)]
    acts_for_users: bool,
    #[serde(default)]
    operator: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(groups_digests: &[String]) -> String {
        let digests = groups_digests.iter().map(|digest| format!("{digest:?}")).collect::<Vec<_>>().join(", ");
        format!(
            r#"
            [[callers]]
            name = "groups"
            token_sha256 = [{digests}]
            methods = ["fanfare.messages.v1.MessageService/AppendSystemUpdates"]

            [[callers]]
            name = "gateway"
            token_sha256 = ["{gateway}"]
            methods = ["fanfare.messages.v1.MessageService/*", "fanfare.groups.v1.GroupService/GetGroup"]
            acts_for_users = true

            [[callers]]
            name = "ops"
            token_sha256 = ["{ops}"]
            methods = ["*"]
            acts_for_users = true
            operator = true
            "#,
            gateway = token_sha256_hex("gateway-token"),
            ops = token_sha256_hex("ops-token"),
        )
    }

    #[test]
    fn finds_callers_by_any_of_their_tokens() {
        let callers =
            Callers::parse(&file(&[token_sha256_hex("old-token"), token_sha256_hex("new-token")])).expect("valid");
        assert_eq!(callers.by_token("old-token").map(|caller| caller.name()), Some("groups"));
        assert_eq!(callers.by_token("new-token").map(|caller| caller.name()), Some("groups"));
        assert_eq!(callers.by_token("gateway-token").map(|caller| caller.name()), Some("gateway"));
        assert!(callers.by_token("old-token ").is_none());
        assert!(callers.by_token("").is_none());
        assert_eq!(callers.names().collect::<Vec<_>>(), ["groups", "gateway", "ops"]);
    }

    #[test]
    fn method_patterns_admit_what_they_name() {
        let callers = Callers::parse(&file(&[token_sha256_hex("groups-token")])).expect("valid");
        let groups = callers.by_token("groups-token").expect("known");
        assert!(groups.may_call("/fanfare.messages.v1.MessageService/AppendSystemUpdates"));
        assert!(!groups.may_call("/fanfare.messages.v1.MessageService/SendMessage"));
        assert!(!groups.acts_for_users() && !groups.is_operator());

        let gateway = callers.by_token("gateway-token").expect("known");
        assert!(gateway.may_call("/fanfare.messages.v1.MessageService/SendMessage"));
        assert!(gateway.may_call("/fanfare.groups.v1.GroupService/GetGroup"));
        assert!(!gateway.may_call("/fanfare.groups.v1.GroupService/CreateGroup"));
        assert!(!gateway.may_call("/fanfare.messages.v1.MessageServiceX/SendMessage"));
        assert!(!gateway.may_call("no-slash"));

        let ops = callers.by_token("ops-token").expect("known");
        assert!(ops.may_call("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(ops.is_operator());

        // Internal methods are reached only by naming them.
        let append = "/fanfare.messages.v1.MessageService/AppendSystemUpdates";
        assert!(groups.may_call(append));
        assert!(!gateway.may_call(append), "Service/* does not reach an internal method");
        assert!(!ops.may_call(append), "* does not reach an internal method");
        assert!(Caller::unrestricted("dev").may_call(append));
    }

    #[test]
    fn callers_are_found_by_their_certificate_names_too() {
        let text = "[[callers]]\nname = \"groups\"\ncertificate_names = [\"spiffe://fanfare/groups\", \
                    \"groups.fanfare.svc\"]\nmethods = [\"*\"]\n";
        let callers = Callers::parse(text).expect("a caller known by certificate alone");
        assert_eq!(callers.by_certificate("spiffe://fanfare/groups").map(|caller| caller.name()), Some("groups"));
        assert_eq!(callers.by_certificate("groups.fanfare.svc").map(|caller| caller.name()), Some("groups"));
        assert!(callers.by_certificate("messages.fanfare.svc").is_none());
        let twice = "[[callers]]\nname = \"a\"\ncertificate_names = [\"x\"]\nmethods = [\"*\"]\n\
                     [[callers]]\nname = \"b\"\ncertificate_names = [\"x\"]\nmethods = [\"*\"]\n";
        assert!(Callers::parse(twice).is_err(), "one certificate name, one caller");
    }

    #[test]
    fn refuses_files_that_could_not_be_meant() {
        let digest = token_sha256_hex("t");
        let bad = [
            String::new(),
            "callers = 3".to_owned(),
            format!("[[callers]]\nname = \"Groups\"\ntoken_sha256 = [\"{digest}\"]\nmethods = [\"*\"]"),
            "[[callers]]\nname = \"g\"\ntoken_sha256 = [\"abc\"]\nmethods = [\"*\"]".to_owned(),
            "[[callers]]\nname = \"g\"\ntoken_sha256 = []\nmethods = [\"*\"]".to_owned(),
            format!("[[callers]]\nname = \"g\"\ntoken_sha256 = [\"{digest}\"]\nmethods = []"),
            format!("[[callers]]\nname = \"g\"\ntoken_sha256 = [\"{digest}\"]\nmethods = [\"Svc\"]"),
            format!("[[callers]]\nname = \"g\"\ntoken_sha256 = [\"{digest}\"]\nmethods = [\"*\"]\nextra = 1"),
            format!(
                "[[callers]]\nname = \"g\"\ntoken_sha256 = [\"{digest}\"]\nmethods = [\"*\"]\n\
                 [[callers]]\nname = \"h\"\ntoken_sha256 = [\"{digest}\"]\nmethods = [\"*\"]"
            ),
            format!(
                "[[callers]]\nname = \"g\"\ntoken_sha256 = [\"{digest}\"]\nmethods = [\"*\"]\n\
                 [[callers]]\nname = \"g\"\ntoken_sha256 = [\"{}\"]\nmethods = [\"*\"]",
                token_sha256_hex("u")
            ),
        ];
        for text in bad {
            assert!(Callers::parse(&text).is_err(), "accepted {text:?}");
        }
    }
}
