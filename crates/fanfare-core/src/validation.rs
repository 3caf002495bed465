//! Field violations: how parsing a request names the bad field for the caller.

use std::fmt;

/// One bad field of a request: its name (dotted path as in the proto) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field, e.g. `title` or `settings.slow_mode_seconds`.
    pub field: String,
    /// What is wrong with it, phrased so a caller knows what to send instead.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.description)
    }
}

/// Every bad field of one request, collected so the caller can fix them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", summary(.0))]
pub struct InvalidRequest(pub Vec<FieldViolation>);

fn summary(violations: &[FieldViolation]) -> String {
    let parts: Vec<String> = violations.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

impl From<FieldViolation> for InvalidRequest {
    fn from(violation: FieldViolation) -> Self {
        Self(vec![violation])
    }
}

/// Collects field violations while a request is parsed field by field.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value of a parsed field, or records its violation and returns `None`.
    pub fn check<T>(&mut self, parsed: Result<T, FieldViolation>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    /// Records a violation found by a rule spanning several fields.
    pub fn push(&mut self, violation: FieldViolation) {
        self.0.push(violation);
    }

    /// The parsed request when nothing was recorded. `parsed` is `None` exactly when some
    /// field failed (its violation is then recorded), so the fields combine with `?`:
    /// `violations.finish_with((|| Some((group?, user?)))())`.
    pub fn finish_with<T>(self, parsed: Option<T>) -> Result<T, InvalidRequest> {
        self.finish()?;
        debug_assert!(parsed.is_some(), "a field failed to parse without a violation");
        parsed.ok_or_else(|| InvalidRequest(vec![FieldViolation::new("request", "is incomplete")]))
    }

    /// `Ok(())` when nothing was recorded.
    pub fn finish(self) -> Result<(), InvalidRequest> {
        if self.0.is_empty() { Ok(()) } else { Err(InvalidRequest(self.0)) }
    }
}

/// Checks a text field's length in characters (not bytes) and rejects control characters
/// other than newline and tab. `min` is 0 for optional fields.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, FieldViolation> {
    let length = value.chars().count();
    if length < min {
        let description =
            if min == 1 { "must not be empty".to_owned() } else { format!("must be at least {min} characters") };
        return Err(FieldViolation::new(field, description));
    }
    if length > max {
        return Err(FieldViolation::new(field, format!("must be at most {max} characters (got {length})")));
    }
    if value.chars().any(|character| character.is_control() && character != '\n' && character != '\t') {
        return Err(FieldViolation::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_characters_not_bytes() {
        assert!(text("title", "ééé", 1, 3).is_ok());
        assert!(text("title", "éééé", 1, 3).is_err());
    }

    #[test]
    fn empty_required_text_names_the_field() {
        let violation = text("title", "", 1, 10).unwrap_err();
        assert_eq!(violation.field, "title");
        assert_eq!(violation.description, "must not be empty");
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(text("title", "a\u{0}b", 0, 10).is_err());
        assert!(text("description", "line\nline", 0, 10).is_ok());
    }

    #[test]
    fn violations_collect_every_bad_field() {
        let mut violations = Violations::new();
        assert_eq!(violations.check(text("a", "", 1, 2)), None);
        assert_eq!(violations.check(text("b", "ok", 1, 2)), Some("ok".to_owned()));
        violations.push(FieldViolation::new("c", "bad"));
        let error = violations.finish().unwrap_err();
        assert_eq!(error.0.len(), 2);
        assert_eq!(error.to_string(), "invalid request: a: must not be empty; c: bad");
    }
}
