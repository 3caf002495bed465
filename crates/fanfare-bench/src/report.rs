//! The Markdown report: a header saying how and where the figures were taken, then one
//! section per benchmarked service. Sections are printed as they finish and the whole
//! report is written to `--output` at the end.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::cpu::{CpuSnapshot, CpuUsage};
use crate::machine::Machine;

/// How every figure in the report was taken (the header's first paragraph).
const METHOD: &str = "Written by `make bench` (crate `fanfare-bench`); rerun it rather than \
editing by hand. Every figure comes from one run on one machine, all traffic on 127.0.0.1. The \
service under test runs inside the benchmark process on port 0, over a fresh, migrated Postgres \
database (durable: default `synchronous_commit`), and is driven through its real gRPC API by a \
closed-loop load generator in the same process: a fixed number of calls in flight, each worker \
sending its next call when the previous one answers. Beside each service figure the same run \
measures, as the baseline, the statement the service is built on, issued directly with sqlx at \
the same concurrency. Latency is per call, from just before the request is sent until its \
answer is decoded; percentiles are nearest-rank over every call of the window. CPU columns are \
average cores, read from `/proc`: `bench` is this process (service and load generator), `pg` \
every Postgres process, `other` the rest of the machine. Nothing here is checked in CI.\n";

/// One service's results: prose and tables, rendered in order.
#[derive(Debug, Clone)]
pub struct Section {
    /// Heading (level 2).
    pub title: String,
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
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), blocks: Vec::new() }
    }

    /// Appends a level-3 heading.
    pub fn heading(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Heading(text.into()));
    }

    /// Appends a paragraph (Markdown).
    pub fn paragraph(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph(text.into()));
    }

    /// Appends a table.
    pub fn table(&mut self, table: Table) {
        self.blocks.push(Block::Table(table));
    }

    /// The section as Markdown, starting with its `##` heading.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("## {}\n", self.title);
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
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self { headers: headers.iter().map(|header| (*header).to_owned()).collect(), rows: Vec::new() }
    }

    /// Appends a row; it must have one cell per header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    fn cells(&self, column: usize) -> impl Iterator<Item = &String> {
        self.rows.iter().map(move |row| &row[column])
    }

    /// The table as Markdown.
    pub fn to_markdown(&self) -> String {
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

/// The whole report: header, then sections in the order they ran.
#[derive(Debug)]
pub struct Report {
    machine: Machine,
    command: String,
    started: DateTime<Utc>,
    started_cpu: Option<CpuSnapshot>,
    finished: Option<(DateTime<Utc>, Option<CpuUsage>)>,
    sections: Vec<Section>,
}

impl Report {
    /// A report of a run of `command` on `machine`, starting now.
    pub fn start(machine: Machine, command: String) -> Self {
        Self {
            machine,
            command,
            started: Utc::now(),
            started_cpu: CpuSnapshot::take(),
            finished: None,
            sections: Vec::new(),
        }
    }

    /// Adds a finished section.
    pub fn push(&mut self, section: Section) {
        self.sections.push(section);
    }

    /// Marks the run as over: the header's duration, load and CPU use end here.
    pub fn finish(&mut self) {
        self.machine.finish();
        let cpu = self.started_cpu.zip(CpuSnapshot::take()).map(|(start, end)| start.until(&end, self.machine.cores));
        self.finished = Some((Utc::now(), cpu));
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# Benchmarks\n\n");
        out.push_str(METHOD);
        out.push('\n');
        out.push_str(&self.header_table());
        for section in &self.sections {
            out.push('\n');
            out.push_str(&section.to_markdown());
        }
        out
    }

    fn header_table(&self) -> String {
        let machine = &self.machine;
        let (finished, cpu) = self.finished.unwrap_or((Utc::now(), None));
        let minutes = (finished - self.started).num_seconds() as f64 / 60.0;
        let mut table = Table::new(&["run", "details"]);
        table.row(vec!["date".into(), format!("{}, {minutes:.1} minutes", self.started.format("%Y-%m-%d %H:%M UTC"))]);
        table.row(vec!["command".into(), format!("`{}`", self.command)]);
        table.row(vec!["machine".into(), machine.describe()]);
        table.row(vec!["load average".into(), machine.load_note()]);
        if let Some(cpu) = cpu {
            table.row(vec![
                "CPU over the run (cores)".into(),
                format!("{} ({})", cpu.describe(), busy_note(&cpu, machine.cores)),
            ]);
        }
        table.row(vec!["postgres".into(), machine.postgres_version.clone()]);
        table.row(vec!["postgres settings".into(), machine.settings_line()]);
        table.to_markdown()
    }

    /// Writes the report to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, self.to_markdown()).with_context(|| format!("writing the report to {}", path.display()))
    }
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
}
