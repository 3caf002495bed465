//! Keyset paging: validated page sizes and opaque page tokens holding the last key seen.

use crate::validation::FieldViolation;

/// Page size used when a request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// A page size within `1..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// Parses `page_size`: 0 means `default`; negative or above `max` is refused with the
    /// bounds named, rather than silently clamped.
    pub fn parse(field: &str, raw: i32, default: u32, max: u32) -> Result<Self, FieldViolation> {
        debug_assert!(default >= 1 && default <= max);
        match u32::try_from(raw) {
            Ok(0) => Ok(Self(default)),
            Ok(size) if size <= max => Ok(Self(size)),
            _ => Err(FieldViolation::new(
                field,
                format!("must be between 1 and {max}, or 0 for the default of {default} (got {raw})"),
            )),
        }
    }

    /// Parses with the workspace defaults.
    pub fn parse_default(field: &str, raw: i32) -> Result<Self, FieldViolation> {
        Self::parse(field, raw, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    }

    /// A size known to be valid (tests, internal callers).
    pub fn new(size: u32) -> Self {
        debug_assert!(size >= 1);
        Self(size.max(1))
    }

    /// The number of items.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The number of items as a SQL `LIMIT`.
    pub fn as_limit(self) -> i64 {
        i64::from(self.0)
    }
}

/// The position after the last item of a page: the sort key of that item, as integers
/// (times travel as microseconds). Encoded as an opaque string so callers never build one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub Vec<i64>);

const TOKEN_VERSION: &str = "1";

impl Cursor {
    /// The opaque token handed to callers.
    pub fn encode(&self) -> String {
        let mut token = String::from(TOKEN_VERSION);
        for part in &self.0 {
            for byte in part.to_be_bytes() {
                token.push_str(&format!("{byte:02x}"));
            }
        }
        token
    }

    /// Decodes a token; empty means the first page. A token must hold exactly `parts` keys.
    pub fn decode(field: &str, token: &str, parts: usize) -> Result<Option<Self>, FieldViolation> {
        if token.is_empty() {
            return Ok(None);
        }
        let malformed = || not_a_page_token(field);
        let hex = token.strip_prefix(TOKEN_VERSION).ok_or_else(malformed)?;
        if hex.len() != parts * 16 || !hex.is_ascii() {
            return Err(malformed());
        }
        let mut values = Vec::with_capacity(parts);
        for index in 0..parts {
            let chunk = &hex[index * 16..(index + 1) * 16];
            let value = u64::from_str_radix(chunk, 16).map_err(|_| malformed())?;
            values.push(value as i64);
        }
        Ok(Some(Self(values)))
    }
}

/// One page of results and the cursor after it, when there may be more.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in the method's order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `size + 1` fetched rows: the extra row only proves there is
    /// more, and the cursor is the key of the last row kept.
    pub fn from_overfetch(mut rows: Vec<T>, size: PageSize, key: impl Fn(&T) -> Cursor) -> Self {
        let limit = size.get() as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next = if has_more { rows.last().map(key) } else { None };
        Self { items: rows, next }
    }

    /// The token for the next page, empty on the last.
    pub fn next_page_token(&self) -> String {
        self.next.as_ref().map(Cursor::encode).unwrap_or_default()
    }
}

/// The violation of a page token this listing did not issue (or that names no position of
/// it): every listing of every service answers it in these words.
pub fn not_a_page_token(field: &str) -> FieldViolation {
    FieldViolation::new(field, "is not a token returned by this method; pass next_page_token as given")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_zero_means_default_and_bounds_are_enforced() {
        assert_eq!(PageSize::parse_default("page_size", 0).unwrap().get(), DEFAULT_PAGE_SIZE);
        assert_eq!(PageSize::parse_default("page_size", 7).unwrap().get(), 7);
        assert!(PageSize::parse_default("page_size", -1).is_err());
        assert!(PageSize::parse_default("page_size", 1_001).is_err());
        assert!(PageSize::parse_default("page_size", i32::MAX).is_err());
    }

    #[test]
    fn cursor_round_trips_including_negative_parts() {
        let cursor = Cursor(vec![1_700_000_000_000_000, -3]);
        let token = cursor.encode();
        assert_eq!(Cursor::decode("page_token", &token, 2).unwrap(), Some(cursor));
        assert_eq!(Cursor::decode("page_token", "", 2).unwrap(), None);
    }

    #[test]
    fn foreign_tokens_are_refused() {
        for bad in ["x", "1zz", "2000000000000000a", "1abc"] {
            assert!(Cursor::decode("page_token", bad, 1).is_err(), "{bad}");
        }
        let two_parts = Cursor(vec![1, 2]).encode();
        assert!(Cursor::decode("page_token", &two_parts, 1).is_err());
    }

    #[test]
    fn overfetch_sets_the_cursor_only_when_more_exist() {
        let size = PageSize::new(2);
        let page = Page::from_overfetch(vec![1, 2, 3], size, |item| Cursor(vec![*item]));
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next, Some(Cursor(vec![2])));
        let last = Page::from_overfetch(vec![1, 2], size, |item| Cursor(vec![*item]));
        assert_eq!(last.next, None);
        assert_eq!(last.next_page_token(), "");
    }
}
