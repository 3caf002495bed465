//! Protobuf wire format by hand, for requests no well-behaved client would send: a field
//! overridden with an extreme value, a string that is not UTF-8, a truncated message. A
//! singular field appears once in a well-formed message and its last occurrence wins, so a
//! mutation removes every occurrence of the field and appends the new one.

/// Wire type of varints (int32, int64, bool, enums).
pub const VARINT: u8 = 0;
/// Wire type of length-delimited fields (strings, bytes, messages, packed lists).
pub const LENGTH_DELIMITED: u8 = 2;

/// Appends `value` as a base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the key of field `number` with `wire_type`.
pub fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

/// Field `number` as a varint: an int64, or an int32 or enum sign-extended as proto3 does.
pub fn varint_field(number: u32, value: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    put_key(&mut out, number, VARINT);
    put_varint(&mut out, value as u64);
    out
}

/// Field `number` holding `payload` (a string's bytes, an encoded message, a packed list).
pub fn length_delimited_field(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    put_key(&mut out, number, LENGTH_DELIMITED);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// A packed repeated int64 field.
pub fn packed_int64_field(number: u32, values: impl IntoIterator<Item = i64>) -> Vec<u8> {
    let mut payload = Vec::new();
    for value in values {
        put_varint(&mut payload, value as u64);
    }
    length_delimited_field(number, &payload)
}

/// One field of an encoded message: its number and the bytes of the whole entry (key
/// included), plus the payload of a length-delimited entry.
struct Entry<'a> {
    number: u32,
    whole: &'a [u8],
    payload: Option<&'a [u8]>,
}

fn read_varint(bytes: &[u8], position: &mut usize) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*position)?;
        *position += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The entries of a well-formed message, in order (panics on a malformed one: only the
/// tests' own baselines are read).
fn entries(message: &[u8]) -> Vec<Entry<'_>> {
    let mut found = Vec::new();
    let mut position = 0;
    while position < message.len() {
        let start = position;
        let key = read_varint(message, &mut position).expect("a well-formed key");
        let number = u32::try_from(key >> 3).expect("a field number");
        let mut payload = None;
        match (key & 7) as u8 {
            VARINT => {
                read_varint(message, &mut position).expect("a well-formed varint");
            }
            1 => position += 8,
            LENGTH_DELIMITED => {
                let length = read_varint(message, &mut position).expect("a length") as usize;
                payload = Some(&message[position..position + length]);
                position += length;
            }
            5 => position += 4,
            other => panic!("wire type {other} in a baseline"),
        }
        found.push(Entry { number, whole: &message[start..position], payload });
    }
    found
}

/// `message` without any occurrence of field `number`.
pub fn without_field(message: &[u8], number: u32) -> Vec<u8> {
    entries(message).iter().filter(|entry| entry.number != number).flat_map(|entry| entry.whole.to_vec()).collect()
}

/// `message` with field `number` replaced by `replacement` (whole entries, keys included).
pub fn replace_field(message: &[u8], number: u32, replacement: &[u8]) -> Vec<u8> {
    let mut out = without_field(message, number);
    out.extend_from_slice(replacement);
    out
}

/// The payload of the first occurrence of length-delimited field `number`, if any.
pub fn first_payload(message: &[u8], number: u32) -> Option<Vec<u8>> {
    entries(message).iter().find(|entry| entry.number == number).and_then(|entry| entry.payload.map(<[u8]>::to_vec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_fields_are_replaced() {
        let message = [varint_field(1, -1), length_delimited_field(2, b"ab"), varint_field(3, 7)].concat();
        assert_eq!(varint_field(1, -1).len(), 11, "a negative int64 takes ten bytes after its key");
        assert_eq!(first_payload(&message, 2), Some(b"ab".to_vec()));
        let replaced = replace_field(&message, 2, &length_delimited_field(2, b"xyz"));
        assert_eq!(replaced, [varint_field(1, -1), varint_field(3, 7), length_delimited_field(2, b"xyz")].concat());
    }
}
