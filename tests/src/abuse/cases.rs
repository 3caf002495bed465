//! The hostile cases of one RPC, generated from the API's own descriptor: for every field of
//! the request (and of the messages it holds, two levels down), values chosen by the
//! field's type: extreme integers, unknown enum numbers, strings of almost 4 MiB or not
//! UTF-8, lists at their limit and at 1,000× it. A new field or RPC is covered without
//! touching this file; a new list must be given its limit (the generation panics otherwise).

use std::collections::HashMap;

use fanfare_core::server::MAX_DECODING_MESSAGE_SIZE;
use fanfare_proto::prost::Message;
use fanfare_proto::prost_types::field_descriptor_proto::{Label, Type};
use fanfare_proto::prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use tonic::Code;
use uuid::Uuid;

use super::wire::{length_delimited_field, packed_int64_field, put_key, put_varint, replace_field, varint_field};
use super::{Case, Expect, Token};

/// A string just under the decode limit, with room for the rest of the request.
pub const ALMOST_FOUR_MIB: usize = MAX_DECODING_MESSAGE_SIZE - 64 * 1024;

/// A field number no request uses, for unknown fields.
const UNKNOWN_FIELD: u32 = 1_000;

/// How deep into nested messages values are varied (`events[0].event.group_id` is 2).
const MAX_DEPTH: usize = 2;

/// Which families of cases to generate.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// Extreme integers and unknown enum numbers (the cases that reach storage).
    pub values: bool,
    /// Strings of almost 4 MiB, requests just over 4 MiB, lists at 1,000× their limit.
    pub sizes: bool,
    /// Bytes that are not a request: invalid UTF-8, bad wire types, truncation.
    pub malformed: bool,
    /// No token, a wrong one, and garbage acting users.
    pub identity: bool,
}

impl Scope {
    /// Every family.
    pub const ALL: Self = Self { values: true, sizes: true, malformed: true, identity: true };
    /// Only the values that reach storage.
    pub const VALUES: Self = Self { values: true, sizes: false, malformed: false, identity: false };
}

/// One RPC of a service, as the descriptor lists it.
#[derive(Debug, Clone)]
pub struct Method {
    /// `/package.Service/Method`.
    pub path: String,
    /// The request message's full name, without the leading dot.
    pub input: String,
    /// Whether the server answers with a stream (`Subscribe`).
    pub server_streaming: bool,
}

/// Every message and method of the Fanfare API, from `fanfare_proto::FILE_DESCRIPTOR_SET`.
pub struct Catalog {
    messages: HashMap<String, DescriptorProto>,
    methods: Vec<Method>,
}

impl Catalog {
    /// Reads the descriptor set the services serve for reflection.
    pub fn load() -> Self {
        let set = FileDescriptorSet::decode(fanfare_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
        let mut messages = HashMap::new();
        let mut methods = Vec::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                collect(&mut messages, package, message);
            }
            for service in &file.service {
                for method in &service.method {
                    methods.push(Method {
                        path: format!("/{package}.{}/{}", service.name(), method.name()),
                        input: method.input_type().trim_start_matches('.').to_owned(),
                        server_streaming: method.server_streaming(),
                    });
                }
            }
        }
        // Well-known types are imported, not compiled in: Timestamp's two fields suffice.
        messages.entry("google.protobuf.Timestamp".to_owned()).or_insert_with(|| DescriptorProto {
            name: Some("Timestamp".to_owned()),
            field: vec![scalar("seconds", 1, Type::Int64), scalar("nanos", 2, Type::Int32)],
            ..Default::default()
        });
        Self { messages, methods }
    }

    /// The methods of the service whose path prefix is `/package.Service/`.
    pub fn methods_of(&self, service: &str) -> Vec<Method> {
        let prefix = format!("/{service}/");
        self.methods.iter().filter(|method| method.path.starts_with(&prefix)).cloned().collect()
    }

    /// A message by full name (no leading dot).
    pub fn message(&self, name: &str) -> &DescriptorProto {
        self.messages.get(name).unwrap_or_else(|| panic!("no message {name} in the descriptor set"))
    }

    /// Every field of every request message, as `Message.field` with its type.
    pub fn request_fields(&self) -> Vec<(String, Type)> {
        let mut fields = Vec::new();
        for method in &self.methods {
            for field in &self.message(&method.input).field {
                fields.push((format!("{}.{}", method.input, field.name()), field.r#type()));
            }
        }
        fields
    }
}

fn collect(messages: &mut HashMap<String, DescriptorProto>, scope: &str, message: &DescriptorProto) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect(messages, &name, nested);
    }
    messages.insert(name, message.clone());
}

fn scalar(name: &str, number: i32, kind: Type) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_owned()),
        number: Some(number),
        r#type: Some(kind as i32),
        label: Some(Label::Optional as i32),
        ..Default::default()
    }
}

/// A valid request of one RPC, and who sends it: every case changes one thing of it, so any
/// INVALID_ARGUMENT must be about that one thing.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The method's name (`GetGroup`).
    pub method: &'static str,
    /// The encoded request.
    pub body: Vec<u8>,
    /// The acting user, or none (calls that act for no user).
    pub user: Option<i64>,
}

impl Baseline {
    /// A baseline request sent by `user`.
    pub fn new(method: &'static str, user: Option<i64>, request: &impl Message) -> Self {
        Self { method, body: request.encode_to_vec(), user }
    }
}

/// What a field-level change must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Must {
    /// INVALID_ARGUMENT naming the field.
    Refuse,
    /// Any answer of the service's own; an INVALID_ARGUMENT names the field.
    Answer,
    /// INVALID_ARGUMENT: the bytes are not a request at all.
    Malformed,
}

/// One change to a field: a label and the field's new entries (keys included).
struct Variant {
    label: String,
    entries: Vec<u8>,
    must: Must,
}

/// The limits of the request lists (`Message.field` → most entries) and other names a
/// refusal of a field may use (`Message.field` → name).
pub struct Lists {
    /// Most entries of each repeated field of a request.
    pub limits: HashMap<String, usize>,
    /// Another name a violation of the field may carry (GetMessages counts its ids and
    /// seqs together, under `message_ids`).
    pub aliases: HashMap<String, String>,
}

/// Every case of one RPC within `scope`.
pub fn cases(catalog: &Catalog, method: &Method, baseline: &Baseline, lists: &Lists, scope: Scope) -> Vec<Case> {
    let case = |what: String, body: Vec<u8>, expect: Expect| Case {
        path: method.path.clone(),
        what,
        body,
        server_streaming: method.server_streaming,
        token: Token::Valid,
        user: baseline.user.map(|user| user.to_string().into_bytes()),
        expect,
    };
    let mut found = vec![case("the baseline".to_owned(), baseline.body.clone(), Expect::Answered(Vec::new()))];

    let message = catalog.message(&method.input);
    for field in &message.field {
        let key = format!("{}.{}", method.input, field.name());
        let mut names = vec![field.name().to_owned()];
        names.extend(lists.aliases.get(&key).cloned());
        let number = field.number() as u32;
        let variants = if field.label() == Label::Repeated {
            let limit = *lists.limits.get(&key).unwrap_or_else(|| panic!("no list limit given for {key}"));
            list_variants(catalog, field, &baseline.body, limit, scope)
        } else {
            field_variants(catalog, field, &baseline.body, 0, scope)
        };
        for variant in variants {
            let body = replace_field(&baseline.body, number, &variant.entries);
            let expect = match variant.must {
                Must::Refuse if body.len() > MAX_DECODING_MESSAGE_SIZE => Expect::Code(Code::ResourceExhausted),
                Must::Refuse => Expect::Names(names.clone()),
                Must::Answer => Expect::Answered(names.clone()),
                Must::Malformed => Expect::Code(Code::InvalidArgument),
            };
            found.push(case(format!("{} {}", field.name(), variant.label), body, expect));
        }
    }

    if scope.malformed {
        let with = |tail: &[u8]| [baseline.body.as_slice(), tail].concat();
        let unknown_string = length_delimited_field(UNKNOWN_FIELD, b"ignored");
        found.push(case("an unknown field".to_owned(), with(&unknown_string), Expect::Answered(Vec::new())));
        let mut bad_wire_type = Vec::new();
        put_key(&mut bad_wire_type, UNKNOWN_FIELD, 7);
        found.push(case("wire type 7".to_owned(), with(&bad_wire_type), Expect::Code(Code::InvalidArgument)));
        let mut truncated = Vec::new();
        put_key(&mut truncated, UNKNOWN_FIELD, 2);
        put_varint(&mut truncated, 1_000_000);
        truncated.push(b'x');
        found.push(case("a length past the end".to_owned(), with(&truncated), Expect::Code(Code::InvalidArgument)));
        let mut long_varint = Vec::new();
        put_key(&mut long_varint, UNKNOWN_FIELD, 0);
        long_varint.extend([0xff; 10]);
        long_varint.push(0x01);
        found.push(case("an 11-byte varint".to_owned(), with(&long_varint), Expect::Code(Code::InvalidArgument)));
        found.push(case("a lone key byte".to_owned(), with(&[0x80]), Expect::Code(Code::InvalidArgument)));
    }
    if scope.sizes {
        let over = length_delimited_field(UNKNOWN_FIELD, &vec![b'x'; MAX_DECODING_MESSAGE_SIZE]);
        let body = [baseline.body.as_slice(), &over].concat();
        found.push(case("just over 4 MiB".to_owned(), body, Expect::Code(Code::ResourceExhausted)));
    }
    if scope.identity {
        found.extend(identity_cases(&case, baseline));
    }
    found
}

/// No token, a wrong one, and acting users that are not a positive int64.
fn identity_cases(case: &impl Fn(String, Vec<u8>, Expect) -> Case, baseline: &Baseline) -> Vec<Case> {
    let body = || baseline.body.clone();
    let unauthenticated = || Expect::Code(Code::Unauthenticated);
    let mut found = vec![
        Case { token: Token::Missing, ..case("no token".to_owned(), body(), unauthenticated()) },
        Case {
            token: Token::Wrong("not-the-token".to_owned()),
            ..case("a wrong token".to_owned(), body(), unauthenticated())
        },
        Case {
            token: Token::Wrong("t".repeat(8 * 1024)),
            ..case("an 8 KiB token".to_owned(), body(), unauthenticated())
        },
    ];
    if baseline.user.is_none() {
        return found;
    }
    found.push(Case { user: None, ..case("no acting user".to_owned(), body(), unauthenticated()) });
    let garbage: Vec<Vec<u8>> = [
        "0",
        "-1",
        &i64::MIN.to_string(),
        "9223372036854775808",
        "18446744073709551616",
        "",
        "abc",
        "1.0",
        "0x10",
        "1 2",
        &"9".repeat(4 * 1024),
    ]
    .iter()
    .map(|text| text.as_bytes().to_vec())
    .chain([vec![0xff, b'1'], vec![b'1', 0x80]])
    .collect();
    for value in garbage {
        let label = format!("acting user {:?}", String::from_utf8_lossy(&value[..value.len().min(24)]));
        found.push(Case { user: Some(value), ..case(label, body(), Expect::Code(Code::InvalidArgument)) });
    }
    found
}

/// The changes to one singular field (recursing into a message field).
fn field_variants(
    catalog: &Catalog,
    field: &FieldDescriptorProto,
    parent: &[u8],
    depth: usize,
    scope: Scope,
) -> Vec<Variant> {
    let number = field.number() as u32;
    let top = depth == 0;
    let value = |label: &str, value: i64, must: Must| Variant {
        label: format!("= {label}"),
        entries: varint_field(number, value),
        must,
    };
    let at_top = |must: Must| if top { must } else { Must::Answer };
    let mut variants = Vec::new();
    match field.r#type() {
        Type::Int64 | Type::Sint64 | Type::Sfixed64 if scope.values => {
            variants.push(value("i64::MIN", i64::MIN, at_top(Must::Refuse)));
            variants.push(value("-1", -1, at_top(Must::Refuse)));
            variants.push(value("0", 0, Must::Answer));
            variants.push(value("i64::MAX", i64::MAX, Must::Answer));
        }
        Type::Int32 | Type::Sint32 | Type::Sfixed32 | Type::Uint32 if scope.values => {
            variants.push(value("i32::MIN", i64::from(i32::MIN), at_top(Must::Refuse)));
            variants.push(value("-1", -1, Must::Answer));
            variants.push(value("i32::MAX", i64::from(i32::MAX), Must::Answer));
        }
        Type::Enum if scope.values => {
            variants.push(value("999 (no such enum value)", 999, Must::Refuse));
            variants.push(value("-1 (no such enum value)", -1, Must::Refuse));
            variants.push(value("i32::MAX (no such enum value)", i64::from(i32::MAX), Must::Refuse));
        }
        Type::Bool if scope.values => {
            variants.push(value("2 (a bool past 1)", 2, Must::Answer));
            variants.push(Variant {
                label: "= u64::MAX (a bool past 1)".to_owned(),
                entries: varint_field(number, -1),
                must: Must::Answer,
            });
        }
        Type::String | Type::Bytes => variants.extend(string_variants(field, scope)),
        Type::Message if depth < MAX_DEPTH => {
            let nested = catalog.message(field.type_name().trim_start_matches('.'));
            let baseline = super::wire::first_payload(parent, number).unwrap_or_default();
            for inner in &nested.field {
                let inner_variants = if inner.label() == Label::Repeated {
                    // Lists inside lists (none in requests today) are varied only by value.
                    Vec::new()
                } else {
                    field_variants(catalog, inner, &baseline, depth + 1, scope)
                };
                for variant in inner_variants {
                    let changed = replace_field(&baseline, inner.number() as u32, &variant.entries);
                    variants.push(Variant {
                        label: format!(".{} {}", inner.name(), variant.label),
                        entries: length_delimited_field(number, &changed),
                        must: variant.must,
                    });
                }
            }
        }
        _ => {}
    }
    variants
}

/// A string or bytes field: almost 4 MiB, invalid UTF-8, control characters.
fn string_variants(field: &FieldDescriptorProto, scope: Scope) -> Vec<Variant> {
    let number = field.number() as u32;
    let is_string = field.r#type() == Type::String;
    let mut variants = Vec::new();
    if scope.sizes {
        variants.push(Variant {
            label: "of almost 4 MiB".to_owned(),
            entries: length_delimited_field(number, &vec![b'x'; ALMOST_FOUR_MIB]),
            must: Must::Refuse,
        });
    }
    if scope.malformed {
        // A string must be UTF-8 (prost refuses the request); bytes may hold anything.
        variants.push(Variant {
            label: "holding 0xFF 0xFE (not UTF-8)".to_owned(),
            entries: length_delimited_field(number, &[b'a', 0xff, 0xfe]),
            must: if is_string { Must::Malformed } else { Must::Answer },
        });
        variants.push(Variant {
            label: "holding control characters".to_owned(),
            entries: length_delimited_field(number, "a\u{0}\u{1b}[2J\u{7f}\u{202e}".as_bytes()),
            must: Must::Answer,
        });
    }
    variants
}

/// A repeated field: at its limit, at 1,000× it, and one entry of each singular variant.
fn list_variants(
    catalog: &Catalog,
    field: &FieldDescriptorProto,
    parent: &[u8],
    limit: usize,
    scope: Scope,
) -> Vec<Variant> {
    let number = field.number() as u32;
    let first = super::wire::first_payload(parent, number);
    let list = |count: usize, fill: bool| -> Vec<u8> {
        match field.r#type() {
            Type::Int64 => packed_int64_field(number, (1..).take(count).map(|id| if fill { id } else { 0 })),
            Type::String => (0..count)
                .flat_map(|_| {
                    let entry = if fill { Uuid::now_v7().to_string() } else { String::new() };
                    length_delimited_field(number, entry.as_bytes())
                })
                .collect(),
            Type::Message => {
                let entry = if fill { first.clone().unwrap_or_default() } else { Vec::new() };
                let one = length_delimited_field(number, &entry);
                one.repeat(count)
            }
            other => panic!("a list of {other:?} in a request"),
        }
    };
    let mut variants = Vec::new();
    if scope.sizes || scope.values {
        variants.push(Variant {
            label: format!("at its limit ({limit})"),
            entries: list(limit, true),
            must: Must::Answer,
        });
    }
    if scope.sizes {
        variants.push(Variant {
            label: format!("at 1,000× its limit ({})", limit * 1_000),
            entries: list(limit * 1_000, false),
            must: Must::Refuse,
        });
    }
    // One entry, varied as a singular field would be (a packed list of one for ids).
    let single = FieldDescriptorProto { label: Some(Label::Optional as i32), ..field.clone() };
    for variant in field_variants(catalog, &single, parent, 0, scope) {
        let entries = match field.r#type() {
            Type::Int64 => repack(&variant.entries, number),
            _ => variant.entries,
        };
        variants.push(Variant { label: format!("[0] {}", variant.label), entries, must: variant.must });
    }
    variants
}

/// A one-entry varint field as a packed list of one, as prost sends it.
fn repack(entry: &[u8], number: u32) -> Vec<u8> {
    let mut key = Vec::new();
    put_key(&mut key, number, super::wire::VARINT);
    length_delimited_field(number, &entry[key.len()..])
}
