//! The Markdown report: a header saying how and where the figures were taken, then one
//! section per benchmarked service. Sections are printed as they finish and the whole
//! report is written to `--output` at the end.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::cpu::{CpuSnapshot, CpuUsage};
use crate::machine::{Machine, load_average};

/// How every figure in the report was taken (the header's first paragraph).
const METHOD: &str = "Written by `make bench` (crate `fanfare-bench`); rerun it rather than \
editing by hand. `--only groups`, `--only messages` or `--only fanout` reruns one section and \
keeps the others as they were; each section therefore says when, with what command and under \
what load its figures were taken. Every figure of a section comes from one run on one machine, \
all traffic on 127.0.0.1. In the groups and messages sections the services under test run \
inside the benchmark process on port 0 (the fanout section runs each service as a process of \
its own and says how it measures), over a fresh, \
migrated Postgres database (durable: default `synchronous_commit`), and are driven through \
their real gRPC API by a closed-loop load generator in the same process: a fixed number of \
calls in flight, each worker sending its next call when the previous one answers. Beside each \
service figure the same run measures, as the baseline, the statement the service is built on, \
issued directly with sqlx at the same concurrency. Latency is per call, from just before the \
request is sent until its answer is decoded; percentiles are nearest-rank over every call of \
the window. CPU columns are average cores, read from `/proc`: `bench` is this process (services \
and load generator), `pg` every Postgres process, `other` the rest of the machine (other \
people's builds and tests on a shared machine). Nothing here is checked in CI.\n";

/// One service's results: prose and tables, rendered in order.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// Heading (level 2).
    pub title: String,
    /// When, where and under what load it ran (set by [`Report::push`]).
    run: Option<Table>,
    blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
enum Block {
    Heading(String),
    Paragraph(String),
    Table(Table),
}

impl Section {
    /// An empty section titled `title`.
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), run: None, blocks: Vec::new() }
    }

    /// Appends a level-3 heading.
    pub(crate) fn heading(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Heading(text.into()));
    }

    /// Appends a paragraph (Markdown).
    pub(crate) fn paragraph(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph(text.into()));
    }

    /// Appends a table.
    pub(crate) fn table(&mut self, table: Table) {
        self.blocks.push(Block::Table(table));
    }

    /// The section as Markdown, starting with its `##` heading.
    pub(crate) fn to_markdown(&self) -> String {
        let mut out = format!("## {}\n", self.title);
        if let Some(run) = &self.run {
            out.push('\n');
            out.push_str(&run.to_markdown());
        }
        for block in &self.blocks {
            out.push('\n');
            match block {
                Block::Heading(text) => {
                    let _ = writeln!(out, "### {text}");
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "{text}");
                }
                Block::Table(table) => out.push_str(&table.to_markdown()),
            }
        }
        out
    }
}

/// A Markdown table. Columns of figures (every cell starts with a digit) are right-aligned,
/// the others left-aligned; cells are padded so the text also reads well in a terminal.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self { headers: headers.iter().map(|header| (*header).to_owned()).collect(), rows: Vec::new() }
    }

    /// Appends a row; it must have one cell per header.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    fn cells(&self, column: usize) -> impl Iterator<Item = &String> {
        self.rows.iter().map(move |row| &row[column])
    }

    /// The table as Markdown.
    pub(crate) fn to_markdown(&self) -> String {
        let columns = 0..self.headers.len();
        let widths: Vec<usize> = columns
            .clone()
            .map(|column| {
                std::iter::once(&self.headers[column])
                    .chain(self.cells(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(3)
            })
            .collect();
        let numeric: Vec<bool> = columns
            .map(|column| {
                self.cells(column).all(|cell| cell.is_empty() || cell.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths.iter().zip(&numeric))
                .map(|(cell, (width, numeric))| match numeric {
                    true => format!("{cell:>width$}"),
                    false => format!("{cell:<width$}"),
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule: Vec<String> = widths
            .iter()
            .zip(&numeric)
            .map(|(width, numeric)| match numeric {
                true => format!("{}:", "-".repeat(width - 1)),
                false => "-".repeat(*width),
            })
            .collect();
        let mut out = line(&self.headers);
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// A section's place in the file: the markers around it, so that a run of some benchmarks
/// (`--only`) replaces their sections and keeps the others' figures as they were.
fn open_marker(key: &str) -> String {
    format!("<!-- bench-section: {key} -->")
}

fn close_marker(key: &str) -> String {
    format!("<!-- /bench-section: {key} -->")
}

/// When and under what load a section's benchmark ran: started by [`SectionClock::start`]
/// just before it, read by [`Report::push`] just after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SectionClock {
    started: DateTime<Utc>,
    cpu: Option<CpuSnapshot>,
    load: Option<f64>,
}

impl SectionClock {
    /// Starts timing a section now.
    pub(crate) fn start() -> Self {
        Self { started: Utc::now(), cpu: CpuSnapshot::take(), load: load_average() }
    }
}

/// The whole report: the method, then one section per benchmark, each with its own run
/// details (a section kept from an earlier run keeps its own).
#[derive(Debug)]
pub(crate) struct Report {
    machine: Machine,
    command: String,
    /// `(key, Markdown)` of the sections run, in order.
    sections: Vec<(&'static str, String)>,
}

impl Report {
    /// A report of a run of `command` on `machine`.
    pub(crate) fn start(machine: Machine, command: String) -> Self {
        Self { machine, command, sections: Vec::new() }
    }

    /// Adds a finished section under `key` (its markers in the file), with the run details
    /// from `clock` to now.
    pub(crate) fn push(&mut self, key: &'static str, mut section: Section, clock: SectionClock) {
        section.run = Some(self.run_table(&clock));
        let markdown = format!("{}\n{}{}\n", open_marker(key), section.to_markdown(), close_marker(key));
        self.sections.push((key, markdown));
    }

    fn run_table(&self, clock: &SectionClock) -> Table {
        let machine = &self.machine;
        let finished = Utc::now();
        let cpu = clock.cpu.zip(CpuSnapshot::take()).map(|(start, end)| start.until(&end, machine.cores));
        let minutes = (finished - clock.started).num_seconds() as f64 / 60.0;
        let mut table = Table::new(&["run", "details"]);
        table.row(vec!["date".into(), format!("{}, {minutes:.1} minutes", clock.started.format("%Y-%m-%d %H:%M UTC"))]);
        table.row(vec!["command".into(), format!("`{}`", self.command)]);
        table.row(vec!["machine".into(), machine.describe()]);
        table.row(vec!["load average".into(), machine.load_note(clock.load, load_average())]);
        if let Some(cpu) = cpu {
            table.row(vec![
                "CPU over the section (cores)".into(),
                format!("{} ({})", cpu.describe(), busy_note(&cpu, machine.cores)),
            ]);
        }
        table.row(vec!["postgres".into(), machine.postgres_version.clone()]);
        table.row(vec!["postgres settings".into(), machine.settings_line()]);
        table
    }

    /// The sections of this run as Markdown, after the method.
    pub(crate) fn to_markdown(&self) -> String {
        let sections: Vec<&str> = self.sections.iter().map(|(_, markdown)| markdown.as_str()).collect();
        render(&sections)
    }

    /// Writes the report to `path`: the sections of this run replace theirs in the file;
    /// the file's other sections are kept as they are (with their own run details).
    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let merged = merge(&existing, &self.sections);
        for key in merged.kept {
            eprintln!("kept the {key} section of an earlier run in {}", path.display());
        }
        std::fs::write(path, render(&merged.sections))
            .with_context(|| format!("writing the report to {}", path.display()))
    }
}

/// The file: title, method, then the sections.
fn render(sections: &[&str]) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    out.push_str(METHOD);
    for section in sections {
        out.push('\n');
        out.push_str(section);
    }
    out
}

/// The sections of a merged file, and the keys kept from the old one.
struct Merged<'a> {
    sections: Vec<&'a str>,
    kept: Vec<&'a str>,
}

/// The old file's sections in their order, each replaced by this run's when it ran one;
/// then this run's new sections.
fn merge<'a>(existing: &'a str, fresh: &'a [(&'static str, String)]) -> Merged<'a> {
    let mut sections = Vec::new();
    let mut kept = Vec::new();
    let mut used = vec![false; fresh.len()];
    for (key, old) in marked_sections(existing) {
        match fresh.iter().position(|(fresh_key, _)| *fresh_key == key) {
            Some(index) => {
                used[index] = true;
                sections.push(fresh[index].1.as_str());
            }
            None => {
                kept.push(key);
                sections.push(old);
            }
        }
    }
    for ((_, markdown), used) in fresh.iter().zip(used) {
        if !used {
            sections.push(markdown.as_str());
        }
    }
    Merged { sections, kept }
}

/// `(key, text from its opening marker through its closing marker and the newline after)`
/// of every marked section of `text`, in order.
fn marked_sections(text: &str) -> Vec<(&str, &str)> {
    const OPEN: &str = "<!-- bench-section: ";
    let mut found = Vec::new();
    let mut rest = 0;
    while let Some(offset) = text[rest..].find(OPEN) {
        let start = rest + offset;
        let Some(key_end) = text[start + OPEN.len()..].find(" -->").map(|end| start + OPEN.len() + end) else {
            break;
        };
        let key = &text[start + OPEN.len()..key_end];
        let close = close_marker(key);
        let Some(close_at) = text[key_end..].find(&close).map(|at| key_end + at) else {
            break;
        };
        let mut end = close_at + close.len();
        if text[end..].starts_with('\n') {
            end += 1;
        }
        found.push((key, &text[start..end]));
        rest = end;
    }
    found
}

/// Whether other work shared the machine enough to matter.
fn busy_note(cpu: &CpuUsage, cores: usize) -> String {
    // A tenth of a core of other work is background noise; more than that took CPU the
    // service and Postgres would otherwise have had.
    if cpu.other > 0.1 * cores as f64 {
        format!("a busy {cores}-core machine: other work took {:.2} cores", cpu.other)
    } else {
        "the machine was otherwise quiet".to_owned()
    }
}

/// `met`, or `**not met**`.
pub(crate) fn verdict(met: bool) -> String {
    match met {
        true => "met".to_owned(),
        false => "**not met**".to_owned(),
    }
}

/// A CPU split, or `n/a`.
pub(crate) fn cpu(usage: Option<CpuUsage>) -> String {
    usage.map_or_else(|| "n/a".to_owned(), |usage| usage.describe())
}

/// A duration in milliseconds, as a number.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// `0.53 ms`, `12.3 ms`, `1234 ms`.
pub(crate) fn duration(duration: Duration) -> String {
    let ms = millis(duration);
    match ms {
        ms if ms < 10.0 => format!("{ms:.2} ms"),
        ms if ms < 100.0 => format!("{ms:.1} ms"),
        ms => format!("{ms:.0} ms"),
    }
}

/// `1,000,000`.
pub(crate) fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_aligns_tables() {
        let mut table = Table::new(&["call", "p50"]);
        table.row(vec!["JoinGroup".into(), "0.52 ms".into()]);
        table.row(vec!["raw".into(), "12.3 ms".into()]);
        assert_eq!(
            table.to_markdown(),
            "| call      |     p50 |\n| --------- | ------: |\n| JoinGroup | 0.52 ms |\n| raw       | 12.3 ms |\n"
        );
    }

    #[test]
    fn replaces_the_sections_run_and_keeps_the_others() {
        let old = "# Benchmarks\n\nmethod\n\n<!-- bench-section: groups -->\n## Groups\nold groups\n\
                   <!-- /bench-section: groups -->\n\n<!-- bench-section: messages -->\n## Messages\nold\n\
                   <!-- /bench-section: messages -->\n";
        let fresh =
            vec![("messages", "<!-- bench-section: messages -->\nnew\n<!-- /bench-section: messages -->\n".to_owned())];
        let merged = merge(old, &fresh);
        assert_eq!(merged.kept, vec!["groups"]);
        assert_eq!(merged.sections.len(), 2);
        assert!(merged.sections[0].contains("old groups"));
        assert!(merged.sections[1].contains("new"));
        // A section new to the file comes after the kept ones.
        let fresh = vec![("other", "<!-- bench-section: other -->\nx\n<!-- /bench-section: other -->\n".to_owned())];
        let merged = merge(old, &fresh);
        assert_eq!(merged.kept, vec!["groups", "messages"]);
        assert!(merged.sections[2].contains("x"));
    }

    #[test]
    fn formats_counts_and_durations() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(duration(Duration::from_micros(530)), "0.53 ms");
        assert_eq!(duration(Duration::from_micros(12_340)), "12.3 ms");
    }
}
