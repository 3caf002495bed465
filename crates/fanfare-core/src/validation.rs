//! Field violations: how parsing a request names the bad field for the caller, and the
//! bounds that keep a refusal small whatever the request held.
//!
//! A request may be up to the decode limit (4 MiB) of ids, every one of them bad. So the
//! parsers refuse a list on its length before looking at its elements
//! ([`check_list_length`], [`distinct_list`]), and an error keeps at most
//! [`MAX_REPORTED_VIOLATIONS`] violations, each at most [`MAX_VIOLATION_TEXT_BYTES`] long, and
//! counts the rest: one summary violation says how many were left out. The status message
//! spells out only the first [`MAX_MESSAGE_VIOLATIONS`] and is cut at [`MAX_MESSAGE_BYTES`], so
//! an error's trailers stay well under 8 KiB (grpcio, the C core behind Python, Ruby, PHP and
//! C# clients, refuses metadata past 16 KiB).

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;

/// Most field violations one error lists; past it, one more violation (field `request`)
/// says how many were left out.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;

/// Most violations spelled out in an error's message (`grpc-message`); the `BadRequest`
/// detail lists up to [`MAX_REPORTED_VIOLATIONS`].
pub const MAX_MESSAGE_VIOLATIONS: usize = 5;

/// Longest field name or description kept in a violation, in bytes; longer ones are cut at
/// a character boundary and end with `…`.
pub const MAX_VIOLATION_TEXT_BYTES: usize = 128;

/// Longest message of an `INVALID_ARGUMENT` status, in bytes (cut as above).
pub const MAX_MESSAGE_BYTES: usize = 512;

/// The field of the violation that counts the violations left out of an error.
pub const OMITTED_FIELD: &str = "request";

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

    /// The same violation with its field and description cut to
    /// [`MAX_VIOLATION_TEXT_BYTES`].
    fn bounded(mut self) -> Self {
        truncate(&mut self.field, MAX_VIOLATION_TEXT_BYTES);
        truncate(&mut self.description, MAX_VIOLATION_TEXT_BYTES);
        self
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.description)
    }
}

/// Cuts `text` to at most `max_bytes` (at a character boundary), ending it with `…` when cut.
fn truncate(text: &mut String, max_bytes: usize) {
    const ELLIPSIS: &str = "…";
    if text.len() <= max_bytes {
        return;
    }
    let mut end = max_bytes.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
}

/// Every bad field of one request, collected so the caller can fix them all at once, up to
/// [`MAX_REPORTED_VIOLATIONS`]: the rest are only counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", self.summary())]
pub struct InvalidRequest {
    violations: Vec<FieldViolation>,
    omitted: usize,
}

impl InvalidRequest {
    /// An error listing `violations`: the first [`MAX_REPORTED_VIOLATIONS`] of them, each
    /// bounded in length; the others are counted.
    pub fn new(violations: Vec<FieldViolation>) -> Self {
        let mut collected = Violations::new();
        violations.into_iter().for_each(|violation| collected.push(violation));
        Self { violations: collected.kept, omitted: collected.omitted }
    }

    /// The violations kept (at most [`MAX_REPORTED_VIOLATIONS`]), in the order found.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.violations
    }

    /// How many more violations were found than are kept.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// The violations to send to the caller: the kept ones, then, when some were left out,
    /// one of field [`OMITTED_FIELD`] saying how many. At most
    /// `MAX_REPORTED_VIOLATIONS + 1` entries.
    pub fn reported(&self) -> Vec<FieldViolation> {
        let mut reported = self.violations.clone();
        if self.omitted > 0 {
            reported.push(FieldViolation::new(
                OMITTED_FIELD,
                format!(
                    "and {} more violations not listed (an error lists at most {MAX_REPORTED_VIOLATIONS})",
                    self.omitted
                ),
            ));
        }
        reported
    }

    /// The message's list: the first [`MAX_MESSAGE_VIOLATIONS`], then how many more there
    /// are, cut to [`MAX_MESSAGE_BYTES`].
    fn summary(&self) -> String {
        let shown: Vec<String> = self.violations.iter().take(MAX_MESSAGE_VIOLATIONS).map(ToString::to_string).collect();
        let mut summary = shown.join("; ");
        let not_shown = self.violations.len().saturating_sub(MAX_MESSAGE_VIOLATIONS) + self.omitted;
        if not_shown > 0 {
            summary.push_str(&format!("; and {not_shown} more (see the BadRequest detail)"));
        }
        truncate(&mut summary, MAX_MESSAGE_BYTES - "invalid request: ".len());
        summary
    }
}

impl From<FieldViolation> for InvalidRequest {
    fn from(violation: FieldViolation) -> Self {
        Self::new(vec![violation])
    }
}

/// Collects field violations while a request is parsed field by field: the first
/// [`MAX_REPORTED_VIOLATIONS`] are kept (bounded in length), the rest only counted.
#[derive(Debug, Default)]
pub struct Violations {
    kept: Vec<FieldViolation>,
    omitted: usize,
}

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
                self.push(violation);
                None
            }
        }
    }

    /// Records a violation found by a rule spanning several fields.
    pub fn push(&mut self, violation: FieldViolation) {
        if self.kept.len() < MAX_REPORTED_VIOLATIONS {
            self.kept.push(violation.bounded());
        } else {
            self.omitted += 1;
        }
    }

    /// The parsed request when nothing was recorded, built by `build` only then. A field is
    /// `None` exactly when it failed (its violation is then recorded), so once nothing was
    /// recorded the fields combine with `?`:
    /// `violations.finish_with(|| Some(Lookup { group: group?, user: user? }))`.
    pub fn finish_with<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, InvalidRequest> {
        self.finish()?;
        let parsed = build();
        debug_assert!(parsed.is_some(), "a field failed to parse without a violation");
        parsed.ok_or_else(|| FieldViolation::new("request", "is incomplete").into())
    }

    /// `Ok(())` when nothing was recorded.
    pub fn finish(self) -> Result<(), InvalidRequest> {
        if self.kept.is_empty() { Ok(()) } else { Err(InvalidRequest { violations: self.kept, omitted: self.omitted }) }
    }
}

/// Checks a repeated field's length alone, before any element is looked at, so a request
/// of millions of entries costs one comparison: `field` must hold `min` to `max` entries
/// (`noun` names them in the description, e.g. `ids`).
pub fn check_list_length(field: &str, length: usize, min: usize, max: usize, noun: &str) -> Result<(), FieldViolation> {
    if (min..=max).contains(&length) {
        return Ok(());
    }
    let bounds = if min == 0 { format!("at most {max}") } else { format!("{min} to {max}") };
    Err(FieldViolation::new(field, format!("must list {bounds} {noun} (got {length})")))
}

/// A repeated field of `min` to `max` entries, refused on its length before any element is
/// parsed; then each element is parsed (`parse` gets `field`; a violation is renamed to the
/// element, `field[index]`) and repeats are dropped, the first kept, in order, in O(n).
/// `None` when the length or any element was refused (the violations are recorded).
pub fn distinct_list<R, T: Eq + Hash + Clone>(
    field: &str,
    raw: &[R],
    (min, max): (usize, usize),
    noun: &str,
    parse: impl Fn(&str, &R) -> Result<T, FieldViolation>,
    violations: &mut Violations,
) -> Option<Vec<T>> {
    violations.check(check_list_length(field, raw.len(), min, max, noun))?;
    let mut seen: HashSet<T> = HashSet::with_capacity(raw.len());
    let mut values: Vec<T> = Vec::with_capacity(raw.len());
    let mut all_parsed = true;
    for (index, element) in raw.iter().enumerate() {
        match parse(field, element) {
            Ok(value) => {
                if seen.insert(value.clone()) {
                    values.push(value);
                }
            }
            Err(violation) => {
                all_parsed = false;
                violations.push(FieldViolation { field: format!("{field}[{index}]"), ..violation });
            }
        }
    }
    all_parsed.then_some(values)
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
        assert_eq!(error.violations().len(), 2);
        assert_eq!(error.to_string(), "invalid request: a: must not be empty; c: bad");
    }

    #[test]
    fn an_error_keeps_the_first_violations_and_counts_the_rest() {
        let many = (0..1_000).map(|index| FieldViolation::new(format!("ids[{index}]"), "must be positive"));
        let error = InvalidRequest::new(many.collect());
        assert_eq!(error.violations().len(), MAX_REPORTED_VIOLATIONS);
        assert_eq!(error.violations()[0].field, "ids[0]", "the first ones, in order");
        assert_eq!(error.omitted(), 1_000 - MAX_REPORTED_VIOLATIONS);
        let reported = error.reported();
        assert_eq!(reported.len(), MAX_REPORTED_VIOLATIONS + 1);
        let summary = reported.last().expect("a summary");
        assert_eq!(summary.field, OMITTED_FIELD);
        assert!(summary.description.starts_with("and 980 more"), "{summary}");

        let message = error.to_string();
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{} bytes", message.len());
        assert!(message.contains("ids[4]") && !message.contains("ids[5]"), "{message}");
        assert!(message.ends_with("and 995 more (see the BadRequest detail)"), "{message}");
    }

    #[test]
    fn the_collector_counts_past_the_cap_without_keeping() {
        let mut violations = Violations::new();
        for index in 0..MAX_REPORTED_VIOLATIONS + 3 {
            violations.push(FieldViolation::new(format!("ids[{index}]"), "bad"));
        }
        let error = violations.finish().unwrap_err();
        assert_eq!((error.violations().len(), error.omitted()), (MAX_REPORTED_VIOLATIONS, 3));
        let few = InvalidRequest::from(FieldViolation::new("title", "bad"));
        assert_eq!(few.reported(), [FieldViolation::new("title", "bad")], "no summary when nothing was left out");
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let long = FieldViolation::new("é".repeat(500), "x".repeat(10_000));
        let error = InvalidRequest::new(vec![long; 50]);
        for violation in error.violations() {
            assert!(violation.field.len() <= MAX_VIOLATION_TEXT_BYTES, "{}", violation.field.len());
            assert!(violation.description.len() <= MAX_VIOLATION_TEXT_BYTES);
            assert!(violation.field.ends_with('…') && violation.description.ends_with('…'));
        }
        assert!(error.to_string().len() <= MAX_MESSAGE_BYTES);
    }

    fn positive(field: &str, raw: &i64) -> Result<i64, FieldViolation> {
        if *raw > 0 { Ok(*raw) } else { Err(FieldViolation::new(field, format!("must be positive (got {raw})"))) }
    }

    #[test]
    fn a_list_past_its_bounds_is_refused_without_parsing_an_element() {
        let refuse_all = |_: &str, _: &i64| -> Result<i64, FieldViolation> { panic!("an element was parsed") };
        for length in [0, 4, 4_000_000] {
            let mut violations = Violations::new();
            let raw = vec![0_i64; length];
            assert_eq!(distinct_list("ids", &raw, (1, 3), "ids", refuse_all, &mut violations), None);
            let error = violations.finish().unwrap_err();
            assert_eq!(
                error.violations(),
                [FieldViolation::new("ids", format!("must list 1 to 3 ids (got {length})"))]
            );
        }
        let unbounded_below = check_list_length("group_ids", 1_001, 0, 1_000, "groups").unwrap_err();
        assert_eq!(unbounded_below.description, "must list at most 1000 groups (got 1001)");
    }

    #[test]
    fn a_list_drops_repeats_in_order_and_names_bad_elements_by_index() {
        let mut violations = Violations::new();
        let parsed = distinct_list("ids", &[3, 1, 3, 2, 1], (1, 5), "ids", positive, &mut violations);
        assert_eq!(parsed, Some(vec![3, 1, 2]));
        assert!(violations.finish().is_ok());

        let mut violations = Violations::new();
        assert_eq!(distinct_list("ids", &[3, 0, -1], (1, 5), "ids", positive, &mut violations), None);
        let fields: Vec<String> =
            violations.finish().unwrap_err().violations().iter().map(|v| v.field.clone()).collect();
        assert_eq!(fields, ["ids[1]", "ids[2]"]);
    }
}
