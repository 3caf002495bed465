//! Values on their way out to the wire or to SQL, whose integers are `int64`.

/// A count or limit as an `int64`, saturating at `i64::MAX` (no real count gets there, and
/// a limit that large means "no limit" to PostgreSQL as well).
pub fn int64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        assert_eq!(int64(7_u64), 7);
        assert_eq!(int64(u64::MAX), i64::MAX);
        assert_eq!(int64(usize::MAX), i64::MAX);
    }
}
